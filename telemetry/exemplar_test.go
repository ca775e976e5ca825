package telemetry

import (
	"context"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// TestExemplarsCarryTraceIDs checks that a request recorded inside a
// sampled span shows its trace on /metrics in the OpenMetrics format.
func TestExemplarsCarryTraceIDs(t *testing.T) {
	m, err := NewMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Shutdown(t.Context())
	hm, err := NewHTTPMetrics(m.Meter())
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider()
	ctx, span := tp.Tracer("t").Start(context.Background(), "GET /orders")
	hm.ServerDone(ctx, time.Now().Add(-20*time.Millisecond), "GET", "http", "/orders", "orders", 200, "")
	span.End()
	req := httptest.NewRequest("GET", "/metrics", nil)
	req.Header.Set("Accept", "application/openmetrics-text; version=1.0.0")
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, req)
	body, _ := io.ReadAll(rec.Body)
	if !strings.Contains(string(body), span.SpanContext().TraceID().String()) {
		t.Errorf("no exemplar with trace %s in:\n%s", span.SpanContext().TraceID(), body)
	}
}
