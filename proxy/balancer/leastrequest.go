package balancer

import (
	"math"
	"net/http"
	"slices"
	"sync/atomic"
)

// maxSkipDraws is how many random draws LeastRequest spends on finding a
// candidate that skip accepts before it scans all endpoints.
const maxSkipDraws = 4

// LeastRequest sends each request to the less loaded of two endpoints
// drawn at random ("power of two random choices"), where load is the
// endpoint's InFlight count divided by its weight. Comparing two random
// endpoints instead of all of them avoids herding every concurrent request
// onto the one endpoint that looks least loaded at that instant, while
// still steering away from busy ones: the most loaded endpoint is never
// chosen unless another is tied with it.
//
// The two candidates are distinct and are drawn with probability
// proportional to weight (uniformly when all weights are equal). When the
// loads tie, the first drawn wins, so idle endpoints receive traffic in
// proportion to their weights too. A nil InFlight counts as 0.
//
// When skip rejects a drawn endpoint Pick draws again, up to four times
// per candidate; if that fails (most endpoints are rejected), it scans all
// accepted endpoints, starting at a random one, and takes the least loaded.
// Pick takes no lock; it is as concurrency-safe as the Rand it was given.
type LeastRequest struct {
	inflight []*atomic.Int64
	weights  []int64
	// cum[i] is the sum of the weights of endpoints 0..i; nil when all
	// weights are equal and candidates are drawn uniformly.
	cum   []int
	total int
	rnd   Rand
}

var _ Balancer = (*LeastRequest)(nil)

// NewLeastRequest returns a least request balancer over eps that draws its
// candidates from rnd (DefaultRand when nil). It keeps the endpoints'
// weights and InFlight counters.
func NewLeastRequest(eps []Endpoint, rnd Rand) *LeastRequest {
	if rnd == nil {
		rnd = DefaultRand{}
	}
	b := &LeastRequest{
		inflight: make([]*atomic.Int64, len(eps)),
		weights:  make([]int64, len(eps)),
		rnd:      rnd,
	}
	equal := true
	var total uint64
	for i, e := range eps {
		w := weightOf(e)
		b.inflight[i] = e.InFlight
		b.weights[i] = int64(w)
		total += uint64(w)
		equal = equal && w == weightOf(eps[0])
	}
	// A total weight beyond int (only on 32-bit platforms) falls back to
	// uniform draws; the load comparison still honours the weights.
	if !equal && total <= math.MaxInt {
		b.total = int(total)
		b.cum = make([]int, len(eps))
		sum := 0
		for i, w := range b.weights {
			sum += int(w)
			b.cum[i] = sum
		}
	}
	return b
}

// Pick implements Balancer. The request is not looked at.
func (b *LeastRequest) Pick(_ *http.Request, skip func(i int) bool) int {
	switch len(b.weights) {
	case 0:
		return -1
	case 1:
		if skip != nil && skip(0) {
			return -1
		}
		return 0
	}
	i := b.candidate(-1, skip)
	if i < 0 {
		return b.scan(skip)
	}
	j := b.candidate(i, skip)
	if j < 0 {
		return b.scan(skip)
	}
	if b.less(j, i) {
		return j
	}
	return i
}

// candidate draws an endpoint other than not that skip accepts, or returns
// -1 after maxSkipDraws rejected draws.
func (b *LeastRequest) candidate(not int, skip func(i int) bool) int {
	for range maxSkipDraws {
		c := b.draw(not)
		if skip == nil || !skip(c) {
			return c
		}
	}
	return -1
}

// draw returns a random endpoint other than not (-1 for any), with
// probability proportional to weight.
func (b *LeastRequest) draw(not int) int {
	n := len(b.weights)
	if b.cum == nil {
		if not < 0 {
			return b.rnd.IntN(n)
		}
		i := b.rnd.IntN(n - 1)
		if i >= not {
			i++
		}
		return i
	}
	if not < 0 {
		i, _ := slices.BinarySearch(b.cum, b.rnd.IntN(b.total)+1)
		return i
	}
	// Draw from the total without not's weight and step over not's run of
	// positions [cum[not]-w, cum[not]).
	w := int(b.weights[not])
	p := b.rnd.IntN(b.total - w)
	if p >= b.cum[not]-w {
		p += w
	}
	i, _ := slices.BinarySearch(b.cum, p+1)
	return i
}

// scan returns the least loaded endpoint skip accepts, or -1. It starts at
// a random endpoint so that ties do not always go to the same one.
func (b *LeastRequest) scan(skip func(i int) bool) int {
	n := len(b.weights)
	start := b.rnd.IntN(n)
	best := -1
	for k := range n {
		i := (start + k) % n
		if skip != nil && skip(i) {
			continue
		}
		if best < 0 || b.less(i, best) {
			best = i
		}
	}
	return best
}

// less reports whether endpoint i carries less load per unit of weight
// than endpoint j: inflight_i/weight_i < inflight_j/weight_j, compared
// without division.
func (b *LeastRequest) less(i, j int) bool {
	return b.load(i)*b.weights[j] < b.load(j)*b.weights[i]
}

func (b *LeastRequest) load(i int) int64 {
	if c := b.inflight[i]; c != nil {
		return c.Load()
	}
	return 0
}
