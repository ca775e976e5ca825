package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshgate/meshgate/policies"
	"github.com/meshgate/meshgate/telemetry"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// answer is what a jsonBackend answers on one path.
type answer struct {
	status int
	ctype  string // default application/json
	body   string
	delay  time.Duration
}

// jsonBackend is a backend with canned answers by path. It records the
// header of each request and notices requests cancelled while delayed.
type jsonBackend struct {
	srv       *httptest.Server
	mu        sync.Mutex
	answers   map[string]answer
	headers   map[string]http.Header // by path, the last request's
	hits      atomic.Int64
	cancelled chan string // paths whose request was cancelled mid-delay
}

func newJSONBackend(t testing.TB, answers map[string]answer) *jsonBackend {
	b := &jsonBackend{answers: answers, headers: map[string]http.Header{}, cancelled: make(chan string, 16)}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		b.mu.Lock()
		a, ok := b.answers[r.URL.RequestURI()]
		b.headers[r.URL.Path] = r.Header.Clone()
		b.mu.Unlock()
		if !ok {
			http.Error(w, `{"error":"not found"}`, http.StatusNotFound)
			return
		}
		if a.delay > 0 {
			select {
			case <-time.After(a.delay):
			case <-r.Context().Done():
				b.cancelled <- r.URL.Path
				return
			}
		}
		ct := a.ctype
		if ct == "" {
			ct = "application/json"
		}
		w.Header().Set("Content-Type", ct)
		if a.status != 0 {
			w.WriteHeader(a.status)
		}
		io.WriteString(w, a.body)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *jsonBackend) header(path string) http.Header {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.headers[path]
}

// shopAnswers are the orders, users and products of the example.
func shopAnswers() map[string]answer {
	return map[string]answer{
		"/orders/7":                 {body: `{"id": 7, "user_id": 9007199254740993, "product_ids": [1, 2]}`},
		"/users/9007199254740993":   {body: `{"id": 9007199254740993, "name": "Ann"}`},
		"/products/1":               {body: `{"id": 1, "name": "pen"}`},
		"/products/2":               {body: `{"id": 2, "name": "ink"}`},
		"/reviews/9007199254740993": {body: `["great"]`},
	}
}

// aggConfig is a config with services orders, users and products (all on
// back), routes to them and the aggregate route /views/orders with parts.
func aggConfig(t testing.TB, back *jsonBackend, parts string, extra string) string {
	return `
listeners: [{address: "127.0.0.1:0"}]
services:
  orders:
    instances:
` + instancesYAML(t, back.srv) + `
  users:
    instances:
` + instancesYAML(t, back.srv) + `
  products:
    instances:
` + instancesYAML(t, back.srv) + `
routes:
  - {name: orders, match: {path_prefix: /orders}, service: orders}
  - {name: users, match: {path_prefix: /users}, service: users}
  - {name: products, match: {path_prefix: /products}, service: products}
  - {name: reviews, match: {path_prefix: /reviews}, service: users}
  - name: order-view
    match: {path_prefix: /views/orders}
    aggregate:
      timeout: 2s
      parts:
` + parts + extra
}

// exampleParts are the parts of the README's example.
const exampleParts = `
        - name: order
          path: '"/orders/" + .request.segments[2]'
        - name: user
          needs: [order]
          path: '"/users/\(.parts.order.user_id)"'
          optional: true
        - name: products
          needs: [order]
          path: '[.parts.order.product_ids[] | "/products/\(.)"]'
          optional: true
`

// getJSON sends GET path with header and decodes a JSON object answer.
func getJSON(t testing.TB, base, path string, header map[string]string) (*http.Response, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+path, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, body := get(t, nil, req)
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("GET %s: %d, body %q is not a JSON object: %v", path, res.StatusCode, body, err)
	}
	return res, m
}

func TestAggregateExample(t *testing.T) {
	t.Parallel()
	back := newJSONBackend(t, shopAnswers())
	h := newHarness(t, parseConfig(t, aggConfig(t, back, exampleParts, "")))
	req, _ := http.NewRequest(http.MethodGet, h.front.URL+"/views/orders/7", nil)
	req.Header.Set("Authorization", "Bearer abc")
	req.Header.Set("Accept-Encoding", "gzip")
	req.Header.Set("If-None-Match", `"v1"`)
	res, body := get(t, nil, req)
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, Content-Type %q, body %s", res.StatusCode, res.Header.Get("Content-Type"), body)
	}
	// The numbers are the upstreams' own text: the big ID is exact, in the
	// answer and in the user's path taken from the order.
	want := `{"order":{"id": 7, "user_id": 9007199254740993, "product_ids": [1, 2]},` +
		`"user":{"id": 9007199254740993, "name": "Ann"},` +
		`"products":[{"id": 1, "name": "pen"},{"id": 2, "name": "ink"}]}` + "\n"
	if body != want {
		t.Errorf("body\n%s\nwant\n%s", body, want)
	}
	if p := res.Header.Get(HeaderPartial); p != "" {
		t.Errorf("%s = %q on a complete answer", HeaderPartial, p)
	}
	// Sub-requests carry the client's header, less what would spoil a
	// JSON answer, with X-Forwarded-For as usual.
	uh := back.header("/users/9007199254740993")
	if uh == nil {
		t.Fatal("the user part never reached the backend")
	}
	if got := uh.Get("Authorization"); got != "Bearer abc" {
		t.Errorf("Authorization upstream = %q, want the client's", got)
	}
	if got := uh.Get("Accept-Encoding"); got == "gzip" {
		t.Errorf("Accept-Encoding upstream = %q; a compressed answer is not JSON", got)
	}
	if got := uh.Get("If-None-Match"); got != "" {
		t.Errorf("If-None-Match upstream = %q; a 304 would fail the part", got)
	}
	if got := uh.Get("X-Forwarded-For"); got != "127.0.0.1" {
		t.Errorf("X-Forwarded-For upstream = %q, want 127.0.0.1", got)
	}

	// HEAD: the same headers, no body.
	hreq, _ := http.NewRequest(http.MethodHead, h.front.URL+"/views/orders/7", nil)
	hres, hbody := get(t, nil, hreq)
	if hres.StatusCode != 200 || hbody != "" || hres.Header.Get("Content-Length") != fmt.Sprint(len(want)) {
		t.Errorf("HEAD: %d, Content-Length %q, body %q", hres.StatusCode, hres.Header.Get("Content-Length"), hbody)
	}
}

func TestAggregatePartsRunInParallel(t *testing.T) {
	t.Parallel()
	back := newJSONBackend(t, map[string]answer{
		"/orders/1": {body: `{"n": 1}`, delay: 200 * time.Millisecond},
		"/users/1":  {body: `{"n": 2}`, delay: 200 * time.Millisecond},
	})
	h := newHarness(t, parseConfig(t, aggConfig(t, back, `
        - {name: a, path: '"/orders/1"'}
        - {name: b, path: '"/users/1"'}
`, "")))
	start := time.Now()
	res, m := getJSON(t, h.front.URL, "/views/orders", nil)
	took := time.Since(start)
	if res.StatusCode != 200 || m["a"] == nil || m["b"] == nil {
		t.Fatalf("%d %v", res.StatusCode, m)
	}
	if took >= 350*time.Millisecond {
		t.Errorf("two 200ms parts took %s; they did not run in parallel", took)
	}
}

func TestAggregateOptionalPartFails(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		user answer
	}{
		{"500", answer{status: 500, body: `{"error": "boom"}`}},
		{"timeout", answer{body: `{}`, delay: time.Second}},
		{"invalid JSON", answer{body: `{"id": `}},
		{"not JSON", answer{ctype: "text/html", body: `<p>hi</p>`}},
		{"too large", answer{body: `"` + strings.Repeat("x", maxPartBody) + `"`}},
		{"404", answer{}}, // no answer on the path
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			answers := shopAnswers()
			delete(answers, "/users/9007199254740993")
			if tc.user != (answer{}) {
				answers["/users/9007199254740993"] = tc.user
			}
			back := newJSONBackend(t, answers)
			// reviews needs user: skipped when user fails.
			parts := exampleParts + `
        - name: reviews
          needs: [user]
          path: '"/reviews/\(.parts.user.id)"'
          optional: true
`
			parts = strings.Replace(parts, "optional: true\n        - name: products", "optional: true\n          timeout: 300ms\n        - name: products", 1)
			h := newHarness(t, parseConfig(t, aggConfig(t, back, parts, "")))
			res, m := getJSON(t, h.front.URL, "/views/orders/7", nil)
			if res.StatusCode != 200 {
				t.Fatalf("status %d, want 200: %v", res.StatusCode, m)
			}
			if v, ok := m["user"]; !ok || v != nil {
				t.Errorf("user = %v (present %v), want null", v, ok)
			}
			if v, ok := m["reviews"]; !ok || v != nil {
				t.Errorf("reviews = %v (present %v), want null: its need failed", v, ok)
			}
			if m["order"] == nil || m["products"] == nil {
				t.Errorf("order or products missing: %v", m)
			}
			if got, want := fmt.Sprint(m["_partial"]), "[reviews user]"; got != want {
				t.Errorf("_partial = %s, want %s", got, want)
			}
			if got := res.Header.Get(HeaderPartial); got != "reviews, user" {
				t.Errorf("%s = %q, want %q", HeaderPartial, got, "reviews, user")
			}
		})
	}
}

func TestAggregateRequiredPartFails(t *testing.T) {
	t.Parallel()
	answers := shopAnswers()
	answers["/users/slow"] = answer{body: `{}`, delay: 5 * time.Second}
	answers["/orders/8"] = answer{body: `{}`, delay: time.Second}
	back := newJSONBackend(t, answers)
	h := newHarness(t, parseConfig(t, aggConfig(t, back, `
        - name: order
          path: '"/orders/" + .request.segments[2]'
          timeout: 200ms
        - {name: slow, path: '"/users/slow"'}
        - {name: user, needs: [order], path: '"/users/\(.parts.order.user_id)"'}
`, "")))
	tests := []struct {
		path, want string
		status     int
	}{
		{"/views/orders/99", `required part \"order\" failed: GET /orders/99 answered 404`, 502},
		// Out of time is a gateway timeout, as for any upstream.
		{"/views/orders/8", `required part \"order\" failed: timed out after 200ms`, 504},
	}
	for _, tc := range tests {
		start := time.Now()
		res, m := getJSON(t, h.front.URL, tc.path, nil)
		if res.StatusCode != tc.status || m["status"] != float64(tc.status) || res.Header.Get("Content-Type") != "application/json" {
			t.Errorf("GET %s: %d %v, want a %d JSON error", tc.path, res.StatusCode, m, tc.status)
		}
		if got, _ := json.Marshal(m["error"]); !strings.Contains(string(got), tc.want) {
			t.Errorf("GET %s: error %s, want %s", tc.path, got, tc.want)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("GET %s took %s: the slow part was not cancelled", tc.path, took)
		}
		// The slow part, still running, was cancelled: its upstream saw
		// the request end.
		select {
		case p := <-back.cancelled:
			if p != "/users/slow" && p != "/orders/8" {
				t.Errorf("cancelled %s", p)
			}
		case <-time.After(2 * time.Second):
			t.Errorf("GET %s: the running part's upstream request was never cancelled", tc.path)
		}
	}
}

func TestAggregateCallRules(t *testing.T) {
	t.Parallel()
	back := newJSONBackend(t, shopAnswers())
	h := newHarness(t, parseConfig(t, aggConfig(t, back, `
        - {name: order, path: '"/orders/7"'}
`, `
  - name: nested
    match: {path_prefix: /views/nested}
    aggregate:
      parts:
        - {name: inner, path: '"/views/orders/7"'}
  - name: nowhere
    match: {path_prefix: /views/nowhere}
    aggregate:
      parts:
        - {name: x, path: '"/nothing/here"'}
  - name: number
    match: {path_prefix: /views/number}
    aggregate:
      parts:
        - {name: x, path: '.request.segments | length'}
  - name: relative
    match: {path_prefix: /views/relative}
    aggregate:
      parts:
        - {name: x, path: '"orders/7"'}
  - name: two
    match: {path_prefix: /views/two}
    aggregate:
      parts:
        - {name: x, path: '"/orders/7", "/orders/7"'}
  - name: endless
    match: {path_prefix: /views/endless}
    aggregate:
      parts:
        - {name: x, path: 'last(range(1e12)) | "/orders/7"'}
  - name: error
    match: {path_prefix: /views/error}
    aggregate:
      parts:
        - {name: x, path: 'error("no order")'}
`)))
	tests := []struct{ path, want string }{
		{"/views/nested", `required part "inner" failed: GET /views/orders/7: aggregate routes cannot call aggregate routes (route "order-view")`},
		{"/views/nowhere", `required part "x" failed: GET /nothing/here answered 404: no route matches`},
		{"/views/number", `required part "x" failed: path expression gave a number, want a string or a list of strings`},
		{"/views/relative", `required part "x" failed: path expression gave "orders/7", want a path starting with /`},
		{"/views/two", `required part "x" failed: path expression gave more than one value, want exactly one`},
		{"/views/endless", `required part "x" failed: path expression did not finish within 250ms`},
		{"/views/error", `required part "x" failed: path expression failed: error: no order`},
	}
	for _, tc := range tests {
		res, m := getJSON(t, h.front.URL, tc.path, nil)
		if res.StatusCode != 502 || m["error"] != tc.want {
			t.Errorf("GET %s: %d %q, want 502 %q", tc.path, res.StatusCode, m["error"], tc.want)
		}
	}
	// Only GET and HEAD.
	req, _ := http.NewRequest(http.MethodPost, h.front.URL+"/views/orders/7", strings.NewReader("{}"))
	res, body := get(t, nil, req)
	if res.StatusCode != 405 || res.Header.Get("Allow") != "GET, HEAD" || !strings.Contains(body, `"status":405`) {
		t.Errorf("POST: %d, Allow %q, %s", res.StatusCode, res.Header.Get("Allow"), body)
	}
	// Every call failed before reaching an upstream.
	if n := back.hits.Load(); n != 0 {
		t.Errorf("backend hits = %d, want 0", n)
	}
}

func TestAggregateThroughPolicyChain(t *testing.T) {
	t.Parallel()
	back := newJSONBackend(t, shopAnswers())
	h := newHarness(t, parseConfig(t, aggConfig(t, back, exampleParts, "")))
	mgr := policies.NewManager(policies.Env{ClientIP: h.gw.ClientIP})
	t.Cleanup(func() { mgr.Close() })
	// The key "test" opens the orders route.
	err := mgr.Load([]policies.Source{{Name: "p.yaml", Data: []byte(`policies:
  - name: orders-key
    applies_to: {routes: [orders]}
    authn:
      api_keys:
        keys: [{name: view, sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08}]
`)}}, false, h.gw.SetPolicies)
	if err != nil {
		t.Fatal(err)
	}
	res, m := getJSON(t, h.front.URL, "/views/orders/7", map[string]string{"X-API-Key": "test"})
	if res.StatusCode != 200 || m["order"] == nil || m["user"] == nil {
		t.Errorf("with the key: %d %v", res.StatusCode, m)
	}
	res, m = getJSON(t, h.front.URL, "/views/orders/7", nil)
	if want := `required part "order" failed: GET /orders/7 answered 401`; res.StatusCode != 502 || m["error"] != want {
		t.Errorf("without the key: %d %q, want 502 %q", res.StatusCode, m["error"], want)
	}
}

func TestAggregatePolicyOnAggregateRoute(t *testing.T) {
	t.Parallel()
	back := newJSONBackend(t, shopAnswers())
	h := newHarness(t, parseConfig(t, aggConfig(t, back, exampleParts, "")))
	mgr := policies.NewManager(policies.Env{ClientIP: h.gw.ClientIP})
	t.Cleanup(func() { mgr.Close() })
	err := mgr.Load([]policies.Source{{Name: "p.yaml", Data: []byte(`policies:
  - name: lock
    applies_to: {routes: [order-view]}
    authz: {default: deny, rules: []}
`)}}, false, h.gw.SetPolicies)
	if err != nil {
		t.Fatal(err)
	}
	if res, m := getJSON(t, h.front.URL, "/views/orders/7", nil); res.StatusCode != 403 {
		t.Errorf("%d %v, want the aggregate route's own policy to answer 403", res.StatusCode, m)
	}
	if n := back.hits.Load(); n != 0 {
		t.Errorf("%d upstream calls made for a denied request", n)
	}
}

func TestAggregateRetriesAndBreakers(t *testing.T) {
	t.Parallel()
	// Two instances share one count: the first try fails with 503, the
	// retry (on the other instance) succeeds.
	var tries atomic.Int64
	flaky := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tries.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"ok": true}`)
	})
	f1, f2 := httptest.NewServer(flaky), httptest.NewServer(flaky)
	t.Cleanup(f1.Close)
	t.Cleanup(f2.Close)
	var brokenHits atomic.Int64
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		brokenHits.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(broken.Close)
	h := newHarness(t, parseConfig(t, `
listeners: [{address: "127.0.0.1:0"}]
services:
  flaky:
    instances:
`+instancesYAML(t, f1, f2)+`
  broken:
    retry: {attempts: 1}
    circuit_breaker: {consecutive_failures: 1, open_time: 1m}
    instances:
`+instancesYAML(t, broken)+`
routes:
  - {name: flaky, match: {path_prefix: /flaky}, service: flaky}
  - {name: broken, match: {path_prefix: /broken}, service: broken}
  - name: view
    match: {path_prefix: /views/flaky}
    aggregate:
      parts:
        - {name: f, path: '"/flaky"'}
  - name: view2
    match: {path_prefix: /views/broken}
    aggregate:
      parts:
        - {name: b, path: '"/broken"'}
`))
	res, m := getJSON(t, h.front.URL, "/views/flaky", nil)
	if res.StatusCode != 200 || fmt.Sprint(m["f"]) != "map[ok:true]" || tries.Load() != 2 {
		t.Errorf("%d %v after %d tries, want 200 after a retry", res.StatusCode, m, tries.Load())
	}
	// The breaker opens on the first failure; the second call never
	// reaches the instance.
	for i, want := range []string{
		`required part "b" failed: GET /broken answered 503`,
		`required part "b" failed: GET /broken answered 503`,
	} {
		res, m := getJSON(t, h.front.URL, "/views/broken", nil)
		if res.StatusCode != 502 || m["error"] != want {
			t.Errorf("call %d: %d %q, want 502 %q", i, res.StatusCode, m["error"], want)
		}
	}
	if n := brokenHits.Load(); n != 1 {
		t.Errorf("broken instance got %d requests, want 1: its breaker is open after the first", n)
	}
}

func TestAggregateSpans(t *testing.T) {
	t.Parallel()
	answers := shopAnswers()
	answers["/users/9007199254740993"] = answer{status: 500, body: `{}`}
	back := newJSONBackend(t, answers)
	cfg := parseConfig(t, aggConfig(t, back, exampleParts, ""))
	front, rec := tracedFront(t, cfg, Options{})
	res, err := http.Get(front.URL + "/views/orders/7")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
	spans := rec.Ended()
	var server sdktrace.ReadOnlySpan
	parts := map[string]sdktrace.ReadOnlySpan{}
	var clients []sdktrace.ReadOnlySpan
	for _, s := range spans {
		switch s.SpanKind() {
		case trace.SpanKindServer:
			if server != nil {
				t.Errorf("more than one server span: %s and %s", server.Name(), s.Name())
			}
			server = s
		case trace.SpanKindInternal:
			parts[s.Name()] = s
		case trace.SpanKindClient:
			clients = append(clients, s)
		}
	}
	if server == nil || server.Name() != "GET /views/orders" {
		t.Fatalf("server span missing or misnamed among %d spans", len(spans))
	}
	for _, name := range []string{"aggregate order", "aggregate user", "aggregate products"} {
		p := parts[name]
		if p == nil {
			t.Fatalf("no span %q; internal spans: %v", name, parts)
		}
		if p.Parent().SpanID() != server.SpanContext().SpanID() {
			t.Errorf("%s is not a child of the server span", name)
		}
		if v, _ := attrOf(p.Attributes(), "meshgate.aggregate.route"); v.AsString() != "order-view" {
			t.Errorf("%s: meshgate.aggregate.route = %q", name, v.AsString())
		}
	}
	if v, _ := attrOf(parts["aggregate order"].Attributes(), "url.path"); v.AsString() != "/orders/7" {
		t.Errorf("order span url.path = %q", v.AsString())
	}
	if got := parts["aggregate user"].Status().Code.String(); got != "Error" {
		t.Errorf("failed part's span status = %s, want Error", got)
	}
	if got := parts["aggregate order"].Status().Code.String(); got == "Error" {
		t.Errorf("ok part's span status = %s", got)
	}
	// One client span per call (order, user, two products), each a child
	// of its part's span.
	if len(clients) != 4 {
		t.Fatalf("%d client spans, want 4", len(clients))
	}
	byID := map[trace.SpanID]string{}
	for name, p := range parts {
		byID[p.SpanContext().SpanID()] = name
	}
	var parents []string
	for _, c := range clients {
		parents = append(parents, byID[c.Parent().SpanID()])
	}
	slices.Sort(parents)
	if want := []string{"aggregate order", "aggregate products", "aggregate products", "aggregate user"}; !slices.Equal(parents, want) {
		t.Errorf("client span parents = %q, want %q", parents, want)
	}

	// A failed aggregate's JSON error names the trace.
	res, err = http.Get(front.URL + "/views/orders/99")
	if err != nil {
		t.Fatal(err)
	}
	var e struct {
		Status  int    `json:"status"`
		TraceID string `json:"trace_id"`
	}
	err = json.NewDecoder(res.Body).Decode(&e)
	res.Body.Close()
	if err != nil || e.Status != 502 || len(e.TraceID) != 32 {
		t.Errorf("502 body: %+v, %v; want a trace_id", e, err)
	}
}

func TestAggregateMetrics(t *testing.T) {
	t.Parallel()
	answers := shopAnswers()
	back := newJSONBackend(t, answers)
	cfg := parseConfig(t, aggConfig(t, back, exampleParts, ""))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	am, err := telemetry.NewAggregateMetrics(mp.Meter("test"))
	if err != nil {
		t.Fatal(err)
	}
	gw, err := New(cfg, Options{Store: newStoreFor(cfg), AggregateMetrics: am})
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(gw)
	defer front.Close()
	for _, p := range []string{"/views/orders/7", "/views/orders/7", "/views/orders/99"} {
		res, err := http.Get(front.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
	back.mu.Lock()
	back.answers["/users/9007199254740993"] = answer{status: 500}
	back.mu.Unlock()
	res, err := http.Get(front.URL + "/views/orders/7")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	counts := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			sum, ok := m.Data.(metricdata.Sum[int64])
			if !ok {
				continue
			}
			for _, dp := range sum.DataPoints {
				route, _ := dp.Attributes.Value("http.route")
				result, _ := dp.Attributes.Value("meshgate.aggregate.result")
				part, _ := dp.Attributes.Value("meshgate.aggregate.part")
				counts[fmt.Sprintf("%s %s %s %s", m.Name, route.AsString(), part.AsString(), result.AsString())] += dp.Value
			}
		}
	}
	want := map[string]int64{
		"meshgate.aggregate.requests /views/orders  complete":     2,
		"meshgate.aggregate.requests /views/orders  failed":       1,
		"meshgate.aggregate.requests /views/orders  partial":      1,
		"meshgate.aggregate.parts /views/orders order ok":         3,
		"meshgate.aggregate.parts /views/orders order failed":     1,
		"meshgate.aggregate.parts /views/orders user ok":          2,
		"meshgate.aggregate.parts /views/orders user failed":      1,
		"meshgate.aggregate.parts /views/orders user skipped":     1,
		"meshgate.aggregate.parts /views/orders products ok":      3,
		"meshgate.aggregate.parts /views/orders products skipped": 1,
	}
	for k, n := range want {
		if counts[k] != n {
			t.Errorf("%s = %d, want %d", k, counts[k], n)
		}
	}
	if len(counts) != len(want) {
		t.Errorf("counts %v, want %v", counts, want)
	}
}

func TestAggregateAdminRoutes(t *testing.T) {
	t.Parallel()
	back := newJSONBackend(t, shopAnswers())
	h := newHarness(t, parseConfig(t, aggConfig(t, back, exampleParts, "")))
	admin := httptest.NewServer(h.gw.AdminHandler(nil))
	defer admin.Close()
	res, m := getJSON(t, admin.URL, "/admin/routes", nil)
	if res.StatusCode != 200 {
		t.Fatal(res.StatusCode)
	}
	for _, r := range m["routes"].([]any) {
		rv := r.(map[string]any)
		if rv["name"] != "order-view" {
			continue
		}
		if fmt.Sprint(rv["parts"]) != "[order user products]" || rv["service"] != nil {
			t.Errorf("order-view = %v, want its parts and no service", rv)
		}
		return
	}
	t.Errorf("order-view missing from %v", m)
}

// TestAggregateReadmeExample keeps the README's example valid: it loads
// and compiles into a gateway.
func TestAggregateReadmeExample(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(readme), "\n## Aggregation\n")
	if !ok {
		t.Fatal("README has no Aggregation section")
	}
	_, block, ok := strings.Cut(sec, "```yaml\n")
	block, _, ok2 := strings.Cut(block, "```")
	if !ok || !ok2 {
		t.Fatal("the Aggregation section has no YAML example")
	}
	cfg := parseConfig(t, block)
	gw, err := New(cfg, Options{Store: newStoreFor(cfg)})
	if err != nil {
		t.Fatal(err)
	}
	gw.Close()
	if a := cfg.Routes[3].Aggregate; a == nil || len(a.Parts) != 3 {
		t.Errorf("routes[3] = %+v, want the aggregate with three parts", cfg.Routes[3])
	}
}

// BenchmarkAggregate measures the example (three parts, four upstream
// calls) end to end through real listeners.
func BenchmarkAggregate(b *testing.B) {
	back := newJSONBackend(b, shopAnswers())
	h := newHarness(b, parseConfig(b, aggConfig(b, back, exampleParts, "")))
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer client.CloseIdleConnections()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		res, err := client.Get(h.front.URL + "/views/orders/7")
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			b.Fatal(res.StatusCode)
		}
	}
}

// TestAggregatePathsStayInTheirSegment: what a client puts in a path
// segment stays one segment of the part's path; it cannot add a query or
// step up to another route. A path that normalisation would change is
// refused rather than sent.
func TestAggregatePathsStayInTheirSegment(t *testing.T) {
	t.Parallel()
	answers := shopAnswers()
	answers["/"] = answer{body: `{"root": true}`}
	answers["/orders/7?admin=1"] = answer{body: `{"id": 7, "admin": true, "user_id": 1, "product_ids": []}`}
	answers["/orders/5"] = answer{body: `{"id": 5, "user_id": "../admin", "product_ids": []}`}
	back := newJSONBackend(t, answers)
	h := newHarness(t, parseConfig(t, aggConfig(t, back, exampleParts+`
        - {name: owner, needs: [order], path: '"/users/\(.parts.order.user_id)"', optional: true}
`, `
  - {name: root, match: {path_prefix: /}, service: orders}
`)))
	for _, tc := range []struct{ path, want string }{
		{"/views/orders/7%3Fadmin=1", `GET /orders/7%3Fadmin=1 answered 404`},
		{"/views/orders/%252e%252e", `GET /orders/%252e%252e answered 404`},
	} {
		res, m := getJSON(t, h.front.URL, tc.path, nil)
		if res.StatusCode != 502 || !strings.Contains(fmt.Sprint(m["error"]), tc.want) {
			t.Errorf("GET %s: %d %v, want 502 with %q", tc.path, res.StatusCode, m, tc.want)
		}
	}
	// A value of an answer that would step out of its segment: the part
	// fails without a call.
	res, m := getJSON(t, h.front.URL, "/views/orders/5", nil)
	if res.StatusCode != 200 || m["owner"] != nil || !strings.Contains(fmt.Sprint(m["_partial"]), "owner") {
		t.Errorf("GET /views/orders/5: %d %v, want the owner part missing", res.StatusCode, m)
	}
	back.mu.Lock()
	defer back.mu.Unlock()
	if _, ok := back.headers["/"]; ok {
		t.Errorf("a part reached the catch-all route's root")
	}
}

// TestAggregateTimeoutIs504: when the aggregate's own timeout ends a
// required part, the client gets 504.
func TestAggregateTimeoutIs504(t *testing.T) {
	t.Parallel()
	answers := shopAnswers()
	answers["/orders/7"] = answer{body: `{}`, delay: 3 * time.Second}
	back := newJSONBackend(t, answers)
	h := newHarness(t, parseConfig(t, aggConfig(t, back, exampleParts, "")))
	start := time.Now()
	res, m := getJSON(t, h.front.URL, "/views/orders/7", nil)
	if res.StatusCode != 504 || !strings.Contains(fmt.Sprint(m["error"]), "the aggregate timed out after 2s") {
		t.Errorf("%d %v, want 504 naming the aggregate's timeout", res.StatusCode, m)
	}
	if took := time.Since(start); took > 2800*time.Millisecond {
		t.Errorf("took %s; the aggregate timeout is 2s", took)
	}
}
