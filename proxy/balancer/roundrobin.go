package balancer

import (
	"net/http"
	"sync/atomic"
)

// RoundRobin hands requests to the endpoints in turn (0, 1, 2, 0, 1, …),
// ignoring weights. Pick is lock-free: one atomic counter.
//
// Endpoints that skip rejects are passed over, and the counter moves past
// them so that the endpoint after a rejected one does not also take the
// rejected one's turns: with endpoint 1 of 3 rejected, requests alternate
// 0, 2, 0, 2.
type RoundRobin struct {
	n    uint64
	next atomic.Uint64
}

var _ Balancer = (*RoundRobin)(nil)

// NewRoundRobin returns a round robin balancer over eps. Only the number
// of endpoints is kept.
func NewRoundRobin(eps []Endpoint) *RoundRobin {
	return &RoundRobin{n: uint64(len(eps))}
}

// Pick implements Balancer. The request is not looked at.
func (b *RoundRobin) Pick(_ *http.Request, skip func(i int) bool) int {
	if b.n == 0 {
		return -1
	}
	start := b.next.Add(1) - 1
	if skip == nil {
		return int(start % b.n)
	}
	// Scan from start rather than drawing a fresh counter value per try:
	// concurrent requests would otherwise advance the counter between our
	// tries and we could miss the one acceptable endpoint.
	for k := range b.n {
		i := int((start + k) % b.n)
		if skip(i) {
			continue
		}
		if k > 0 {
			b.next.Add(k)
		}
		return i
	}
	return -1
}
