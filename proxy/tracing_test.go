package proxy

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/internal/testproc"
	"go.opentelemetry.io/contrib/propagators/b3"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

func attrOf(kvs []attribute.KeyValue, key string) (attribute.Value, bool) {
	for _, kv := range kvs {
		if string(kv.Key) == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

func TestSpansPerRequestAndAttempt(t *testing.T) {
	t.Parallel()
	bad, good := newFailing(t, "bad"), newFailing(t, "good")
	bad.mode.Store("503")
	seen := make(chan string, 4)
	// The good backend records the traceparent it receives.
	good.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Get("Traceparent")
		w.Header().Set("X-Backend", "good")
	})
	cfg := parseConfig(t, resilienceConfig(t, "    circuit_breaker: {disabled: true}\n    outlier_detection: {disabled: true}", bad, good))
	front, rec := tracedFront(t, cfg, Options{})

	const incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	req, _ := http.NewRequest("GET", front.URL+"/items/1", nil)
	req.Header.Set("Traceparent", incoming)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
	upstreamTP := <-seen

	spans := rec.Ended()
	var server sdktrace.ReadOnlySpan
	var clients []sdktrace.ReadOnlySpan
	for _, s := range spans {
		switch s.SpanKind() {
		case trace.SpanKindServer:
			server = s
		case trace.SpanKindClient:
			clients = append(clients, s)
		}
	}
	if server == nil || len(clients) != 2 {
		t.Fatalf("got %d spans (server %v, %d client), want 1 server and 2 client spans", len(spans), server != nil, len(clients))
	}
	if server.Name() != "GET /" {
		t.Errorf("server span name %q, want %q (method and route template)", server.Name(), "GET /")
	}
	if got := server.SpanContext().TraceID().String(); got != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("server span trace %s: the incoming trace context was not continued", got)
	}
	if v, _ := attrOf(server.Attributes(), "http.route"); v.AsString() != "/" {
		t.Errorf("http.route = %q", v.AsString())
	}
	if v, _ := attrOf(server.Attributes(), "http.response.status_code"); v.AsInt64() != 200 {
		t.Errorf("server status attribute = %v", v.AsInt64())
	}
	var retryEvent bool
	for _, e := range server.Events() {
		retryEvent = retryEvent || e.Name == "retry"
	}
	if !retryEvent {
		t.Error("no retry event on the server span")
	}
	first, second := clients[0], clients[1]
	if first.Parent().SpanID() != server.SpanContext().SpanID() || second.Parent().SpanID() != server.SpanContext().SpanID() {
		t.Error("client spans are not children of the server span")
	}
	if _, ok := attrOf(first.Attributes(), "http.request.resend_count"); ok {
		t.Error("the first attempt carries http.request.resend_count")
	}
	if v, ok := attrOf(second.Attributes(), "http.request.resend_count"); !ok || v.AsInt64() != 1 {
		t.Errorf("second attempt resend_count = %v (present %v), want 1", v.AsInt64(), ok)
	}
	if v, _ := attrOf(first.Attributes(), "http.response.status_code"); v.AsInt64() != 503 {
		t.Errorf("first attempt status = %v, want 503", v.AsInt64())
	}
	if !strings.Contains(upstreamTP, second.SpanContext().SpanID().String()) || !strings.Contains(upstreamTP, "4bf92f3577b34da6a3ce929d0e0e4736") {
		t.Errorf("upstream traceparent %q does not name the attempt's span %s", upstreamTP, second.SpanContext().SpanID())
	}
}

func TestErrorBodyCarriesTraceID(t *testing.T) {
	t.Parallel()
	good := newFailing(t, "good")
	cfg := parseConfig(t, `
listeners: [{address: "127.0.0.1:0"}]
services:
  svc:
    instances:
`+instancesYAML(t, good.srv)+`
routes: [{match: {path: /only}, service: svc}]
`)
	front, rec := tracedFront(t, cfg, Options{})
	res, err := http.Get(front.URL + "/nowhere")
	if err != nil {
		t.Fatal(err)
	}
	var body struct {
		Status  int    `json:"status"`
		TraceID string `json:"trace_id"`
	}
	json.NewDecoder(res.Body).Decode(&body)
	res.Body.Close()
	spans := rec.Ended()
	if len(spans) != 1 {
		t.Fatalf("%d spans, want the server span", len(spans))
	}
	if body.Status != 404 || body.TraceID != spans[0].SpanContext().TraceID().String() {
		t.Errorf("error body %+v, want status 404 and trace_id %s", body, spans[0].SpanContext().TraceID())
	}
	if spans[0].Name() != "GET" {
		t.Errorf("span of an unrouted request named %q, want the method alone", spans[0].Name())
	}
}

func TestAccessLogLine(t *testing.T) {
	t.Parallel()
	bad, good := newFailing(t, "bad"), newFailing(t, "good")
	bad.mode.Store("503")
	cfg := parseConfig(t, resilienceConfig(t, "    circuit_breaker: {disabled: true}\n    outlier_detection: {disabled: true}", bad, good))
	var buf testproc.Output
	front, rec := tracedFront(t, cfg, Options{AccessLog: slog.New(slog.NewJSONHandler(&buf, nil))})
	res, err := http.Get(front.URL + "/items?x=1")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	var line map[string]any
	waitFor(t, func() bool { return json.Unmarshal([]byte(buf.String()), &line) == nil })
	want := map[string]any{
		"msg": "request", "method": "GET", "path": "/items", "route": "all", "service": "svc",
		"status": float64(200), "attempts": float64(2), "bytes": float64(len("good")),
		"trace_id": rec.Ended()[len(rec.Ended())-1].SpanContext().TraceID().String(),
	}
	for k, v := range want {
		if line[k] != v {
			t.Errorf("access log %s = %v, want %v (line %s)", k, line[k], v, buf.String())
		}
	}
	for _, k := range []string{"span_id", "instance", "instances", "duration_ms", "remote"} {
		if _, ok := line[k]; !ok {
			t.Errorf("access log lacks %s: %s", k, buf.String())
		}
	}
}

func TestB3PropagationInAndOut(t *testing.T) {
	t.Parallel()
	seen := make(chan http.Header, 1)
	back := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen <- r.Header.Clone() }))
	defer back.Close()
	for _, tc := range []struct {
		name     string
		encoding b3.Encoding
		in       map[string]string
		out      string // the header that must carry the attempt's span
	}{
		{name: "single", encoding: b3.B3SingleHeader, in: map[string]string{"B3": "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"}, out: "B3"},
		{name: "multi", encoding: b3.B3MultipleHeader, in: map[string]string{
			"X-B3-Traceid": "80f198ee56343ba864fe8b2a57d3eff7", "X-B3-Spanid": "e457b5a2e4d86bd1", "X-B3-Sampled": "1"}, out: "X-B3-Spanid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := parseConfig(t, oneService(t, "", back))
			front, rec := tracedFront(t, cfg, Options{Propagator: b3.New(b3.WithInjectEncoding(tc.encoding))})
			req, _ := http.NewRequest("GET", front.URL+"/", nil)
			for k, v := range tc.in {
				req.Header.Set(k, v)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			got := <-seen
			var client sdktrace.ReadOnlySpan
			for _, s := range rec.Ended() {
				if s.SpanKind() == trace.SpanKindClient {
					client = s
				}
			}
			if client == nil || client.SpanContext().TraceID().String() != "80f198ee56343ba864fe8b2a57d3eff7" {
				t.Fatalf("the incoming B3 trace was not continued: %v", client)
			}
			if v := got.Get(tc.out); !strings.Contains(v, client.SpanContext().SpanID().String()) {
				t.Errorf("upstream %s = %q, want the attempt's span %s", tc.out, v, client.SpanContext().SpanID())
			}
		})
	}
}

func TestIgnoreIncomingTraceContext(t *testing.T) {
	t.Parallel()
	back := named("ok")
	defer back.Close()
	cfg := parseConfig(t, oneService(t, "server: {ignore_incoming_trace_context: true}", back))
	front, rec := tracedFront(t, cfg, Options{})
	req, _ := http.NewRequest("GET", front.URL+"/", nil)
	req.Header.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	var server sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.SpanKind() == trace.SpanKindServer {
			server = s
		}
	}
	if server == nil {
		t.Fatal("no server span")
	}
	if server.SpanContext().TraceID().String() == "4bf92f3577b34da6a3ce929d0e0e4736" || server.Parent().IsValid() {
		t.Error("the caller's trace was continued; want a new root")
	}
	if links := server.Links(); len(links) != 1 || links[0].SpanContext.SpanID().String() != "00f067aa0ba902b7" {
		t.Errorf("links %v, want one to the caller's span", links)
	}
}

// tracedFront serves a gateway for cfg that records its spans, with opts
// (Store and Tracer are set here).
func tracedFront(t *testing.T, cfg *config.Config, opts Options) (*httptest.Server, *tracetest.SpanRecorder) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	opts.Store = newStoreFor(cfg)
	opts.Tracer = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)).Tracer("test")
	gw, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(gw)
	t.Cleanup(front.Close)
	return front, rec
}
