package balancer

import (
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
)

// seededRand is a deterministic, concurrency-safe Rand for tests.
type seededRand struct {
	mu sync.Mutex
	r  *rand.Rand
}

func newSeededRand() *seededRand { return &seededRand{r: rand.New(rand.NewPCG(1, 2))} }

func (s *seededRand) IntN(n int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.r.IntN(n)
}

// endpoints returns endpoints "ep-0", "ep-1", … with the given weights.
func endpoints(weights ...int) []Endpoint {
	eps := make([]Endpoint, len(weights))
	for i, w := range weights {
		eps[i] = Endpoint{ID: "ep-" + strconv.Itoa(i), Weight: w, InFlight: new(atomic.Int64)}
	}
	return eps
}

// skipSet returns a skip func rejecting the given indexes.
func skipSet(idx ...int) func(int) bool {
	m := map[int]bool{}
	for _, i := range idx {
		m[i] = true
	}
	return func(i int) bool { return m[i] }
}

// picks returns the next n picks of b.
func picks(b Balancer, r *http.Request, skip func(int) bool, n int) []int {
	out := make([]int, n)
	for k := range out {
		out[k] = b.Pick(r, skip)
	}
	return out
}

// counts returns how often each index in [0, n) was picked in k picks,
// failing on an out-of-range pick through the returned bool.
func counts(b Balancer, r *http.Request, skip func(int) bool, n, k int) ([]int, bool) {
	c := make([]int, n)
	for range k {
		i := b.Pick(r, skip)
		if i < 0 || i >= n {
			return c, false
		}
		c[i]++
	}
	return c, true
}

func repeat(seq []int, times int) []int {
	var out []int
	for range times {
		out = append(out, seq...)
	}
	return out
}
