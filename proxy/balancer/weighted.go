package balancer

import (
	"math/bits"
	"net/http"
	"slices"
	"sync/atomic"
)

const (
	// maxSmoothCycle bounds the precomputed smooth sequence (one entry per
	// pick in a cycle, 2 bytes each).
	maxSmoothCycle = 1 << 16
	// maxSmoothBuildSteps bounds the work of precomputing it: building a
	// cycle of length T over n endpoints takes n×T steps (a few ms at this
	// bound).
	maxSmoothBuildSteps = 1 << 22
	// maxSkipProbes is how many further positions of the sequence Pick
	// tries when skip rejects an endpoint, before it scans the endpoints.
	maxSkipProbes = 32
	// invPhi is 1/φ, the golden ratio's inverse, for the stride sequence.
	invPhi = 0.6180339887498949
	// maxStrideCandidates bounds the search for a stride on each side of
	// t/φ; goodQuotient ends it early.
	maxStrideCandidates = 1024
	goodQuotient        = 3
)

// WeightedRoundRobin spreads requests in proportion to the endpoints'
// weights, in the smooth order of nginx's weighted round robin: for
// weights 5, 1, 1 one cycle is a a b a c a a, so no endpoint gets a burst
// of consecutive requests larger than its weight calls for.
//
// Pick takes no lock. The balancer divides the weights by their greatest
// common divisor, giving a cycle of T = sum of weights picks, and
// precomputes one cycle of nginx's order; Pick advances an atomic counter
// through it. Concurrent requests each take their own position, so every
// cycle of T picks gives each endpoint exactly its weight.
//
// Precomputing is bounded: when T would exceed 65536 picks, or n×T would
// exceed about four million build steps (n endpoints), the balancer uses a
// golden-ratio stride instead. Each endpoint owns a run of positions equal
// to its weight in [0, T), and pick c takes the owner of position
// c×K mod T, with K an integer near T/φ that is coprime with T. Ratios
// stay exact over every cycle of T picks and each endpoint's picks are
// spread over the cycle rather than bunched (K is chosen so that the gaps
// between an endpoint's picks stay within about 2.5 times the ideal
// T/weight), but the order is not nginx's and bursts are somewhat larger
// than in the smooth order. When all weights are equal the order is
// plain round robin (0, 1, …, n-1) and nothing is precomputed.
//
// When skip rejects the endpoint at the current position, Pick moves on
// through the sequence, up to 32 positions, and consumes the positions it
// passed so the next request continues after the chosen one. When all of
// those are rejected too (the accepted endpoints have small weights), it
// falls back to a weighted round robin over the accepted endpoints that
// does not keep the smooth order.
type WeightedRoundRobin struct {
	next atomic.Uint64

	// Exactly one representation of the sequence is in use: seq when set,
	// else the stride over cum when cum is set, else plain round robin.
	seq    []uint16 // one cycle; indexes fit since n ≤ T ≤ maxSmoothCycle
	cum    []uint64 // cum[i]: sum of the weights of endpoints 0..i
	stride uint64   // K of the stride sequence

	cycle   uint64   // T, the length of one cycle
	weights []uint64 // GCD-reduced weights, for the skip fallback
}

var _ Balancer = (*WeightedRoundRobin)(nil)

// NewWeightedRoundRobin returns a smooth weighted round robin balancer over
// eps. Only the endpoints' weights are kept.
func NewWeightedRoundRobin(eps []Endpoint) *WeightedRoundRobin {
	b := &WeightedRoundRobin{}
	n := len(eps)
	if n == 0 {
		return b
	}
	g := 0
	for _, e := range eps {
		g = gcd(g, weightOf(e))
	}
	b.weights = make([]uint64, n)
	var total uint64
	allEqual := true
	for i, e := range eps {
		w := uint64(weightOf(e) / g)
		b.weights[i] = w
		total += w
		allEqual = allEqual && w == 1
	}
	b.cycle = total
	switch {
	case allEqual:
		// The smooth order of equal weights is 0, 1, …, n-1.
	case total <= maxSmoothCycle && uint64(n)*total <= maxSmoothBuildSteps:
		b.seq = smoothCycle(b.weights, total)
	default:
		b.cum = make([]uint64, n)
		var sum uint64
		for i, w := range b.weights {
			sum += w
			b.cum[i] = sum
		}
		b.stride = goldenStride(total)
	}
	return b
}

// smoothCycle returns one cycle of nginx's smooth weighted round robin
// order: every step each endpoint's current weight grows by its weight,
// the largest (the first of equals) is picked and loses the total.
func smoothCycle(weights []uint64, total uint64) []uint16 {
	seq := make([]uint16, total)
	cur := make([]int64, len(weights))
	for t := range seq {
		best := 0
		for i, w := range weights {
			cur[i] += int64(w)
			if cur[i] > cur[best] {
				best = i
			}
		}
		cur[best] -= int64(total)
		seq[t] = uint16(best)
	}
	return seq
}

// goldenStride returns the stride K for a cycle of t ≥ 1 positions: a K
// coprime with t, so that c×K mod t visits every position once per cycle,
// near t/φ, so that the visits to any run of positions are spread evenly.
//
// How evenly depends on the continued fraction of K/t: its partial
// quotients bound how much the gaps between visits to a run of positions
// can exceed the ideal t/run (three-distance theorem). K = ⌊t/φ⌋ starts
// like 1/φ, all ones, but its tail can hold a large quotient, which lets
// endpoints whose weights match that scale go unpicked for hundreds of
// times their ideal gap. So candidates around t/φ are tried and the one
// with the smallest largest quotient is kept.
func goldenStride(t uint64) uint64 {
	if t <= 2 {
		return 1
	}
	guess := uint64(float64(t) * invPhi)
	best, bestQ := uint64(0), uint64(0)
	for d := range uint64(maxStrideCandidates) {
		for _, k := range [2]uint64{guess + d, guess - d} {
			if k == 0 || k >= t {
				continue
			}
			q, g := maxQuotient(k, t)
			if g == 1 && (best == 0 || q < bestQ) {
				best, bestQ = k, q
			}
		}
		if best != 0 && bestQ <= goodQuotient {
			break
		}
	}
	if best == 0 {
		// No coprime candidate in the window (it holds several for any
		// t, but stay correct regardless): t-1 is always coprime with t.
		best = t - 1
	}
	return best
}

// maxQuotient returns the largest partial quotient of the continued
// fraction of t/k and gcd(k, t), from one run of Euclid's algorithm.
func maxQuotient(k, t uint64) (maxQ, gcd uint64) {
	a, b := t, k
	for b != 0 {
		maxQ = max(maxQ, a/b)
		a, b = b, a%b
	}
	return maxQ, a
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// at returns the endpoint at position c of the (endless) sequence.
func (b *WeightedRoundRobin) at(c uint64) int {
	switch {
	case b.seq != nil:
		return int(b.seq[c%b.cycle])
	case b.cum == nil:
		return int(c % b.cycle)
	}
	// c mod T < T and K < T, so the product's high word is below T as
	// Div64 requires.
	hi, lo := bits.Mul64(c%b.cycle, b.stride)
	_, p := bits.Div64(hi, lo, b.cycle)
	// The owner of position p is the first endpoint whose cumulative
	// weight exceeds p.
	i, _ := slices.BinarySearch(b.cum, p+1)
	return i
}

// Pick implements Balancer. The request is not looked at.
func (b *WeightedRoundRobin) Pick(_ *http.Request, skip func(i int) bool) int {
	if b.cycle == 0 {
		return -1
	}
	c := b.next.Add(1) - 1
	if skip == nil {
		return b.at(c)
	}
	for k := range min(b.cycle, maxSkipProbes) {
		i := b.at(c + k)
		if skip(i) {
			continue
		}
		if k > 0 {
			// Consume the rejected positions: otherwise the endpoint after
			// a rejected run would also take the run's share.
			b.next.Add(k)
		}
		return i
	}
	return b.pickScan(c, skip)
}

// pickScan picks among the endpoints skip accepts, in proportion to their
// weights, by position c in a cycle over their total weight.
func (b *WeightedRoundRobin) pickScan(c uint64, skip func(i int) bool) int {
	var sum uint64
	for i, w := range b.weights {
		if !skip(i) {
			sum += w
		}
	}
	if sum == 0 {
		return -1
	}
	t := c % sum
	last := -1
	for i, w := range b.weights {
		if skip(i) {
			continue
		}
		if t < w {
			return i
		}
		t -= w
		last = i
	}
	// skip changed its mind between the two passes.
	return last
}
