package telemetry

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"
)

// receivedSpan is one span as an OTLP/HTTP collector saw it.
type receivedSpan struct {
	resource map[string]string
	scope    string
	span     *tracepb.Span
}

// otlpReceiver is an OTLP/HTTP traces endpoint: it decodes the real
// protobuf request, records the spans and answers as a collector does.
type otlpReceiver struct {
	srv  *httptest.Server
	gate chan struct{} // when non-nil, requests wait until it is closed

	mu    sync.Mutex
	spans []receivedSpan
}

func newOTLPReceiver(t *testing.T, gate chan struct{}) *otlpReceiver {
	t.Helper()
	r := &otlpReceiver{gate: gate}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

// URL is the traces endpoint, for TracingOptions.Endpoint.
func (r *otlpReceiver) URL() string { return r.srv.URL + "/v1/traces" }

func (r *otlpReceiver) serve(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost || req.URL.Path != "/v1/traces" {
		http.Error(w, "not an OTLP traces request", http.StatusNotFound)
		return
	}
	if ct := req.Header.Get("Content-Type"); ct != "application/x-protobuf" {
		http.Error(w, "unexpected content type "+ct, http.StatusUnsupportedMediaType)
		return
	}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	// The body is read first: the server notices a client hanging up,
	// and cancels the request's context, only once the body is consumed.
	if r.gate != nil {
		select {
		case <-r.gate:
		case <-req.Context().Done():
			return
		}
	}
	var msg coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(body, &msg); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	for _, rs := range msg.GetResourceSpans() {
		res := attrMap(rs.GetResource().GetAttributes())
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				r.spans = append(r.spans, receivedSpan{resource: res, scope: ss.GetScope().GetName(), span: s})
			}
		}
	}
	r.mu.Unlock()
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(out)
}

func (r *otlpReceiver) received() []receivedSpan {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]receivedSpan(nil), r.spans...)
}

// attrMap flattens OTLP attributes to strings for comparison.
func attrMap(kvs []*commonpb.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		switch v := kv.GetValue().GetValue().(type) {
		case *commonpb.AnyValue_IntValue:
			m[kv.GetKey()] = strconv.FormatInt(v.IntValue, 10)
		default:
			m[kv.GetKey()] = kv.GetValue().GetStringValue()
		}
	}
	return m
}

// closedPort returns a loopback address on which nothing listens, so
// connections are refused at once.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestTracingExportsOverHTTP(t *testing.T) {
	t.Parallel()
	recv := newOTLPReceiver(t, nil)
	tr, err := NewTracing(t.Context(), TracingOptions{
		ServiceName:    "edge-gw",
		ServiceVersion: "1.4.2",
		Endpoint:       recv.URL(),
		Protocol:       ProtocolHTTPProtobuf,
	})
	if err != nil {
		t.Fatal(err)
	}
	_, span := tr.Tracer().Start(t.Context(), "GET /orders", trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(semconv.ServerAddress("orders.internal"), attribute.String("meshgate.route", "orders-v2")))
	span.End()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := tr.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}

	got := recv.received()
	if len(got) != 1 {
		t.Fatalf("receiver got %d spans, want 1", len(got))
	}
	s := got[0]
	if s.span.GetName() != "GET /orders" {
		t.Errorf("span name = %q, want %q", s.span.GetName(), "GET /orders")
	}
	if s.span.GetKind() != tracepb.Span_SPAN_KIND_SERVER {
		t.Errorf("span kind = %v, want server", s.span.GetKind())
	}
	if s.scope != ScopeName {
		t.Errorf("scope = %q, want %q", s.scope, ScopeName)
	}
	for k, want := range map[string]string{"service.name": "edge-gw", "service.version": "1.4.2", "telemetry.sdk.language": "go"} {
		if s.resource[k] != want {
			t.Errorf("resource %s = %q, want %q (resource %v)", k, s.resource[k], want, s.resource)
		}
	}
	attrs := attrMap(s.span.GetAttributes())
	for k, want := range map[string]string{"server.address": "orders.internal", "meshgate.route": "orders-v2"} {
		if attrs[k] != want {
			t.Errorf("span attribute %s = %q, want %q (attributes %v)", k, attrs[k], want, attrs)
		}
	}
	if d := tr.Dropped(); d != 0 {
		t.Errorf("Dropped() = %d, want 0", d)
	}
}

func TestTracingShutdownFlushesPendingSpans(t *testing.T) {
	t.Parallel()
	recv := newOTLPReceiver(t, nil)
	tr, err := NewTracing(t.Context(), TracingOptions{Endpoint: recv.URL()})
	if err != nil {
		t.Fatal(err)
	}
	const n = 100
	for i := range n {
		_, span := tr.Tracer().Start(t.Context(), "span", trace.WithAttributes(attribute.Int("i", i)))
		span.End()
	}
	// 100 spans make less than a batch, so nothing leaves before the
	// five-second schedule delay unless Shutdown flushes them.
	if got := len(recv.received()); got != 0 {
		t.Fatalf("receiver got %d spans before Shutdown; the flush would not be tested", got)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := tr.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	got := recv.received()
	if len(got) != n {
		t.Fatalf("receiver got %d spans after Shutdown, want %d", len(got), n)
	}
	seen := map[string]bool{}
	for _, s := range got {
		seen[attrMap(s.span.GetAttributes())["i"]] = true
		if s.resource["service.name"] == "" {
			t.Errorf("span without service.name: %v", s.resource)
		}
	}
	if len(seen) != n {
		t.Errorf("receiver got %d distinct spans, want %d", len(seen), n)
	}
	// Spans ended after Shutdown go nowhere and must not panic.
	_, span := tr.Tracer().Start(t.Context(), "late")
	span.End()
	if len(recv.received()) != n {
		t.Error("a span ended after Shutdown was exported")
	}
}

func TestTracingFullQueueDropsAndCounts(t *testing.T) {
	t.Parallel()
	gate := make(chan struct{})
	recv := newOTLPReceiver(t, gate)
	tr, err := NewTracing(t.Context(), TracingOptions{Endpoint: recv.URL(), QueueSize: 10})
	if err != nil {
		t.Fatal(err)
	}
	const n = 100
	for range n {
		_, span := tr.Tracer().Start(t.Context(), "span")
		span.End()
	}
	// The receiver holds the first batch, so at most QueueSize spans are in
	// flight and the rest were refused at once.
	if d := tr.Dropped(); d < n-10 {
		t.Errorf("Dropped() = %d before Shutdown, want at least %d", d, n-10)
	}
	close(gate)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := tr.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	got := uint64(len(recv.received()))
	if got == 0 || got > 10 {
		t.Errorf("receiver got %d spans, want 1..10 (the queue bound)", got)
	}
	if d := tr.Dropped(); d+got != n {
		t.Errorf("Dropped() = %d and %d exported, want them to add up to %d", d, got, n)
	}
}

// TestTracingDeadEndpoint checks that an unreachable collector never slows
// span creation and that Shutdown honours its deadline. It is not parallel:
// it measures time and checks for leaked goroutines.
func TestTracingDeadEndpoint(t *testing.T) {
	t.Setenv("OTEL_TRACES_SAMPLER", "always_on")
	hanging := func(t *testing.T) string {
		// A collector that accepts requests and never answers them.
		gate := make(chan struct{})
		recv := newOTLPReceiver(t, gate)
		t.Cleanup(func() { close(gate) }) // runs before the server closes
		return recv.URL()
	}
	for _, tc := range []struct {
		name     string
		protocol string
		endpoint func(t *testing.T) string
	}{
		{"http/protobuf, connection refused", ProtocolHTTPProtobuf, func(t *testing.T) string { return "http://" + closedPort(t) + "/v1/traces" }},
		{"grpc, connection refused", ProtocolGRPC, func(t *testing.T) string { return "http://" + closedPort(t) }},
		{"http/protobuf, collector hangs", ProtocolHTTPProtobuf, hanging},
	} {
		t.Run(tc.name, func(t *testing.T) {
			endpoint := tc.endpoint(t)
			defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
			tr, err := NewTracing(t.Context(), TracingOptions{Endpoint: endpoint, Protocol: tc.protocol})
			if err != nil {
				t.Fatal(err)
			}
			const n = 10_000
			tracer := tr.Tracer()
			start := time.Now()
			for range n {
				_, span := tracer.Start(t.Context(), "span")
				span.End()
			}
			elapsed := time.Since(start)
			t.Logf("%d spans created and ended in %v", n, elapsed)
			if elapsed > time.Second {
				t.Errorf("creating and ending %d spans took %v with a dead collector, want well under a second", n, elapsed)
			}
			if d := tr.Dropped(); d < n-DefaultTraceQueueSize {
				t.Errorf("Dropped() = %d before Shutdown, want at least %d", d, n-DefaultTraceQueueSize)
			}

			const deadline = 500 * time.Millisecond
			ctx, cancel := context.WithTimeout(t.Context(), deadline)
			defer cancel()
			start = time.Now()
			err = tr.Shutdown(ctx)
			elapsed = time.Since(start)
			t.Logf("Shutdown returned %v after %v", err, elapsed)
			if elapsed > deadline+250*time.Millisecond {
				t.Errorf("Shutdown took %v, want it to return by its %v deadline", elapsed, deadline)
			}
			if d := tr.Dropped(); d != n {
				t.Errorf("Dropped() = %d after Shutdown, want all %d spans", d, n)
			}
		})
	}
}

// TestTracingPropagators is not parallel: it sets OTEL_PROPAGATORS.
func TestTracingPropagators(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     string
		want    string // header that must be injected
		notWant string // header that must not be
	}{
		{"default is W3C trace context", "", "traceparent", "b3"},
		{"b3 single header", "b3", "b3", "traceparent"},
		{"b3 multiple headers", "b3multi", "X-B3-Traceid", "traceparent"},
		{"trace context and b3", "tracecontext,b3", "b3", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("OTEL_PROPAGATORS", tc.env)
			tr, err := NewTracing(t.Context(), TracingOptions{Disabled: true})
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Shutdown(context.Background())
			ctx, span := tr.Tracer().Start(t.Context(), "outbound")
			defer span.End()
			h := http.Header{}
			tr.Propagator().Inject(ctx, propagation.HeaderCarrier(h))
			traceID := span.SpanContext().TraceID().String()
			if got := h.Get(tc.want); !strings.Contains(got, traceID) {
				t.Errorf("header %s = %q, want it to carry trace %s (headers %v)", tc.want, got, traceID, h)
			}
			if tc.notWant != "" && h.Get(tc.notWant) != "" {
				t.Errorf("header %s = %q injected, want none", tc.notWant, h.Get(tc.notWant))
			}
			// What was injected must be extracted to the same trace.
			back := trace.SpanContextFromContext(tr.Propagator().Extract(context.Background(), propagation.HeaderCarrier(h)))
			if back.TraceID() != span.SpanContext().TraceID() {
				t.Errorf("extracted trace %s, want %s", back.TraceID(), traceID)
			}
		})
	}
}

// TestTracingResource is not parallel: it sets OTEL_SERVICE_NAME and
// OTEL_RESOURCE_ATTRIBUTES.
func TestTracingResource(t *testing.T) {
	for _, tc := range []struct {
		name        string
		opts        TracingOptions
		serviceEnv  string
		attrsEnv    string
		wantName    string
		wantVersion string
		wantEnv     string // value of deployment.environment.name
	}{
		{name: "default name", wantName: "meshgate"},
		{name: "OTEL_SERVICE_NAME", serviceEnv: "edge", wantName: "edge"},
		{name: "service.name in OTEL_RESOURCE_ATTRIBUTES", attrsEnv: "service.name=attr-edge,deployment.environment.name=prod", wantName: "attr-edge", wantEnv: "prod"},
		{name: "option overrides the environment", opts: TracingOptions{ServiceName: "opt", ServiceVersion: "2.0.0"}, serviceEnv: "edge", attrsEnv: "service.version=1.0.0,deployment.environment.name=prod", wantName: "opt", wantVersion: "2.0.0", wantEnv: "prod"},
		{name: "version from the environment", attrsEnv: "service.version=1.0.0", wantName: "meshgate", wantVersion: "1.0.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("OTEL_SERVICE_NAME", tc.serviceEnv)
			t.Setenv("OTEL_RESOURCE_ATTRIBUTES", tc.attrsEnv)
			tc.opts.Disabled = true
			tr, err := NewTracing(t.Context(), tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Shutdown(context.Background())
			set := tr.Resource().Set()
			for key, want := range map[attribute.Key]string{
				semconv.ServiceNameKey:          tc.wantName,
				semconv.ServiceVersionKey:       tc.wantVersion,
				"deployment.environment.name":   tc.wantEnv,
				semconv.TelemetrySDKLanguageKey: "go",
			} {
				v, _ := set.Value(key)
				if v.AsString() != want {
					t.Errorf("%s = %q, want %q", key, v.AsString(), want)
				}
			}
		})
	}
}

// TestTracingDisabled is not parallel: it sets OTEL_TRACES_EXPORTER.
func TestTracingDisabled(t *testing.T) {
	for _, tc := range []struct {
		name     string
		disabled bool
		env      string
	}{
		{"option", true, ""},
		{"OTEL_TRACES_EXPORTER=none", false, "none"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("OTEL_TRACES_EXPORTER", tc.env)
			recv := newOTLPReceiver(t, nil)
			tr, err := NewTracing(t.Context(), TracingOptions{Endpoint: recv.URL(), Disabled: tc.disabled})
			if err != nil {
				t.Fatal(err)
			}
			_, span := tr.Tracer().Start(t.Context(), "span")
			// Spans still exist so that their context reaches upstreams.
			if !span.SpanContext().IsValid() || !span.SpanContext().IsSampled() {
				t.Errorf("span context %v is not a valid sampled context", span.SpanContext())
			}
			span.End()
			if err := tr.Shutdown(t.Context()); err != nil {
				t.Fatal(err)
			}
			if got := len(recv.received()); got != 0 {
				t.Errorf("receiver got %d spans from disabled tracing", got)
			}
			if d := tr.Dropped(); d != 0 {
				t.Errorf("Dropped() = %d, want 0", d)
			}
		})
	}
}

// TestTracingConfigErrors is not parallel: it sets environment variables.
func TestTracingConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts TracingOptions
		env  map[string]string
		want string
	}{
		{name: "unknown protocol option", opts: TracingOptions{Protocol: "thrift"}, want: `unsupported OTLP protocol "thrift"`},
		{name: "unknown protocol in the environment", env: map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "udp"}, want: "OTEL_EXPORTER_OTLP_PROTOCOL"},
		{name: "negative queue size", opts: TracingOptions{QueueSize: -1}, want: "queue size -1"},
		{name: "bad OTEL_BSP_MAX_QUEUE_SIZE", env: map[string]string{"OTEL_BSP_MAX_QUEUE_SIZE": "lots"}, want: "OTEL_BSP_MAX_QUEUE_SIZE"},
		{name: "unknown propagator", env: map[string]string{"OTEL_PROPAGATORS": "tracecontext,zipkin"}, want: "OTEL_PROPAGATORS"},
		{name: "unknown exporter", env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, want: "OTEL_TRACES_EXPORTER"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			tr, err := NewTracing(t.Context(), tc.opts)
			if err == nil {
				tr.Shutdown(context.Background())
				t.Fatalf("NewTracing succeeded, want an error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}
