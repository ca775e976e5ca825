package telemetry

import (
	"context"
	"strings"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

func TestPolicyObserver(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	o, err := NewPolicyObserver(mp.Meter("test"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for range 3 {
		o.Decision(ctx, "p", "authn", "allow")
	}
	o.Decision(ctx, "p", "authz", "deny")
	o.Reloaded(true)
	o.Reloaded(false)
	// Once a combination was seen, counting it makes no allocation of
	// meshgate's (the one left is the SDK's variadic option slice).
	if n := testing.AllocsPerRun(100, func() { o.Decision(ctx, "p", "authn", "allow") }); n > 1 {
		t.Errorf("Decision allocates %v times per call, want at most 1", n)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				var parts []string
				for _, kv := range dp.Attributes.ToSlice() {
					parts = append(parts, kv.Value.Emit())
				}
				got[m.Name+" "+strings.Join(parts, "/")] = dp.Value
			}
		}
	}
	want := map[string]int64{
		MetricPolicyDecisions + " allow/p/authn": 104, // 3, then 1 + 100 in AllocsPerRun
		MetricPolicyDecisions + " deny/p/authz":  1,
		MetricPolicyReloads + " success":         1,
		MetricPolicyReloads + " failure":         1,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %d, want %d (all: %v)", k, got[k], v, got)
		}
	}
}
