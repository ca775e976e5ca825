package telemetry

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/meshgate/meshgate/resilience"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func TestResilienceObserverCounts(t *testing.T) {
	m, err := NewMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Shutdown(t.Context())
	obs, err := ResilienceObserver(m.Meter())
	if err != nil {
		t.Fatal(err)
	}
	obs(resilience.Event{Kind: resilience.EventRetry, Service: "orders", Reason: "503"})
	obs(resilience.Event{Kind: resilience.EventRetry, Service: "orders", Reason: "503"})
	obs(resilience.Event{Kind: resilience.EventBudgetDenied, Service: "orders"})
	obs(resilience.Event{Kind: resilience.EventBreakerState, Service: "orders", Instance: "o-1", From: "closed", To: "open"})
	obs(resilience.Event{Kind: resilience.EventEjection, Service: "orders", Instance: "o-1"})
	obs(resilience.Event{Kind: resilience.EventLoadShed, Service: "orders", Reason: "service"})
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`meshgate_retries_total{meshgate_reason="503",meshgate_service="orders"`,
		`meshgate_retry_budget_exhausted_total{meshgate_service="orders"`,
		`meshgate_circuit_breaker_transitions_total{meshgate_instance="o-1",meshgate_service="orders",meshgate_state="open"`,
		`meshgate_outlier_ejections_total{meshgate_instance="o-1",meshgate_service="orders"`,
		`meshgate_load_shed_total{meshgate_limit="service",meshgate_service="orders"`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	var retries float64
	for _, mm := range families["meshgate_retries_total"].GetMetric() {
		retries += mm.GetCounter().GetValue()
	}
	if retries != 2 {
		t.Errorf("meshgate_retries_total = %v, want 2", retries)
	}
}
