package balancer

import (
	"net/http"
	"testing"

	"github.com/meshgate/meshgate/config"
)

// BenchmarkPick measures Pick per policy over ten weighted endpoints,
// serially and from parallel goroutines (…/parallel). Run with -benchmem:
// every case must report 0 allocs/op.
func BenchmarkPick(b *testing.B) {
	eps := endpoints(5, 1, 1, 3, 2, 8, 1, 1, 4, 2)
	header := keyed("user-1234567")
	cookie := keyed("")
	cookie.Header.Set("Cookie", `theme=dark; lang=en-GB; sid="user-1234567"; _ga=GA1.2.3`)
	tried := func(i int) bool { return i == 5 }
	cases := []struct {
		name string
		cfg  config.LoadBalancer
		r    *http.Request
		skip func(int) bool
	}{
		{"round_robin", config.LoadBalancer{Policy: PolicyRoundRobin}, header, nil},
		{"weighted_round_robin", config.LoadBalancer{Policy: PolicyWeightedRoundRobin}, header, nil},
		{"weighted_round_robin_stride", config.LoadBalancer{Policy: PolicyWeightedRoundRobin}, header, nil},
		{"least_request", config.LoadBalancer{Policy: PolicyLeastRequest}, header, nil},
		{"consistent_hash_header", config.LoadBalancer{Policy: PolicyConsistentHash, HashOn: &config.HashOn{Header: keyHeader}}, header, nil},
		{"consistent_hash_cookie", config.LoadBalancer{Policy: PolicyConsistentHash, HashOn: &config.HashOn{Cookie: "sid"}}, cookie, nil},
		{"round_robin_skip", config.LoadBalancer{Policy: PolicyRoundRobin}, header, tried},
		{"weighted_round_robin_skip", config.LoadBalancer{Policy: PolicyWeightedRoundRobin}, header, tried},
		{"least_request_skip", config.LoadBalancer{Policy: PolicyLeastRequest}, header, tried},
		{"consistent_hash_header_skip", config.LoadBalancer{Policy: PolicyConsistentHash, HashOn: &config.HashOn{Header: keyHeader}}, header, tried},
	}
	for _, c := range cases {
		eps := eps
		if c.name == "weighted_round_robin_stride" {
			eps = endpoints(40000, 30001, 1, 7, 9)
		}
		bal, err := New(c.cfg, eps, DefaultRand{})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if bal.Pick(c.r, c.skip) < 0 {
					b.Fatal("no pick")
				}
			}
		})
		b.Run(c.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if bal.Pick(c.r, c.skip) < 0 {
						b.Error("no pick")
						return
					}
				}
			})
		})
	}
}

// BenchmarkNew measures building a balancer, which happens per service on
// every discovery snapshot.
func BenchmarkNew(b *testing.B) {
	eps := endpoints(5, 1, 1, 3, 2, 8, 1, 1, 4, 2)
	for _, cfg := range []config.LoadBalancer{
		{Policy: PolicyWeightedRoundRobin},
		{Policy: PolicyConsistentHash, HashOn: &config.HashOn{Header: keyHeader}},
	} {
		b.Run(cfg.Policy, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := New(cfg, eps, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
