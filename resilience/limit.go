package resilience

import "sync/atomic"

// Limiter bounds the requests in flight, as a listener's or a service's
// max_concurrent_requests: a bulkhead that sheds rather than queues. It
// takes no lock. A nil *Limiter allows everything and counts nothing.
type Limiter struct {
	max      int64 // 0: unlimited
	inFlight atomic.Int64
}

// NewLimiter returns a limiter that lets at most limit requests be in
// flight at once; with limit ≤ 0 it allows every request and only counts
// them.
func NewLimiter(limit int) *Limiter {
	return &Limiter{max: int64(max(limit, 0))}
}

// Acquire takes a slot and reports whether it got one; a caller that got
// one must [Limiter.Release] it when the request ends. When it did not,
// the request is to be shed (503 with Retry-After).
func (l *Limiter) Acquire() bool {
	if l == nil {
		return true
	}
	if l.max == 0 {
		l.inFlight.Add(1)
		return true
	}
	for {
		n := l.inFlight.Load()
		if n >= l.max {
			return false
		}
		if l.inFlight.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// Release gives back a slot taken by a successful [Limiter.Acquire].
func (l *Limiter) Release() {
	if l == nil {
		return
	}
	l.inFlight.Add(-1)
}

// InFlight is the number of slots taken now.
func (l *Limiter) InFlight() int64 {
	if l == nil {
		return 0
	}
	return l.inFlight.Load()
}

// Max is the limit; 0 means unlimited.
func (l *Limiter) Max() int64 {
	if l == nil {
		return 0
	}
	return l.max
}
