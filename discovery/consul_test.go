package discovery

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/discovery/consultest"
)

// consulConfig is a watch configuration with short timings for tests.
func consulConfig(agent *consultest.Agent) config.Consul {
	return config.Consul{
		Address:     agent.Addr,
		Wait:        config.Duration(30 * time.Second),
		MinInterval: config.Duration(20 * time.Millisecond),
		MaxBackoff:  config.Duration(500 * time.Millisecond),
		Routes:      config.ConsulRoutes{TagPrefix: "meshgate.route=", MetaKey: "meshgate-route"},
	}
}

// runConsul runs a Consul source into a store until the test ends.
func runConsul(t *testing.T, cc config.Consul, watch []string, static map[string]config.Service) (*Consul, *Store) {
	t.Helper()
	client, counter, err := NewConsulClient(cc)
	if err != nil {
		t.Fatal(err)
	}
	src := NewConsul(ConsulOptions{Client: client, Requests: counter, Config: cc, Watch: watch, Static: static})
	store := NewStore()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := src.Run(ctx, store.Publish); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return src, store
}

func register(t *testing.T, a *consultest.Agent, name, id string, port int, tags []string, meta map[string]string, weight int) {
	t.Helper()
	reg := &api.AgentServiceRegistration{
		ID: id, Name: name, Address: "127.0.0.1", Port: port, Tags: tags, Meta: meta,
		Check: &api.AgentServiceCheck{CheckID: id + ":ttl", TTL: "10m", Status: api.HealthPassing},
	}
	if weight > 0 {
		reg.Weights = &api.AgentWeights{Passing: weight, Warning: 1}
	}
	if err := a.Client.Agent().ServiceRegister(reg); err != nil {
		t.Fatal(err)
	}
}

// waitSnapshot waits up to d for a snapshot satisfying cond and returns
// how long it took.
func waitSnapshot(t *testing.T, s *Store, d time.Duration, what string, cond func(*Snapshot) bool) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(d)
	for {
		if snap := s.Load(); snap != nil && cond(snap) {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not seen within %v", what, d)
		}
		time.Sleep(time.Millisecond)
	}
}

func ids(snap *Snapshot, service string) string {
	svc := snap.Service(service)
	if svc == nil {
		return "<none>"
	}
	out := ""
	for _, in := range svc.Instances {
		out += fmt.Sprintf("%s@%d;", in.ID, in.Weight)
	}
	return out
}

func TestConsulSourceFollowsTheCatalog(t *testing.T) {
	t.Parallel()
	a := consultest.Start(t)
	register(t, a, "web", "web-1", 9001, nil, nil, 0)
	_, store := runConsul(t, consulConfig(a), []string{"web"}, map[string]config.Service{
		"static": {Instances: []config.Instance{{Address: "127.0.0.1", Port: 7000}}},
	})
	waitSnapshot(t, store, 10*time.Second, "first snapshot", func(s *Snapshot) bool {
		return ids(s, "web") == "meshgate-test/web-1@1;" && ids(s, "static") == "127.0.0.1:7000@1;"
	})
	if src := store.Load().Service("web").Instances[0].Source; src != "consul" {
		t.Errorf("source = %q", src)
	}

	// A new instance with a weight appears within a second.
	register(t, a, "web", "web-2", 9002, nil, nil, 3)
	waitSnapshot(t, store, time.Second, "registered instance", func(s *Snapshot) bool {
		return ids(s, "web") == "meshgate-test/web-1@1;meshgate-test/web-2@3;"
	})

	// A check turning critical removes the instance within a second.
	if err := a.Client.Agent().UpdateTTL("web-1:ttl", "down", api.HealthCritical); err != nil {
		t.Fatal(err)
	}
	waitSnapshot(t, store, time.Second, "critical instance dropped", func(s *Snapshot) bool {
		return ids(s, "web") == "meshgate-test/web-2@3;"
	})

	// Deregistration too.
	if err := a.Client.Agent().ServiceDeregister("web-2"); err != nil {
		t.Fatal(err)
	}
	waitSnapshot(t, store, time.Second, "deregistered instance dropped", func(s *Snapshot) bool {
		return ids(s, "web") == ""
	})
}

func TestConsulSourceWarningAndTagFilter(t *testing.T) {
	t.Parallel()
	a := consultest.Start(t)
	register(t, a, "api", "api-v1", 9101, []string{"v1"}, nil, 0)
	register(t, a, "api", "api-v2", 9102, []string{"v2", "canary"}, nil, 0)
	register(t, a, "api", "api-v2b", 9103, []string{"v2"}, nil, 0)
	if err := a.Client.Agent().UpdateTTL("api-v2b:ttl", "slow", api.HealthWarning); err != nil {
		t.Fatal(err)
	}

	cc := consulConfig(a)
	cc.Tags = []string{"v2"}
	_, store := runConsul(t, cc, []string{"api"}, nil)
	waitSnapshot(t, store, 10*time.Second, "tag filter, passing only", func(s *Snapshot) bool {
		return ids(s, "api") == "meshgate-test/api-v2@1;"
	})

	cc.AllowWarning = true
	_, store2 := runConsul(t, cc, []string{"api"}, nil)
	waitSnapshot(t, store2, 10*time.Second, "tag filter, warning allowed", func(s *Snapshot) bool {
		return ids(s, "api") == "meshgate-test/api-v2@1;meshgate-test/api-v2b@1;" &&
			s.Service("api").Instances[1].Health == Warning
	})
}

func TestConsulSourceCatalogRoutes(t *testing.T) {
	t.Parallel()
	a := consultest.Start(t)
	cc := consulConfig(a)
	cc.Routes.Enabled = true
	_, store := runConsul(t, cc, nil, nil)
	waitSnapshot(t, store, 10*time.Second, "empty first snapshot", func(s *Snapshot) bool { return len(s.Routes) == 0 })

	register(t, a, "products", "products-1", 9201, []string{"meshgate.route=/products"}, nil, 0)
	register(t, a, "carts", "carts-1", 9202, nil, map[string]string{"meshgate-route": "shop.test/carts"}, 0)
	waitSnapshot(t, store, 2*time.Second, "routes from a tag and a meta key", func(s *Snapshot) bool {
		return len(s.Routes) == 2 &&
			s.Routes[0] == RouteHint{Service: "carts", Host: "shop.test", PathPrefix: "/carts", Origin: "consul meta"} &&
			s.Routes[1] == RouteHint{Service: "products", PathPrefix: "/products", Origin: "consul tag"} &&
			ids(s, "products") == "meshgate-test/products-1@1;" && ids(s, "carts") == "meshgate-test/carts-1@1;"
	})

	if err := a.Client.Agent().ServiceDeregister("products-1"); err != nil {
		t.Fatal(err)
	}
	waitSnapshot(t, store, 2*time.Second, "route gone with its service", func(s *Snapshot) bool {
		return len(s.Routes) == 1 && s.Routes[0].Service == "carts" && s.Service("products") == nil
	})
}

func TestConsulSourceSurvivesAgentRestart(t *testing.T) {
	t.Parallel()
	a := consultest.Start(t)
	register(t, a, "web", "web-1", 9301, nil, nil, 0)
	src, store := runConsul(t, consulConfig(a), []string{"web"}, nil)
	waitSnapshot(t, store, 10*time.Second, "first snapshot", func(s *Snapshot) bool { return ids(s, "web") == "meshgate-test/web-1@1;" })
	before := store.Load()

	a.Stop()
	time.Sleep(1500 * time.Millisecond)
	st := src.Status()
	if st.Errors == 0 || st.LastError == "" {
		t.Errorf("agent down but status shows no error: %+v", st)
	}
	if st.StalenessSeconds < 1 {
		t.Errorf("staleness %.2fs, want it to grow while the agent is down", st.StalenessSeconds)
	}
	if store.Load() != before {
		t.Error("a new snapshot was published while Consul was down; want the last known good kept")
	}
	if !st.Synced {
		t.Error("status lost its synced state")
	}

	// A fresh dev agent knows nothing and starts its index over: the watch
	// must notice the index going backwards and follow the new catalog.
	a.Restart()
	waitSnapshot(t, store, 10*time.Second, "empty catalog after restart", func(s *Snapshot) bool { return ids(s, "web") == "" })
	register(t, a, "web", "web-9", 9309, nil, nil, 0)
	waitSnapshot(t, store, 2*time.Second, "registration on the new agent", func(s *Snapshot) bool {
		return ids(s, "web") == "meshgate-test/web-9@1;"
	})
	if st := src.Status(); st.StalenessSeconds > 2 {
		t.Errorf("staleness %.2fs after recovery", st.StalenessSeconds)
	}
}
