package balancer

import (
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/meshgate/meshgate/config"
)

// policyCases builds one balancer of every policy over eps.
func policyCases(t testing.TB, eps []Endpoint) map[string]Balancer {
	t.Helper()
	out := map[string]Balancer{}
	for _, cfg := range []config.LoadBalancer{
		{Policy: PolicyRoundRobin},
		{Policy: PolicyWeightedRoundRobin},
		{Policy: PolicyLeastRequest},
		{Policy: PolicyConsistentHash, HashOn: &config.HashOn{Header: keyHeader}},
		{Policy: PolicyConsistentHash, HashOn: &config.HashOn{Cookie: "sid"}},
	} {
		b, err := New(cfg, eps, newSeededRand())
		if err != nil {
			t.Fatal(err)
		}
		name := cfg.Policy
		if cfg.HashOn != nil && cfg.HashOn.Cookie != "" {
			name += "_cookie"
		}
		out[name] = b
	}
	return out
}

// TestSkipNeverReturnsRejected checks, for every policy and random skip
// sets, that Pick returns an accepted index, or -1 exactly when skip
// rejects every endpoint.
func TestSkipNeverReturnsRejected(t *testing.T) {
	t.Parallel()
	eps := endpoints(5, 1, 1, 3, 2, 8, 1, 1)
	for name, b := range policyCases(t, eps) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(3, 4))
			for round := range 2000 {
				rejected := make([]bool, len(eps))
				all := true
				p := rng.Float64()
				for i := range rejected {
					rejected[i] = rng.Float64() < p
					all = all && rejected[i]
				}
				skip := func(i int) bool {
					if i < 0 || i >= len(eps) {
						t.Fatalf("skip called with %d", i)
					}
					return rejected[i]
				}
				r := keyed("")
				if round%3 != 0 {
					key := "user-" + strconv.Itoa(rng.IntN(50))
					r.Header.Set(keyHeader, key)
					r.Header.Set("Cookie", "sid="+key)
				}
				got := b.Pick(r, skip)
				switch {
				case all && got != -1:
					t.Fatalf("round %d: all rejected but Pick = %d", round, got)
				case !all && (got < 0 || got >= len(eps)):
					t.Fatalf("round %d: Pick = %d with accepted endpoints %v", round, got, rejected)
				case got >= 0 && rejected[got]:
					t.Fatalf("round %d: Pick = %d, which skip rejects", round, got)
				}
			}
		})
	}
}

func TestPickDoesNotAllocate(t *testing.T) {
	eps := endpoints(5, 1, 1, 3, 2, 8, 1, 1)
	r := keyed("user-42")
	r.Header.Set("Cookie", `theme=dark; sid="user-42"; lang=en`)
	noKey := keyed("")
	tried := []int{3, 5}
	skip := func(i int) bool {
		for _, j := range tried {
			if i == j {
				return true
			}
		}
		return false
	}
	for name, b := range policyCases(t, eps) {
		for _, c := range []struct {
			name string
			r    *http.Request
			skip func(int) bool
		}{
			{"keyed", r, nil},
			{"keyed+skip", r, skip},
			{"no key", noKey, nil},
			{"no key+skip", noKey, skip},
		} {
			var got int
			allocs := testing.AllocsPerRun(200, func() { got = b.Pick(c.r, c.skip) })
			if got < 0 {
				t.Errorf("%s/%s: Pick = %d", name, c.name, got)
			}
			if allocs != 0 {
				t.Errorf("%s/%s: %v allocations per Pick, want 0", name, c.name, allocs)
			}
		}
	}
}

// TestConcurrentPick runs every policy from many goroutines, with in-flight
// counters moving underneath, for the race detector, and checks the picks.
func TestConcurrentPick(t *testing.T) {
	t.Parallel()
	const goroutines, each = 8, 2000
	eps := endpoints(5, 1, 1, 3, 2, 8, 1, 1)
	for name, b := range policyCases(t, eps) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var wg sync.WaitGroup
			var bad, total atomic.Int64
			for g := range goroutines {
				wg.Go(func() {
					skip := func(i int) bool { return i == 5 }
					r := keyed("user-" + strconv.Itoa(g))
					for range each {
						i := b.Pick(r, skip)
						if i < 0 || i >= len(eps) || i == 5 {
							bad.Add(1)
							continue
						}
						total.Add(1)
						eps[i].InFlight.Add(1)
						eps[i].InFlight.Add(-1)
					}
				})
			}
			wg.Wait()
			if n := bad.Load(); n != 0 {
				t.Errorf("%d bad picks", n)
			}
			if n := total.Load(); n != goroutines*each {
				t.Errorf("%d good picks, want %d", n, goroutines*each)
			}
		})
	}
}

// TestConcurrentWeightedExact checks that concurrent requests each take
// their own position in the weighted sequence: whole cycles stay exact.
func TestConcurrentWeightedExact(t *testing.T) {
	t.Parallel()
	weights := []int{1, 2, 7}
	b := NewWeightedRoundRobin(endpoints(weights...))
	const goroutines, cycles = 4, 500
	picked := make([]atomic.Int64, len(weights))
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range cycles * 10 / goroutines {
				picked[b.Pick(nil, nil)].Add(1)
			}
		})
	}
	wg.Wait()
	for i, w := range weights {
		if got := picked[i].Load(); got != int64(w*cycles) {
			t.Errorf("endpoint %d: %d picks, want %d", i, got, w*cycles)
		}
	}
}
