package telemetry

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/meshgate/meshgate/discovery"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func TestDiscoveryMetrics(t *testing.T) {
	m, err := NewMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Shutdown(t.Context())
	store := discovery.NewStore()
	status := &discovery.ConsulStatus{Errors: 3, Requests: 42, LastContact: time.Now().Add(-5 * time.Second), StalenessSeconds: 5}
	if err := RegisterDiscovery(m.Meter(), DiscoveryState{Store: store, Consul: func() *discovery.ConsulStatus { return status }}); err != nil {
		t.Fatal(err)
	}
	snap := discovery.NewSnapshot("consul", map[string][]*discovery.Instance{
		"orders": {
			discovery.NewInstance(discovery.Instance{ID: "a", Address: "10.0.0.1", Port: 1}),
			discovery.NewInstance(discovery.Instance{ID: "b", Address: "10.0.0.2", Port: 1, Health: discovery.Warning}),
		},
	}, time.Now().Add(-2*time.Second))
	store.Publish(snap)

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("parsing /metrics: %v\n%s", err, body)
	}
	value := func(name string, labels map[string]string) float64 {
		t.Helper()
		f, ok := families[name]
		if !ok {
			t.Fatalf("no metric %s in\n%s", name, body)
		}
	next:
		for _, mm := range f.Metric {
			got := map[string]string{}
			for _, l := range mm.Label {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue next
				}
			}
			switch {
			case mm.Gauge != nil:
				return mm.Gauge.GetValue()
			case mm.Counter != nil:
				return mm.Counter.GetValue()
			}
		}
		t.Fatalf("no %s with %v", name, labels)
		return 0
	}
	if v := value("meshgate_discovery_instances", map[string]string{"meshgate_service": "orders", "meshgate_health": "passing"}); v != 1 {
		t.Errorf("passing instances = %v", v)
	}
	if v := value("meshgate_discovery_instances", map[string]string{"meshgate_service": "orders", "meshgate_health": "warning"}); v != 1 {
		t.Errorf("warning instances = %v", v)
	}
	if v := value("meshgate_discovery_snapshot_age_seconds", nil); v < 2 || v > 10 {
		t.Errorf("snapshot age = %v", v)
	}
	if v := value("meshgate_discovery_consul_errors_total", nil); v != 3 {
		t.Errorf("consul errors = %v", v)
	}
	if v := value("meshgate_discovery_consul_requests_total", nil); v != 42 {
		t.Errorf("consul requests = %v", v)
	}
	if v := value("meshgate_discovery_consul_staleness_seconds", nil); v != 5 {
		t.Errorf("staleness = %v", v)
	}
}
