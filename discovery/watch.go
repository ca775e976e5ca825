package discovery

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/meshgate/meshgate/resilience"
)

// watchOptions are the timings of a blocking-query watch.
type watchOptions struct {
	wait        time.Duration // the blocking query's wait
	minInterval time.Duration // least time between two queries, plus up to as much jitter
	minBackoff  time.Duration // first back-off after an error
	maxBackoff  time.Duration // back-off cap
}

// watchHooks connect one watch loop to its owner.
type watchHooks[T any] struct {
	// query runs the blocking query with q (WaitIndex and WaitTime set).
	query func(q *api.QueryOptions) (T, *api.QueryMeta, error)
	// update receives each result whose index moved; it decides itself
	// whether the content changed.
	update func(result T, index uint64)
	// failed is told about every error; first is true for the first error
	// after a success, so owners can log transitions rather than floods.
	failed func(err error, first bool)
	// recovered is called on the first success after errors (may be nil).
	recovered func()
}

// runWatch is a blocking-query loop with consul-template's discipline
// (watch/view.go): the index it waits on is the last one seen; an index
// that goes backwards (a restarted agent, a new leader with a smaller
// index) resets to 0 so the next answer comes at once; an answer with an
// unchanged index is skipped; between queries it waits a minimum interval
// plus jitter so a flapping service cannot make it spin; after an error it
// backs off exponentially with full jitter, and resets on success. It
// returns when ctx is done.
func runWatch[T any](ctx context.Context, o watchOptions, base api.QueryOptions, h watchHooks[T]) {
	var index uint64
	first, failing := true, false
	backoff := o.minBackoff
	for {
		q := base
		q.WaitIndex = index
		q.WaitTime = o.wait
		result, meta, err := h.query(q.WithContext(ctx))
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			h.failed(err, !failing)
			failing = true
			// The agent may have restarted with a smaller index: waiting on
			// the old one would block for the whole wait time. Ask for the
			// current state once it answers again.
			index, first = 0, true
			// Full jitter (AWS architecture blog): sleep a random time in
			// [0, backoff), then double the cap.
			if !resilience.Sleep(ctx, time.Duration(rand.Int64N(int64(backoff))+1)) {
				return
			}
			backoff = min(backoff*2, o.maxBackoff)
			continue
		}
		backoff = o.minBackoff
		if failing {
			failing = false
			if h.recovered != nil {
				h.recovered()
			}
		}
		if meta.LastIndex < index {
			// The index went backwards (a restarted agent, a new leader):
			// take this answer and wait on its index from now on.
			index = 0
		}
		if first || meta.LastIndex != index {
			// Unchanged indexes mean the wait timed out: nothing to do.
			first = false
			index = meta.LastIndex
			h.update(result, index)
		}
		if index == 0 {
			// Consul's indexes start at 1; waiting on 0 would not block.
			index = 1
		}
		jitter := time.Duration(0)
		if o.minInterval > 0 {
			jitter = time.Duration(rand.Int64N(int64(o.minInterval)))
		}
		if !resilience.Sleep(ctx, o.minInterval+jitter) {
			return
		}
	}
}

// isNotFound reports whether err is Consul's 404.
func isNotFound(err error) bool {
	var se api.StatusError
	return errors.As(err, &se) && se.Code == 404
}
