package discovery

import (
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/meshgate/meshgate/discovery/consultest"
)

// TestConsulCost measures what watching costs Consul and how fast changes
// arrive: the request rate of an idle source watching 50 services, and the
// time from a change acknowledged by the agent to the new snapshot being
// published, over 100 changes. Run with -v to see the figures; the bounds
// asserted are the promises (near-zero idle traffic, p99 under a second).
func TestConsulCost(t *testing.T) {
	if testing.Short() {
		t.Skip("measures for ~25s")
	}
	t.Parallel()
	a := consultest.Start(t)
	const services = 50
	names := make([]string, services)
	for i := range names {
		names[i] = fmt.Sprintf("svc-%02d", i)
		register(t, a, names[i], names[i]+"-1", 10000+i, nil, nil, 1)
	}
	cc := consulConfig(a)
	cc.Wait = 5 * 60 * 1e9 // the default: 5m
	cc.MinInterval = 100 * 1e6
	src, store := runConsul(t, cc, names, nil)
	waitSnapshot(t, store, 15*time.Second, "all 50 services", func(s *Snapshot) bool {
		for _, n := range names {
			if ids(s, n) != "meshgate-test/"+n+"-1@1;" {
				return false
			}
		}
		return true
	})

	// Idle: nothing changes, every watch sits in its blocking query.
	time.Sleep(time.Second) // let the first round settle
	before := src.opts.Requests.Count()
	const idle = 10 * time.Second
	time.Sleep(idle)
	idleReqs := src.opts.Requests.Count() - before
	rate := float64(idleReqs) / idle.Seconds()
	t.Logf("idle: %d requests to Consul in %v watching %d services = %.2f req/s", idleReqs, idle, services, rate)
	if rate > 1 {
		t.Errorf("idle request rate %.2f/s, want near zero", rate)
	}

	// 100 changes: a weight changes, the snapshot must show it.
	var lat []time.Duration
	for i := 0; i < 100; i++ {
		n := names[i%services]
		w := 2 + i
		register(t, a, n, n+"-1", 10000+i%services, nil, nil, w)
		want := fmt.Sprintf("meshgate-test/%s-1@%d;", n, w)
		lat = append(lat, waitSnapshot(t, store, 2*time.Second, "change "+fmt.Sprint(i), func(s *Snapshot) bool { return ids(s, n) == want }))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	p50, p99 := lat[49], lat[98]
	t.Logf("change → snapshot over 100 changes: p50 %v, p99 %v, max %v", p50.Round(time.Millisecond), p99.Round(time.Millisecond), lat[99].Round(time.Millisecond))
	if p99 > time.Second {
		t.Errorf("p99 %v, want under 1s", p99)
	}
}
