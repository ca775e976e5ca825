package discovery

import (
	"context"
	"sync"
	"sync/atomic"
)

// Source publishes snapshots of the services it knows. Run blocks, calling
// publish with a complete snapshot whenever its view changes, until ctx is
// done; it returns nil on cancellation and an error only when it cannot
// run at all. A source that loses its backend keeps its last snapshot
// published (last known good) rather than publishing an empty one.
type Source interface {
	Run(ctx context.Context, publish func(*Snapshot)) error
}

// Store holds the latest published snapshot. Load is lock-free and safe for
// concurrent use on the request path.
type Store struct {
	cur     atomic.Pointer[Snapshot]
	version atomic.Uint64
	notify  chan struct{}
	ready   chan struct{}
	once    sync.Once
}

// NewStore returns an empty store: Load returns nil until the first Publish.
func NewStore() *Store {
	return &Store{notify: make(chan struct{}, 1), ready: make(chan struct{})}
}

// Load returns the latest snapshot, or nil before the first.
func (s *Store) Load() *Snapshot { return s.cur.Load() }

// Publish makes snap the latest snapshot, stamping its Version. snap must
// not be modified afterwards.
func (s *Store) Publish(snap *Snapshot) {
	snap.Version = s.version.Add(1)
	s.cur.Store(snap)
	s.once.Do(func() { close(s.ready) })
	// Coalesce: one pending notification is enough, the reader loads the latest.
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// Ready is closed once the first snapshot is published.
func (s *Store) Ready() <-chan struct{} { return s.ready }

// Updates receives a value after each Publish; several publications between
// two receives coalesce into one.
func (s *Store) Updates() <-chan struct{} { return s.notify }
