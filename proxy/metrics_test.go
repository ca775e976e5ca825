package proxy

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/meshgate/meshgate/telemetry"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

func TestHTTPMetrics(t *testing.T) {
	t.Parallel()
	bad, good := newFailing(t, "bad"), newFailing(t, "good")
	bad.mode.Store("503")
	cfg := parseConfig(t, resilienceConfig(t, "    circuit_breaker: {disabled: true}\n    outlier_detection: {disabled: true}", bad, good))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	hm, err := telemetry.NewHTTPMetrics(mp.Meter("test"))
	if err != nil {
		t.Fatal(err)
	}
	gw, err := New(cfg, Options{Store: newStoreFor(cfg), Metrics: hm})
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(gw)
	defer front.Close()
	res, err := http.Get(front.URL + "/items")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	res, _ = http.Get(front.URL + "/")
	res.Body.Close()

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	found := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			found[m.Name] = m
		}
	}
	server, ok := found["http.server.request.duration"]
	if !ok || server.Unit != "s" {
		t.Fatalf("http.server.request.duration missing or wrong unit: %+v", found)
	}
	h := server.Data.(metricdata.Histogram[float64])
	var count uint64
	for _, dp := range h.DataPoints {
		count += dp.Count
		if !slices.Equal(dp.Bounds, telemetry.DurationBuckets) {
			t.Errorf("buckets %v, want the semantic conventions' %v", dp.Bounds, telemetry.DurationBuckets)
		}
		route, _ := dp.Attributes.Value("http.route")
		st, _ := dp.Attributes.Value("http.response.status_code")
		if route.AsString() != "/" || st.AsInt64() != 200 {
			t.Errorf("server point attributes %v", dp.Attributes.ToSlice())
		}
	}
	if count != 2 {
		t.Errorf("server requests recorded %d, want 2", count)
	}
	client := found["http.client.request.duration"].Data.(metricdata.Histogram[float64])
	statuses := map[int64]uint64{}
	for _, dp := range client.DataPoints {
		st, _ := dp.Attributes.Value("http.response.status_code")
		statuses[st.AsInt64()] += dp.Count
	}
	// Each request: a 503 attempt on "bad", retried on "good" (round robin).
	if statuses[503] != 2 || statuses[200] != 2 {
		t.Errorf("client attempts by status %v, want two 503 and two 200", statuses)
	}
	active := found["http.server.active_requests"].Data.(metricdata.Sum[int64])
	for _, dp := range active.DataPoints {
		if dp.Value != 0 {
			t.Errorf("active requests %d after all ended", dp.Value)
		}
	}
}
