package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/meshgate/meshgate/telemetry"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// discardWriter is a reusable ResponseWriter, so the benchmark counts the
// gateway's allocations and not a recorder's.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(int)             {}

// BenchmarkServeHTTP measures the request hot path: route match, balancer
// pick, header rewrite, the upstream round trip over a pooled keep-alive
// connection and the response copy. The backend answers ~100 bytes.
func BenchmarkServeHTTP(b *testing.B) { benchmarkServeHTTP(b, false) }

// BenchmarkServeHTTPWithMetrics is BenchmarkServeHTTP with the HTTP
// metrics recorded (the cost of http.server/client.request.duration).
func BenchmarkServeHTTPWithMetrics(b *testing.B) { benchmarkServeHTTP(b, true) }

func benchmarkServeHTTP(b *testing.B, withMetrics bool) {
	body := strings.Repeat("x", 100)
	back := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, body)
	}))
	defer back.Close()
	back2 := httptest.NewServer(back.Config.Handler)
	defer back2.Close()
	cfg := parseConfig(b, `
listeners: [{address: "127.0.0.1:0"}]
services:
  products:
    instances:
`+instancesYAML(b, back, back2)+`
  other: {}
routes:
  - {name: health, match: {path: /healthz}, service: other}
  - {name: users, match: {path_prefix: /users}, service: other}
  - {name: products, match: {path_prefix: /products}, service: products}
`)
	h := newHarness(b, cfg)
	if withMetrics {
		hm, err := telemetry.NewHTTPMetrics(sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader())).Meter("bench"))
		if err != nil {
			b.Fatal(err)
		}
		h.gw.met = hm
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		req := httptest.NewRequest("GET", "/products/42", nil)
		req.RemoteAddr = "127.0.0.1:40000"
		req.Header.Set("User-Agent", "bench")
		req.Header.Set("Accept", "application/json")
		w := &discardWriter{h: make(http.Header)}
		for pb.Next() {
			clear(w.h)
			h.gw.ServeHTTP(w, req)
		}
	})
}

// BenchmarkRouterMatch measures route matching alone.
func BenchmarkRouterMatch(b *testing.B) {
	var routes []*Route
	for i, p := range []string{"/", "/api", "/api/v1/", "/api/v2/", "/users", "/orders", "/products", "/static/"} {
		rte := compileRoute(i, routeFor(p), &upstream{name: "x"})
		routes = append(routes, rte)
	}
	rt := newRouter(routes)
	req := httptest.NewRequest("GET", "/api/v2/items/42", nil)
	b.ReportAllocs()
	for b.Loop() {
		if rt.match(req) == nil {
			b.Fatal("no match")
		}
	}
}
