package deployments

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/policies"
)

// TestExamplePolicies loads meshgate.policies.yaml with the example
// policies and drives each example through its route's chain: the
// JWT-protected orders API, the API key of the admin route and the
// per-client rate limit.
func TestExamplePolicies(t *testing.T) {
	cfg, err := config.Load("meshgate.policies.yaml")
	if err != nil {
		t.Fatal(err)
	}
	sources, err := policies.ReadDir(cfg.Policies.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(sources) != 3 {
		t.Fatalf("%d example policy files, want 3", len(sources))
	}
	mgr := policies.NewManager(policies.Env{})
	t.Cleanup(func() { mgr.Close() })
	var routes, services []string
	for _, r := range cfg.Routes {
		routes = append(routes, r.Name)
	}
	for name := range cfg.Services {
		services = append(services, name)
	}
	if err := mgr.Load(sources, false, func(s *policies.Set) error { return s.CheckRefs(routes, services, true) }); err != nil {
		t.Fatal(err)
	}
	set := mgr.Current()
	upstream := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(r.Header)
	})
	chain := func(route, service string) http.Handler {
		return set.Chain(policies.RouteInfo{Name: route, Service: service}, upstream)
	}
	do := func(h http.Handler, method, client string, header http.Header) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, "/orders", nil)
		r.RemoteAddr = client + ":40000"
		for k, v := range header {
			r.Header[k] = v
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	bearer := func(sub, role string, ttl time.Duration) http.Header {
		tok, err := SignDemoToken(sub, role, time.Now(), ttl)
		if err != nil {
			t.Fatal(err)
		}
		return http.Header{"Authorization": {"Bearer " + tok}}
	}

	orders := chain("orders", "orders")
	if w := do(orders, "GET", "127.0.0.1", nil); w.Code != 401 || !strings.HasPrefix(w.Header().Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("orders without a token: %d %q", w.Code, w.Header().Get("WWW-Authenticate"))
	}
	w := do(orders, "POST", "127.0.0.2", bearer("alice", "customer", time.Hour))
	if w.Code != 200 {
		t.Fatalf("orders with a customer token: %d %s", w.Code, w.Body)
	}
	var seen http.Header
	json.Unmarshal(w.Body.Bytes(), &seen)
	if seen.Get("X-User-Id") != "alice" || seen.Get("X-User-Role") != "customer" || seen.Get("Authorization") != "" {
		t.Errorf("orders upstream saw %v; want X-User-Id alice, X-User-Role customer and no token", seen)
	}
	if w := do(orders, "GET", "127.0.0.3", bearer("mallory", "guest", time.Hour)); w.Code != 403 {
		t.Errorf("orders with a guest token: %d, want 403", w.Code)
	}
	if w := do(orders, "DELETE", "127.0.0.3", bearer("alice", "customer", time.Hour)); w.Code != 403 {
		t.Errorf("DELETE on orders: %d, want 403", w.Code)
	}
	if w := do(orders, "GET", "127.0.0.4", bearer("alice", "customer", -time.Minute)); w.Code != 401 {
		t.Errorf("orders with an expired token: %d, want 401", w.Code)
	}

	admin := chain("admin", "orders")
	if w := do(admin, "GET", "127.0.0.5", nil); w.Code != 401 {
		t.Errorf("admin without a key: %d, want 401", w.Code)
	}
	w = do(admin, "GET", "127.0.0.5", http.Header{"X-Api-Key": {"demo-admin-key"}})
	if w.Code != 200 {
		t.Fatalf("admin with the demo key: %d %s", w.Code, w.Body)
	}
	seen = nil
	json.Unmarshal(w.Body.Bytes(), &seen)
	if seen.Get("X-Admin-Key-Name") != "ops-demo" || seen.Get("X-Api-Key") != "" {
		t.Errorf("admin upstream saw %v; want X-Admin-Key-Name ops-demo and no key", seen)
	}
	if w := do(admin, "GET", "192.0.2.7", http.Header{"X-Api-Key": {"demo-admin-key"}}); w.Code != 403 {
		t.Errorf("admin from another machine: %d, want 403", w.Code)
	}

	// 40 requests of burst from one client, then 429; another client is
	// unaffected.
	products := chain("products", "products")
	for i := range 40 {
		if w := do(products, "GET", "127.0.0.9", nil); w.Code != 200 {
			t.Fatalf("request %d within the burst: %d", i+1, w.Code)
		}
	}
	w = do(products, "GET", "127.0.0.9", nil)
	if w.Code != 429 || w.Header().Get("Retry-After") == "" || !strings.Contains(w.Header().Get("RateLimit-Policy"), `"per-client";q=20;w=1`) {
		t.Errorf("request 41: %d, Retry-After %q, RateLimit-Policy %q", w.Code, w.Header().Get("Retry-After"), w.Header().Get("RateLimit-Policy"))
	}
	if w := do(products, "GET", "127.0.0.10", nil); w.Code != 200 {
		t.Errorf("another client: %d, want 200", w.Code)
	}
}
