package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/discovery"
	"github.com/meshgate/meshgate/internal/testproc"
)

// harness is a gateway behind a real listener, with its discovery store.
type harness struct {
	gw    *Gateway
	store *discovery.Store
	front *httptest.Server
	logs  *testproc.Output
}

// hostPort returns the address and port of a test server.
func hostPort(t testing.TB, rawURL string) (string, int) {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	h, p, _ := net.SplitHostPort(u.Host)
	port, _ := strconv.Atoi(p)
	return h, port
}

// parseConfig parses YAML test configuration, failing the test on error.
func parseConfig(t testing.TB, yamlText string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(yamlText))
	if err != nil {
		t.Fatalf("parsing test config: %v\n%s", err, yamlText)
	}
	return cfg
}

// instancesYAML renders test servers as a YAML instance list.
func instancesYAML(t testing.TB, servers ...*httptest.Server) string {
	var b strings.Builder
	for i, s := range servers {
		h, p := hostPort(t, s.URL)
		fmt.Fprintf(&b, "      - {id: i%d, address: %q, port: %d}\n", i, h, p)
	}
	return b.String()
}

// newHarness starts a gateway for cfg, publishes its static catalog and
// serves it on an httptest listener.
func newHarness(t testing.TB, cfg *config.Config) *harness {
	t.Helper()
	logs := &testproc.Output{}
	store := discovery.NewStore()
	store.Publish(discovery.StaticSnapshot(cfg.Services, time.Now()))
	gw, err := New(cfg, Options{Store: store, Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(gw)
	t.Cleanup(func() { front.Close(); gw.Close() })
	return &harness{gw: gw, store: store, front: front, logs: logs}
}

// named returns a backend that answers with its name in X-Backend and the
// path it received in the body.
func named(name string) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend", name)
		fmt.Fprint(w, r.URL.RequestURI())
	}))
}

func get(t testing.TB, c *http.Client, req *http.Request) (*http.Response, string) {
	t.Helper()
	if c == nil {
		c = http.DefaultClient
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, string(b)
}

func TestRouting(t *testing.T) {
	t.Parallel()
	backends := map[string]*httptest.Server{}
	for _, n := range []string{"exact", "api", "apiv2", "host", "wild", "post", "hdr", "root", "strip", "rewrite"} {
		backends[n] = named(n)
		t.Cleanup(backends[n].Close)
	}
	var svc strings.Builder
	svc.WriteString("services:\n")
	for n, s := range backends {
		fmt.Fprintf(&svc, "  %s:\n    instances:\n%s", n, instancesYAML(t, s))
	}
	cfg := parseConfig(t, `
listeners: [{address: "127.0.0.1:0"}]
`+svc.String()+`
routes:
  - {name: root, match: {path_prefix: /}, service: root}
  - {name: api, match: {path_prefix: /api}, service: api}
  - {name: apiv2, match: {path_prefix: /api/v2/}, service: apiv2}
  - {name: exact, match: {path: /api/v2/status}, service: exact}
  - {name: host, match: {path_prefix: /api, host: shop.example.com}, service: host}
  - {name: wild, match: {path_prefix: /api, host: "*.internal.test"}, service: wild}
  - {name: post, match: {path_prefix: /orders, methods: [POST]}, service: post}
  - {name: hdr, match: {path_prefix: /orders, headers: {X-Canary: "yes"}}, service: hdr}
  - {name: strip, match: {path_prefix: /strip}, strip_prefix: true, service: strip}
  - {name: rewrite, match: {path_prefix: /old/}, rewrite_prefix: /new/, service: rewrite}
`)
	h := newHarness(t, cfg)
	tests := []struct {
		name, method, path, host string
		header                   map[string]string
		want, wantPath           string
	}{
		{name: "fallback to root prefix", path: "/anything", want: "root"},
		{name: "prefix on segment boundary", path: "/apix", want: "root"},
		{name: "prefix itself", path: "/api", want: "api"},
		{name: "prefix subpath", path: "/api/users", want: "api"},
		{name: "longer prefix wins", path: "/api/v2/items", want: "apiv2"},
		{name: "trailing slash prefix does not match bare", path: "/api/v2", want: "api"},
		{name: "exact beats prefix", path: "/api/v2/status", want: "exact"},
		{name: "exact is exact", path: "/api/v2/status/x", want: "apiv2"},
		{name: "host route beats hostless", path: "/api/x", host: "shop.example.com", want: "host"},
		{name: "host match ignores case and port", path: "/api/x", host: "SHOP.example.com:8080", want: "host"},
		{name: "wildcard host", path: "/api/x", host: "a.b.internal.test", want: "wild"},
		{name: "wildcard needs a subdomain", path: "/api/x", host: "internal.test", want: "api"},
		{name: "method match", method: "POST", path: "/orders", want: "post"},
		{name: "header match", path: "/orders/1", header: map[string]string{"X-Canary": "yes"}, want: "hdr"},
		{name: "header mismatch falls through", path: "/orders/1", header: map[string]string{"X-Canary": "no"}, want: "root"},
		{name: "strip prefix", path: "/strip/a/b?q=1", want: "strip", wantPath: "/a/b?q=1"},
		{name: "strip to root", path: "/strip", want: "strip", wantPath: "/"},
		{name: "rewrite prefix", path: "/old/x", want: "rewrite", wantPath: "/new/x"},
		{name: "unstripped path kept", path: "/api/users?id=7", want: "api", wantPath: "/api/users?id=7"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			method := tc.method
			if method == "" {
				method = http.MethodGet
			}
			req, _ := http.NewRequest(method, h.front.URL+tc.path, nil)
			if tc.host != "" {
				req.Host = tc.host
			}
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			res, body := get(t, nil, req)
			if got := res.Header.Get("X-Backend"); got != tc.want {
				t.Fatalf("routed to %q, want %q (status %d, body %s)", got, tc.want, res.StatusCode, body)
			}
			if tc.wantPath != "" && body != tc.wantPath {
				t.Errorf("upstream saw %q, want %q", body, tc.wantPath)
			}
		})
	}
}

func TestErrorMapping(t *testing.T) {
	t.Parallel()
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(5 * time.Second):
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(slow.Close)
	// A port that refuses connections: bind, note it, close.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadPort := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	ok := named("ok")
	t.Cleanup(ok.Close)

	cfg := parseConfig(t, fmt.Sprintf(`
listeners: [{address: "127.0.0.1:0"}]
server: {max_body_bytes: 1KiB}
services:
  slow:
    timeouts: {response_header: 200ms}
    instances:
%s  dead:
    instances: [{address: 127.0.0.1, port: %d}]
  empty: {}
  sick:
    instances: [{address: 127.0.0.1, port: %d, health: critical}]
  ok:
    instances:
%sroutes:
  - {match: {path_prefix: /slow}, service: slow}
  - {match: {path_prefix: /dead}, service: dead}
  - {match: {path_prefix: /empty}, service: empty}
  - {match: {path_prefix: /sick}, service: sick}
  - {match: {path_prefix: /ok}, service: ok}
`, instancesYAML(t, slow), deadPort, deadPort, instancesYAML(t, ok)))
	h := newHarness(t, cfg)

	tests := []struct {
		name, method, path string
		body               io.Reader
		want               int
	}{
		{name: "no route", path: "/nothing", want: 404},
		{name: "no instance", path: "/empty", want: 503},
		{name: "only critical instances", path: "/sick", want: 503},
		{name: "connect failure", path: "/dead", want: 502},
		{name: "upstream timeout", path: "/slow", want: 504},
		{name: "body too large by length", method: "POST", path: "/ok", body: strings.NewReader(strings.Repeat("x", 2048)), want: 413},
		{name: "chunked body too large", method: "POST", path: "/ok", body: io.MultiReader(strings.NewReader(strings.Repeat("x", 2048))), want: 413},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			method := tc.method
			if method == "" {
				method = http.MethodGet
			}
			req, _ := http.NewRequest(method, h.front.URL+tc.path, tc.body)
			res, body := get(t, nil, req)
			if res.StatusCode != tc.want {
				t.Fatalf("status %d, want %d; body %s", res.StatusCode, tc.want, body)
			}
			if ct := res.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q, want application/json", ct)
			}
			var e struct {
				Error  string `json:"error"`
				Status int    `json:"status"`
			}
			if err := json.Unmarshal([]byte(body), &e); err != nil {
				t.Fatalf("body is not JSON: %v: %q", err, body)
			}
			if e.Status != tc.want || e.Error == "" {
				t.Errorf("body %+v, want status %d and a message", e, tc.want)
			}
		})
	}
}

func TestHeaderLimit431(t *testing.T) {
	t.Parallel()
	ok := named("ok")
	defer ok.Close()
	cfg := parseConfig(t, `
listeners: [{address: "127.0.0.1:0"}]
admin: {address: "127.0.0.1:0"}
server: {max_header_bytes: 4KiB}
services: {ok: {instances: [`+strings.TrimSpace(strings.TrimPrefix(instancesYAML(t, ok), "      - "))+`]}}
routes: [{match: {path_prefix: /}, service: ok}]
`)
	store := discovery.NewStore()
	store.Publish(discovery.StaticSnapshot(cfg.Services, time.Now()))
	gw, err := New(cfg, Options{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := Listen(cfg, gw, gw.AdminHandler(nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	srv.Serve()
	defer srv.Shutdown(context.Background(), gw)
	base := "http://" + srv.Addrs()[cfg.Listeners[0].Name]
	req, _ := http.NewRequest("GET", base+"/", nil)
	req.Header.Set("X-Big", strings.Repeat("a", 16<<10))
	res, _ := get(t, nil, req)
	if res.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("status %d, want 431", res.StatusCode)
	}
	req, _ = http.NewRequest("GET", base+"/", nil)
	req.Header.Set("X-Small", strings.Repeat("a", 1<<10))
	if res, _ := get(t, nil, req); res.StatusCode != 200 {
		t.Fatalf("status %d for a small header, want 200", res.StatusCode)
	}
}

func discoveryStore() *discovery.Store { return discovery.NewStore() }

func staticSnap(cfg *config.Config) *discovery.Snapshot {
	return discovery.StaticSnapshot(cfg.Services, time.Now())
}

func newStoreFor(cfg *config.Config) *discovery.Store {
	s := discovery.NewStore()
	s.Publish(staticSnap(cfg))
	return s
}

func routeFor(prefix string) config.Route {
	return config.Route{Name: prefix, Match: config.Match{PathPrefix: prefix}, Service: "x"}
}

func TestStripPrefixOfEscapedPaths(t *testing.T) {
	t.Parallel()
	back := named("svc")
	t.Cleanup(back.Close) // the subtests run after this function returns
	h := newHarness(t, parseConfig(t, `
listeners: [{address: "127.0.0.1:0"}]
services:
  svc:
    instances:
`+instancesYAML(t, back)+`
routes:
  - {name: api, match: {path_prefix: /api}, service: svc, strip_prefix: true}
  - {name: cafe, match: {path_prefix: "/café"}, service: svc, strip_prefix: true}
  - {name: old, match: {path_prefix: /old/}, service: svc, rewrite_prefix: /new/}
`))
	tests := []struct{ name, path, want string }{
		{name: "plain", path: "/api/x", want: "/x"},
		{name: "prefix percent-encoded by the client", path: "/%61pi/x", want: "/x"},
		{name: "non-ASCII prefix", path: "/caf%C3%A9/x", want: "/x"},
		{name: "escaping after the prefix kept", path: "/api/a%3Fb%20c", want: "/a%3Fb%20c"},
		{name: "rewrite keeps escaping", path: "/old/a%3Fb?q=1", want: "/new/a%3Fb?q=1"},
		{name: "rewrite of an encoded prefix", path: "/%6Fld/x", want: "/new/x"},
	}
	for _, tc := range tests {
		for _, via := range viaPaths {
			t.Run(tc.name+" via "+via.name, func(t *testing.T) {
				t.Parallel()
				req, _ := http.NewRequest(via.method, h.front.URL+tc.path, via.body())
				res, body := get(t, nil, req)
				if res.StatusCode != 200 || body != tc.want {
					t.Errorf("%s: upstream saw %q (status %d), want %q", tc.path, body, res.StatusCode, tc.want)
				}
			})
		}
	}
}

// timeoutError is a net.Error that timed out, as a read deadline reports.
type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

func TestClassify(t *testing.T) {
	t.Parallel()
	// A real dial that times out: its error is a *net.OpError that also
	// matches context.DeadlineExceeded.
	_, dialTimeout := (&net.Dialer{Timeout: time.Nanosecond}).Dial("tcp", "192.0.2.1:80")
	if !errors.Is(dialTimeout, context.DeadlineExceeded) {
		t.Fatalf("the dial did not time out: %v", dialTimeout)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	_, refused := net.Dial("tcp", ln.Addr().String())
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name string
		ctx  context.Context
		err  error
		want int
	}{
		{name: "dial timeout", err: dialTimeout, want: http.StatusBadGateway},
		{name: "connection refused", err: refused, want: http.StatusBadGateway},
		{name: "read timeout", err: &net.OpError{Op: "read", Net: "tcp", Err: timeoutError{}}, want: http.StatusGatewayTimeout},
		{name: "deadline exceeded", err: fmt.Errorf("waiting: %w", context.DeadlineExceeded), want: http.StatusGatewayTimeout},
		{name: "body too large", err: &http.MaxBytesError{Limit: 1}, want: http.StatusRequestEntityTooLarge},
		{name: "client gone", ctx: gone, err: errors.New("any"), want: StatusClientClosedRequest},
		{name: "anything else", err: errMalformedResponse, want: http.StatusBadGateway},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.err == nil {
				t.Fatal("no error to classify")
			}
			ctx := tc.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			if got, _ := classify(ctx, tc.err); got != tc.want {
				t.Errorf("classify(%v) = %d, want %d", tc.err, got, tc.want)
			}
		})
	}
}

func TestReloadIsNeverRevertedByDiscovery(t *testing.T) {
	t.Parallel()
	back := named("a")
	defer back.Close()
	// Many routes make validating and compiling a configuration slow, which
	// widens the window a rebuild from a stale configuration would need.
	var routes strings.Builder
	for i := 0; i < 2000; i++ {
		fmt.Fprintf(&routes, "  - {match: {path_prefix: /r%d}, service: svc}\n", i)
	}
	base := `
listeners: [{address: "127.0.0.1:0"}]
services:
  svc:
    instances:
` + instancesYAML(t, back) + `
routes:
` + routes.String()
	h := newHarness(t, parseConfig(t, base))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go h.gw.Watch(ctx)
	snap := staticSnap(parseConfig(t, base))
	// A discovery update and a Reload wait for the rebuild lock, the update
	// first. The reloaded configuration must stay in force.
	for i := 0; i < 5; i++ {
		next := parseConfig(t, base)
		h.gw.mu.Lock()
		h.store.Publish(snap)
		time.Sleep(5 * time.Millisecond) // the update waits
		done := make(chan error, 1)
		go func() { done <- h.gw.Reload(next) }()
		time.Sleep(50 * time.Millisecond) // and so does Reload
		h.gw.mu.Unlock()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond) // the update's rebuild is done
		h.gw.mu.Lock()
		got := h.gw.cfg
		h.gw.mu.Unlock()
		if got != next || h.gw.Config() != next {
			t.Fatalf("round %d: the discovery update put back the configuration Reload replaced", i)
		}
	}
}

func TestInstanceState(t *testing.T) {
	t.Parallel()
	yamlFor := func(t *testing.T, s *httptest.Server, health string) string {
		hh, p := hostPort(t, s.URL)
		return fmt.Sprintf(`
listeners: [{address: "127.0.0.1:0"}]
services:
  svc:
    instances: [{id: web-1, address: %q, port: %d, health: %s}]
routes: [{match: {path_prefix: /}, service: svc}]
`, hh, p, health)
	}
	// reload swaps in cfg and its static catalog, as a config file change
	// with a static catalog does.
	reload := func(t *testing.T, h *harness, yaml string) {
		cfg := parseConfig(t, yaml)
		h.store.Publish(staticSnap(cfg))
		if err := h.gw.Reload(cfg); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("address change drops connections to the old address", func(t *testing.T) {
		t.Parallel()
		a, b := named("a"), named("b")
		defer a.Close()
		defer b.Close()
		h := newHarness(t, parseConfig(t, yamlFor(t, a, "passing")))
		do(t, h, "GET", "/", nil) // pools a connection to a
		old := endpointOf(h, "svc")
		reload(t, h, yamlFor(t, b, "passing"))
		for i := 0; i < 3; i++ {
			if res, _ := do(t, h, "GET", "/", nil); res.Header.Get("X-Backend") != "b" {
				t.Errorf("request %d after web-1 moved to b went to %q", i, res.Header.Get("X-Backend"))
			}
		}
		old.pool.mu.Lock()
		closed := old.pool.closed && len(old.pool.idle) == 0
		old.pool.mu.Unlock()
		if !closed {
			t.Errorf("the pool of the old address is still open")
		}
	})
	t.Run("health flap keeps counters", func(t *testing.T) {
		t.Parallel()
		a := named("a")
		defer a.Close()
		h := newHarness(t, parseConfig(t, yamlFor(t, a, "passing")))
		do(t, h, "GET", "/", nil)
		before := endpointOf(h, "svc")
		reload(t, h, yamlFor(t, a, "critical"))
		if res, _ := do(t, h, "GET", "/", nil); res.StatusCode != 503 {
			t.Fatalf("a critical instance got traffic: %d", res.StatusCode)
		}
		reload(t, h, yamlFor(t, a, "passing"))
		do(t, h, "GET", "/", nil)
		if after := endpointOf(h, "svc"); after != before || after.requests.Load() != 2 {
			t.Errorf("after a health flap: same state %v, requests %d, want the state kept with 2 requests",
				after == before, after.requests.Load())
		}
	})
	t.Run("connections returned after Close are closed", func(t *testing.T) {
		t.Parallel()
		entered, release := make(chan struct{}), make(chan struct{})
		a := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			close(entered)
			<-release
		}))
		defer a.Close()
		h := newHarness(t, parseConfig(t, yamlFor(t, a, "passing")))
		done := make(chan struct{})
		go func() {
			defer close(done)
			res, err := http.Get(h.front.URL + "/")
			if err == nil {
				res.Body.Close()
			}
		}()
		<-entered
		st := endpointOf(h, "svc")
		h.gw.Close()
		close(release)
		<-done
		waitFor(t, func() bool { return st.inFlight.Load() == 0 })
		if n := idleConns(st); n != 0 {
			t.Errorf("%d connections pooled after Close", n)
		}
	})
}
