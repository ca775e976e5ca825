package policies

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// spanFacts returns the attributes of a span and of its events: the steps
// put their own attributes on the span and their decisions in events.
func spanFacts(s sdktrace.ReadOnlySpan) []attribute.KeyValue {
	out := append([]attribute.KeyValue(nil), s.Attributes()...)
	for _, e := range s.Events() {
		out = append(out, e.Attributes...)
	}
	return out
}

// TestEveryStepLeavesAnEvent runs a request through three steps of one
// policy and one step of another: each decision is its own span event.
func TestEveryStepLeavesAnEvent(t *testing.T) {
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	yaml := `policies:
  - name: a
    applies_to: {all: true}
    authn: {api_keys: {keys: [{name: k, sha256: ` + HashAPIKey("secret") + `}]}}
    authz: {rules: [{name: everyone}]}
    rate_limits: [{name: l, requests: 100}]
  - name: b
    applies_to: {all: true}
    ip: {allow: [192.0.2.0/24]}
`
	set, err := compileSources([]Source{{Name: "p.yaml", Data: []byte(yaml)}}, &Env{}, newResources(), false, false)
	if err != nil {
		t.Fatal(err)
	}
	h := set.Chain(RouteInfo{Name: "r", Service: "s"}, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	ctx, span := tp.Tracer("test").Start(context.Background(), "req")
	req := httptest.NewRequest("GET", "/", nil).WithContext(ctx)
	req.Header.Set("X-API-Key", "secret")
	h.ServeHTTP(httptest.NewRecorder(), req)
	span.End()
	var got []string
	for _, e := range sr.Ended()[0].Events() {
		m := map[attribute.Key]string{}
		for _, kv := range e.Attributes {
			m[kv.Key] = kv.Value.Emit()
		}
		got = append(got, m["meshgate.policy.name"]+"/"+m["meshgate.policy.step"]+"/"+m["meshgate.policy.decision"])
	}
	want := "b/ip/allow a/authn/allow a/authz/allow a/rate_limit/allow"
	if strings.Join(got, " ") != want {
		t.Errorf("events %v, want %s", got, want)
	}
}
