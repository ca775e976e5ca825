// Package balancer chooses which instance of a service takes a request:
// round robin, smooth weighted round robin, least request (power of two
// random choices) and consistent hashing on a header or cookie.
//
// New builds the balancer a service's config.LoadBalancer asks for. A
// Balancer is built once per set of endpoints (a discovery snapshot or
// config reload builds new ones) and is then safe for concurrent use
// without locks on the request path; Pick does not allocate. State that
// must outlive a rebuild, the endpoints' in-flight counters, belongs to the
// caller.
//
// Every Pick takes a skip function so that retries, outlier ejection and
// open circuit breakers steer it away from instances without the balancer
// knowing about them.
package balancer

import (
	"math/rand/v2"
	"net/http"
	"sync/atomic"
)

// Endpoint is what a balancer chooses among.
type Endpoint struct {
	// ID identifies the instance; consistent hashing places it by ID so a
	// key keeps its instance while that instance stays.
	ID string
	// Weight is the relative share of traffic (≥ 1). Weighted round robin,
	// least request and consistent hashing honour it; plain round robin
	// ignores it. Values below 1 count as 1 and values above MaxWeight as
	// MaxWeight.
	Weight int
	// InFlight counts requests currently sent to the instance. It is owned
	// by the caller and outlives balancer rebuilds.
	InFlight *atomic.Int64
}

// MaxWeight is the largest Endpoint.Weight the balancers use; larger
// weights are clamped to it so that weight arithmetic cannot overflow.
const MaxWeight = 1 << 20

// weightOf returns e's weight clamped to [1, MaxWeight].
func weightOf(e Endpoint) int {
	switch {
	case e.Weight < 1:
		return 1
	case e.Weight > MaxWeight:
		return MaxWeight
	}
	return e.Weight
}

// Balancer picks one endpoint for a request.
type Balancer interface {
	// Pick returns the index of the chosen endpoint, or -1 when there are
	// none or skip rejects every one. skip may be nil; when set, Pick never
	// returns an index for which skip returns true (instances already tried,
	// ejected or behind an open breaker). skip runs on the request path:
	// it must be fast and not block, and Pick may call it more than once
	// for the same index. The index refers to the slice
	// of endpoints the balancer was built from. r may be nil: consistent
	// hashing then treats the request as having no key.
	Pick(r *http.Request, skip func(i int) bool) int
}

// Rand is the random source of the randomised balancers; tests inject a
// seeded one.
type Rand interface {
	// IntN returns a uniform value in [0, n). It must be safe for
	// concurrent use.
	IntN(n int) int
}

// DefaultRand is a Rand backed by math/rand/v2's global, per-thread source.
type DefaultRand struct{}

// IntN implements Rand.
func (DefaultRand) IntN(n int) int { return rand.IntN(n) }
