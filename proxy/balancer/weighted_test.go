package balancer

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestWeightedSmoothOrder(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		weights []int
		cycle   []int
	}{
		{name: "nginx 5,1,1", weights: []int{5, 1, 1}, cycle: []int{0, 0, 1, 0, 2, 0, 0}},
		{name: "divided by GCD", weights: []int{10, 2, 2}, cycle: []int{0, 0, 1, 0, 2, 0, 0}},
		{name: "2,1", weights: []int{2, 1}, cycle: []int{0, 1, 0}},
		{name: "1,2,3", weights: []int{1, 2, 3}, cycle: []int{2, 1, 0, 2, 1, 2}},
		{name: "equal weights are round robin", weights: []int{4, 4, 4}, cycle: []int{0, 1, 2}},
		{name: "weight below 1 counts as 1", weights: []int{0, -3, 1}, cycle: []int{0, 1, 2}},
		{name: "single endpoint", weights: []int{7}, cycle: []int{0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := NewWeightedRoundRobin(endpoints(tt.weights...))
			want := repeat(tt.cycle, 3)
			if got := picks(b, nil, nil, len(want)); !slices.Equal(got, want) {
				t.Errorf("picks = %v, want %v", got, want)
			}
		})
	}
}

func TestWeightedNoEndpoints(t *testing.T) {
	t.Parallel()
	b := NewWeightedRoundRobin(nil)
	if got := b.Pick(nil, nil); got != -1 {
		t.Errorf("Pick = %d, want -1", got)
	}
	if got := b.Pick(nil, skipSet()); got != -1 {
		t.Errorf("Pick with skip = %d, want -1", got)
	}
}

func TestWeightedRatio(t *testing.T) {
	t.Parallel()
	const picks = 10000
	tests := []struct {
		name    string
		weights []int
	}{
		{name: "1,2,7", weights: []int{1, 2, 7}},
		{name: "3,5,11,13", weights: []int{3, 5, 11, 13}},
		{name: "stride 40000,30001,1", weights: []int{40000, 30001, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := NewWeightedRoundRobin(endpoints(tt.weights...))
			c, ok := counts(b, nil, nil, len(tt.weights), picks)
			if !ok {
				t.Fatalf("out-of-range pick; counts so far %v", c)
			}
			sum := 0
			for _, w := range tt.weights {
				sum += w
			}
			for i, w := range tt.weights {
				want := float64(picks) * float64(w) / float64(sum)
				// 2% relative, but at least one pick for tiny shares.
				if d := math.Abs(float64(c[i]) - want); d > max(0.02*want, 1) {
					t.Errorf("endpoint %d (weight %d): %d picks, want %.0f ± 2%%", i, w, c[i], want)
				}
			}
		})
	}
}

// TestWeightedExactPerCycle checks every representation of the sequence
// gives each endpoint exactly its (GCD-reduced) weight per cycle.
func TestWeightedExactPerCycle(t *testing.T) {
	t.Parallel()
	many := make([]int, 300) // n×T beyond the build budget: stride
	for i := range many {
		many[i] = i + 1
	}
	tests := []struct {
		name    string
		weights []int
		mode    string
	}{
		{name: "table", weights: []int{1, 2, 7, 13}, mode: "table"},
		{name: "round robin", weights: []int{3, 3, 3, 3}, mode: "rr"},
		{name: "stride: cycle beyond 65536", weights: []int{40000, 30001, 1}, mode: "stride"},
		{name: "stride: build budget", weights: many, mode: "stride"},
		{name: "stride: clamped weights", weights: []int{MaxWeight + 5, 1}, mode: "stride"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := NewWeightedRoundRobin(endpoints(tt.weights...))
			if got := wrrMode(b); got != tt.mode {
				t.Fatalf("mode = %s, want %s", got, tt.mode)
			}
			g := 0
			for _, w := range tt.weights {
				g = gcd(g, min(w, MaxWeight))
			}
			c, ok := counts(b, nil, nil, len(tt.weights), int(b.cycle)*2)
			if !ok {
				t.Fatalf("out-of-range pick")
			}
			for i, w := range tt.weights {
				if want := 2 * min(w, MaxWeight) / g; c[i] != want {
					t.Errorf("endpoint %d: %d picks in two cycles, want %d", i, c[i], want)
				}
			}
		})
	}
}

func wrrMode(b *WeightedRoundRobin) string {
	switch {
	case b.seq != nil:
		return "table"
	case b.cum != nil:
		return "stride"
	}
	return "rr"
}

// TestWeightedStrideIsSpread checks the fallback sequence interleaves
// instead of sending runs: over random weight sets, the largest gap
// between an endpoint's picks (wrapping around the cycle) stays within
// 2.5 times the ideal cycle/weight.
func TestWeightedStrideIsSpread(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(5, 6))
	for trial := range 40 {
		n := 2 + rng.IntN(20)
		weights := make([]int, n)
		for i := range weights {
			weights[i] = 1 + rng.IntN(10000)
		}
		b := NewWeightedRoundRobin(endpoints(weights...))
		if wrrMode(b) != "stride" {
			continue
		}
		g := 0
		for _, w := range weights {
			g = gcd(g, w)
		}
		first := slices.Repeat([]int{-1}, n)
		last := make([]int, n)
		maxGap := make([]int, n)
		for k := range int(b.cycle) {
			i := b.Pick(nil, nil)
			if first[i] < 0 {
				first[i] = k
			} else {
				maxGap[i] = max(maxGap[i], k-last[i])
			}
			last[i] = k
		}
		for i, w := range weights {
			if w/g < 2 {
				continue
			}
			gap := max(maxGap[i], int(b.cycle)-last[i]+first[i])
			if ideal := float64(b.cycle) / float64(w/g); float64(gap) > 2.5*ideal {
				t.Errorf("trial %d, weights %v: endpoint %d max gap %d, ideal %.1f", trial, weights, i, gap, ideal)
			}
		}
	}
}

// TestGoldenStride checks the stride is a bijection's multiplier (coprime
// with the cycle) with small continued fraction quotients.
func TestGoldenStride(t *testing.T) {
	t.Parallel()
	for _, cycle := range []uint64{1, 2, 3, 4, 5, 89, 144, 65537, 1 << 20, 999983 * 1000, 1<<40 + 12345} {
		k := goldenStride(cycle)
		q, g := maxQuotient(k, cycle)
		if g != 1 || k == 0 || (k >= cycle && cycle > 1) {
			t.Errorf("goldenStride(%d) = %d, gcd %d; want 0 < k < cycle, coprime", cycle, k, g)
		}
		if cycle > 100 && q > 4 {
			t.Errorf("goldenStride(%d) = %d with partial quotient %d, want ≤ 4", cycle, k, q)
		}
	}
}

func TestWeightedSkip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		weights []int
		skip    []int
		want    []int
	}{
		{name: "5,1,1 skip heavy alternates light", weights: []int{5, 1, 1}, skip: []int{0}, want: []int{1, 2, 1, 2, 1, 2}},
		{name: "5,1,1 skip light: its turn goes to the next in the sequence", weights: []int{5, 1, 1}, skip: []int{1}, want: []int{0, 0, 0, 2, 0, 0, 0, 0, 0, 2, 0}},
		{name: "all skipped", weights: []int{5, 1, 1}, skip: []int{0, 1, 2}, want: []int{-1, -1}},
		{name: "round robin skip", weights: []int{1, 1, 1}, skip: []int{1}, want: []int{0, 2, 0, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := NewWeightedRoundRobin(endpoints(tt.weights...))
			if got := picks(b, nil, skipSet(tt.skip...), len(tt.want)); !slices.Equal(got, tt.want) {
				t.Errorf("picks = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestWeightedSkipScan covers the fallback when the probes only meet
// rejected endpoints: the accepted ones still share by weight.
func TestWeightedSkipScan(t *testing.T) {
	t.Parallel()
	for _, weights := range [][]int{{1000, 1, 2}, {100000, 1, 2}} {
		b := NewWeightedRoundRobin(endpoints(weights...))
		c, ok := counts(b, nil, skipSet(0), 3, 3000)
		if !ok {
			t.Fatalf("%v: out-of-range pick", weights)
		}
		if c[0] != 0 {
			t.Errorf("%v: skipped endpoint picked %d times", weights, c[0])
		}
		// 1:2 among the accepted ones, loosely: probes also find them.
		if r := float64(c[2]) / float64(c[1]); r < 1.5 || r > 2.5 {
			t.Errorf("%v: counts %v, want endpoint 2 about twice endpoint 1", weights, c)
		}
	}
}
