package balancer

import (
	"math"
	"slices"
	"sync/atomic"
	"testing"
)

// loaded returns endpoints with the given weights and in-flight counts.
func loaded(weights []int, inflight []int64) []Endpoint {
	eps := endpoints(weights...)
	for i, n := range inflight {
		eps[i].InFlight.Store(n)
	}
	return eps
}

func ones(n int) []int { return slices.Repeat([]int{1}, n) }

// TestLeastRequestNeverPicksMostLoaded checks the P2C guarantee: two
// distinct candidates, so the strictly most loaded endpoint never wins.
func TestLeastRequestNeverPicksMostLoaded(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		weights  []int
		inflight []int64
		never    int
		picked   []int // each picked at least once
	}{
		{name: "two idle, one busy", weights: ones(3), inflight: []int64{0, 0, 10}, never: 2, picked: []int{0, 1}},
		{name: "busy first", weights: ones(3), inflight: []int64{3, 1, 2}, never: 0, picked: []int{1, 2}},
		{name: "four endpoints", weights: ones(4), inflight: []int64{5, 5, 9, 1}, never: 2, picked: []int{0, 1, 3}},
		{name: "two endpoints", weights: ones(2), inflight: []int64{1, 0}, never: 0, picked: []int{1}},
		{name: "per weight: 4/1 loses to 6/2", weights: []int{1, 2, 2}, inflight: []int64{4, 6, 1}, never: 0, picked: []int{1, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := NewLeastRequest(loaded(tt.weights, tt.inflight), newSeededRand())
			c, ok := counts(b, nil, nil, len(tt.weights), 3000)
			if !ok {
				t.Fatalf("out-of-range pick")
			}
			if c[tt.never] != 0 {
				t.Errorf("most loaded endpoint %d picked %d times; counts %v", tt.never, c[tt.never], c)
			}
			for _, i := range tt.picked {
				if c[i] == 0 {
					t.Errorf("endpoint %d never picked; counts %v", i, c)
				}
			}
		})
	}
}

func TestLeastRequestPrefersLeastLoaded(t *testing.T) {
	t.Parallel()
	b := NewLeastRequest(loaded(ones(3), []int64{1, 5, 10}), newSeededRand())
	c, ok := counts(b, nil, nil, 3, 3000)
	if !ok {
		t.Fatalf("out-of-range pick")
	}
	// 0 wins every pair it is in (2/3), 1 only the pair {1, 2} (1/3).
	if !(c[0] > c[1] && c[1] > 0 && c[2] == 0) {
		t.Errorf("counts %v, want c[0] > c[1] > 0 and c[2] == 0", c)
	}
	if share := float64(c[0]) / 3000; math.Abs(share-2.0/3) > 0.05 {
		t.Errorf("least loaded share %.3f, want about 2/3", share)
	}
}

func TestLeastRequestWeights(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		weights  []int
		inflight []int64
		want     int // always picked
	}{
		{name: "2/1 vs 4/4", weights: []int{1, 4}, inflight: []int64{2, 4}, want: 1},
		{name: "1/1 vs 8/4", weights: []int{1, 4}, inflight: []int64{1, 8}, want: 0},
		{name: "nil InFlight counts as 0", weights: []int{1, 1}, inflight: []int64{-1, 1}, want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			eps := loaded(tt.weights, tt.inflight)
			for i, n := range tt.inflight {
				if n < 0 {
					eps[i].InFlight = nil
				}
			}
			b := NewLeastRequest(eps, newSeededRand())
			for k := range 200 {
				if got := b.Pick(nil, nil); got != tt.want {
					t.Fatalf("pick %d = %d, want %d", k, got, tt.want)
				}
			}
		})
	}
}

// TestLeastRequestIdleFollowsWeights checks ties go by weight: idle
// endpoints get traffic in proportion to their weights.
func TestLeastRequestIdleFollowsWeights(t *testing.T) {
	t.Parallel()
	const n = 10000
	for _, weights := range [][]int{{1, 3}, {1, 2, 7}, {2, 2, 2}} {
		b := NewLeastRequest(loaded(weights, nil), newSeededRand())
		c, ok := counts(b, nil, nil, len(weights), n)
		if !ok {
			t.Fatalf("%v: out-of-range pick", weights)
		}
		sum := 0
		for _, w := range weights {
			sum += w
		}
		for i, w := range weights {
			if share, want := float64(c[i])/n, float64(w)/float64(sum); math.Abs(share-want) > 0.02 {
				t.Errorf("%v: endpoint %d share %.3f, want %.3f ± 0.02", weights, i, share, want)
			}
		}
	}
}

// TestLeastRequestDraw checks the second candidate is never the first and
// is drawn in proportion to weight among the rest.
func TestLeastRequestDraw(t *testing.T) {
	t.Parallel()
	for _, weights := range [][]int{{1, 2, 3, 4}, {5, 5, 5, 5}} {
		b := NewLeastRequest(endpoints(weights...), newSeededRand())
		for not := range weights {
			c := make([]int, len(weights))
			const n = 20000
			for range n {
				c[b.draw(not)]++
			}
			if c[not] != 0 {
				t.Errorf("%v: draw(%d) returned %d %d times", weights, not, not, c[not])
			}
			rest := 0
			for i, w := range weights {
				if i != not {
					rest += w
				}
			}
			for i, w := range weights {
				if i == not {
					continue
				}
				if share, want := float64(c[i])/n, float64(w)/float64(rest); math.Abs(share-want) > 0.02 {
					t.Errorf("%v: draw(%d) gave %d share %.3f, want %.3f", weights, not, i, share, want)
				}
			}
		}
	}
}

func TestLeastRequestSkip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		weights  []int
		inflight []int64
		skip     []int
		want     int
	}{
		{name: "only one accepted of many", weights: ones(20), skip: []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 15, 16, 17, 18, 19}, want: 13},
		{name: "less loaded of the accepted", weights: ones(3), inflight: []int64{0, 5, 9}, skip: []int{0}, want: 1},
		{name: "single endpoint accepted", weights: ones(1), want: 0},
		{name: "single endpoint skipped", weights: ones(1), skip: []int{0}, want: -1},
		{name: "all skipped", weights: ones(5), skip: []int{0, 1, 2, 3, 4}, want: -1},
		{name: "no endpoints", weights: nil, want: -1},
		{name: "weighted, one accepted", weights: []int{1, 50, 50}, skip: []int{1, 2}, want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := NewLeastRequest(loaded(tt.weights, tt.inflight), newSeededRand())
			skip := skipSet(tt.skip...)
			for k := range 200 {
				if got := b.Pick(nil, skip); got != tt.want {
					t.Fatalf("pick %d = %d, want %d", k, got, tt.want)
				}
			}
		})
	}
}

func TestLeastRequestDefaultRand(t *testing.T) {
	t.Parallel()
	eps := endpoints(1, 1)
	eps[1].InFlight = new(atomic.Int64)
	eps[1].InFlight.Store(3)
	b := NewLeastRequest(eps, nil)
	if got := b.Pick(nil, nil); got != 0 {
		t.Errorf("Pick = %d, want 0 (idle one)", got)
	}
}
