package policies

import (
	"errors"
	"io"
	"sync"
)

// resources holds the long-lived state policies keep across reloads (JWKS
// caches, rate-limit buckets), by a key that names the resource and every
// setting that shapes it, so that a changed setting gets a fresh one.
type resources struct {
	mu   sync.Mutex
	live map[string]io.Closer
	// used collects the keys the compile in progress acquired.
	used map[string]bool
}

func newResources() *resources {
	return &resources{live: make(map[string]io.Closer)}
}

// begin starts a compile: from now on acquire records the keys used.
func (r *resources) begin() {
	r.mu.Lock()
	r.used = make(map[string]bool)
	r.mu.Unlock()
}

func (r *resources) acquire(key string, create func() (io.Closer, error)) (io.Closer, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.used != nil {
		r.used[key] = true
	}
	if c, ok := r.live[key]; ok {
		return c, nil
	}
	c, err := create()
	if err != nil {
		return nil, err
	}
	r.live[key] = c
	return c, nil
}

// usedKeys returns the keys the compile in progress acquired.
func (r *resources) usedKeys() map[string]bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]bool, len(r.used))
	for k := range r.used {
		out[k] = true
	}
	return out
}

// commit closes the resources the compile that just went into force did
// not use.
func (r *resources) commit() error {
	r.mu.Lock()
	var drop []io.Closer
	for k, c := range r.live {
		if !r.used[k] {
			drop = append(drop, c)
			delete(r.live, k)
		}
	}
	r.used = nil
	r.mu.Unlock()
	var errs []error
	for _, c := range drop {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// abort forgets a failed compile: resources it created and the set in
// force does not use are closed.
func (r *resources) abort(inForce map[string]bool) error {
	r.mu.Lock()
	r.used = inForce
	r.mu.Unlock()
	return r.commit()
}

// close closes every resource.
func (r *resources) close() error {
	return r.abort(map[string]bool{})
}
