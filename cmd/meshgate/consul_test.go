package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/meshgate/meshgate/discovery/consultest"
)

// TestSidecarWithConsul runs the real binary as a sidecar against a real
// Consul agent: it routes to instances registered in Consul, registers its
// own service, and on SIGTERM leaves Consul before it drains.
func TestSidecarWithConsul(t *testing.T) {
	agent := consultest.Start(t)
	back := named("orders-a", 0)
	defer back.Close()
	bh, bp, _ := net.SplitHostPort(strings.TrimPrefix(back.URL, "http://"))

	// The local service the sidecar registers: a health endpoint.
	local := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
	}))
	defer local.Close()
	lh, lp, _ := net.SplitHostPort(strings.TrimPrefix(local.URL, "http://"))

	cfgPath := filepath.Join(t.TempDir(), "sidecar.yaml")
	cfg := fmt.Sprintf(`listeners: [{name: http, address: "127.0.0.1:0"}]
admin: {address: "127.0.0.1:0"}
server: {drain_delay: 1s, grace_period: 5s}
services:
  orders: {}
routes: [{match: {path_prefix: /orders}, service: orders}]
discovery:
  consul: {address: %q, wait: 30s, min_interval: 10ms}
register:
  name: users
  id: users-sidecar-1
  address: %s
  port: %s
  tags: [sidecar]
  check: {path: /healthz, interval: 1s, timeout: 500ms}
  ttl: 3s
`, agent.Addr, lh, lp)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startMeshgate(t, "run", "--config", cfgPath)
	base := "http://" + p.traffic

	// No instance yet: 503.
	waitUntil(t, func() bool {
		res, err := http.Get(base + "/orders")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusServiceUnavailable
	})
	// An instance registered in Consul is routed within a second.
	port := 0
	fmt.Sscan(bp, &port)
	if err := agent.Client.Agent().ServiceRegister(&api.AgentServiceRegistration{
		ID: "orders-1", Name: "orders", Address: bh, Port: port,
	}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for backendOf(t, base+"/orders") != "orders-a" {
		if time.Since(start) > time.Second {
			t.Fatal("a Consul instance was not routed within 1s")
		}
		time.Sleep(10 * time.Millisecond)
	}

	// The sidecar registered its service, with both checks passing.
	waitUntil(t, func() bool {
		entries, _, err := agent.Client.Health().Service("users", "", true, nil)
		return err == nil && len(entries) == 1 && entries[0].Service.ID == "users-sidecar-1" && len(entries[0].Checks) >= 3
	})

	// SIGTERM: the service is gone from Consul before draining begins.
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	p.waitLog(t, "draining")
	svcs, err := agent.Client.Agent().Services()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := svcs["users-sidecar-1"]; ok {
		t.Error("the sidecar's service was still registered when draining began")
	}
	select {
	case err := <-p.exited:
		if err != nil {
			t.Fatalf("exit: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("meshgate did not exit")
	}
}

// TestGatewayFollowsConsul drives the binary through what users rely on:
// health changes, weights, catalog routes, and a Consul outage and restart,
// with traffic flowing the whole time.
func TestGatewayFollowsConsul(t *testing.T) {
	agent := consultest.Start(t)
	a, b := named("a", 0), named("b", 0)
	defer a.Close()
	defer b.Close()
	regInst := func(id string, s *httptest.Server, weight int, tags ...string) {
		t.Helper()
		h, p, _ := net.SplitHostPort(strings.TrimPrefix(s.URL, "http://"))
		port := 0
		fmt.Sscan(p, &port)
		name := "orders"
		if len(tags) > 0 {
			name = "catalog"
		}
		if err := agent.Client.Agent().ServiceRegister(&api.AgentServiceRegistration{
			ID: id, Name: name, Address: h, Port: port, Tags: tags,
			Weights: &api.AgentWeights{Passing: weight, Warning: 1},
			Check:   &api.AgentServiceCheck{CheckID: id + ":ttl", TTL: "10m", Status: api.HealthPassing},
		}); err != nil {
			t.Fatal(err)
		}
	}
	regInst("orders-a", a, 3)
	regInst("orders-b", b, 1)

	cfgPath := filepath.Join(t.TempDir(), "edge.yaml")
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf(`listeners: [{name: http, address: "127.0.0.1:0"}]
admin: {address: "127.0.0.1:0"}
services:
  orders: {load_balancer: {policy: weighted_round_robin}}
routes: [{match: {path_prefix: /orders}, service: orders}]
discovery:
  consul: {address: %q, wait: 30s, min_interval: 10ms, max_backoff: 1s, routes: {enabled: true}}
`, agent.Addr)), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startMeshgate(t, "run", "--config", cfgPath)
	base, admin := "http://"+p.traffic, "http://"+p.admin
	waitUntil(t, func() bool { return backendOf(t, base+"/orders") != "" })

	// Weights: 3:1 over 400 requests (smooth weighted round robin: exact).
	counts := map[string]int{}
	for i := 0; i < 400; i++ {
		counts[backendOf(t, base+"/orders")]++
	}
	if counts["a"] != 300 || counts["b"] != 100 {
		t.Errorf("weights 3:1 gave %v", counts)
	}

	// A check turning critical: b gets no traffic within 1s and no request
	// fails meanwhile.
	var failures, total int
	lastB := time.Time{}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			res, err := http.Get(base + "/orders")
			total++
			if err != nil || res.StatusCode != 200 {
				failures++
				if res != nil {
					res.Body.Close()
				}
				continue
			}
			if res.Header.Get("X-Backend") == "b" {
				lastB = time.Now()
			}
			res.Body.Close()
		}
	}()
	time.Sleep(200 * time.Millisecond)
	changed := time.Now()
	if err := agent.Client.Agent().UpdateTTL("orders-b:ttl", "failing", api.HealthCritical); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	close(stop)
	<-done
	if failures != 0 {
		t.Errorf("%d of %d requests failed while b went critical", failures, total)
	}
	if d := lastB.Sub(changed); d > time.Second {
		t.Errorf("b still got traffic %v after its check went critical", d)
	}

	// A catalog route appears with its tagged service, and goes with it.
	regInst("catalog-1", b, 1, "meshgate.route=/catalog")
	waitUntil(t, func() bool { return backendOf(t, base+"/catalog/items") == "b" })
	if err := agent.Client.Agent().ServiceDeregister("catalog-1"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() bool {
		res, err := http.Get(base + "/catalog/items")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusNotFound
	})

	// Consul goes away: traffic flows on the last snapshot, readiness holds,
	// and the admin view shows the failure and the growing staleness.
	agent.Stop()
	for i := 0; i < 50; i++ {
		if got := backendOf(t, base+"/orders"); got != "a" {
			t.Fatalf("request %d during the outage went to %q", i, got)
		}
	}
	type consulView struct {
		Discovery struct {
			Consul struct {
				Errors    int     `json:"errors_total"`
				LastError string  `json:"last_error"`
				Stale     float64 `json:"staleness_seconds"`
			} `json:"consul"`
		} `json:"discovery"`
	}
	read := func() consulView {
		var v consulView
		res, err := http.Get(admin + "/admin/instances")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		if err := json.NewDecoder(res.Body).Decode(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	waitUntil(t, func() bool { return read().Discovery.Consul.Errors > 0 })
	v1 := read()
	time.Sleep(1100 * time.Millisecond)
	v2 := read()
	if v2.Discovery.Consul.LastError == "" || v2.Discovery.Consul.Stale <= v1.Discovery.Consul.Stale {
		t.Errorf("outage not visible: before %+v after %+v", v1.Discovery.Consul, v2.Discovery.Consul)
	}
	if res, err := http.Get(admin + "/readyz"); err != nil || res.StatusCode != 200 {
		t.Fatalf("/readyz during the outage: %v %v", res, err)
	}
	res, err := http.Get(admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metricsText, _ := io.ReadAll(res.Body)
	res.Body.Close()
	for _, want := range []string{"meshgate_discovery_consul_errors_total", "meshgate_discovery_consul_staleness_seconds", `meshgate_discovery_instances{meshgate_health="passing",meshgate_service="orders"`,
		`http_server_request_duration_seconds_bucket{http_request_method="GET",http_response_status_code="200",http_route="/orders"`} {
		if !strings.Contains(string(metricsText), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// Consul comes back empty (a dev agent forgets everything): the watch
	// follows the new catalog.
	agent.Restart()
	regInst("orders-b2", b, 1)
	waitUntil(t, func() bool { return backendOf(t, base+"/orders") == "b" })
}
