// Package telemetry owns meshgate's OpenTelemetry setup and names: the
// meter provider and its Prometheus endpoint on the admin listener, and
// the instruments of every package, named after the OpenTelemetry
// semantic conventions where one exists and with the meshgate. prefix
// otherwise.
//
// Tracing (tracing.go) builds the tracer provider and propagators from the
// OTEL_* variables with a bounded, non-blocking OTLP exporter; the proxy's
// spans and the access log arrive with the telemetry issue.
package telemetry

import (
	"context"
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
)

// ScopeName is the instrumentation scope of meshgate's own instruments.
const ScopeName = "github.com/meshgate/meshgate"

// Metrics is a meter provider whose readings are served in the Prometheus
// and OpenMetrics formats. It uses a registry of its own, never the
// process-global one.
type Metrics struct {
	provider *sdkmetric.MeterProvider
	handler  http.Handler
}

// NewMetrics builds the meter provider for res (nil: the SDK's default
// resource, which reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES).
func NewMetrics(res *resource.Resource) (*Metrics, error) {
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, fmt.Errorf("creating the Prometheus exporter: %w", err)
	}
	if res == nil {
		res = resource.Default()
	}
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp), sdkmetric.WithResource(res))
	return &Metrics{
		provider: provider,
		handler:  promhttp.HandlerFor(reg, promhttp.HandlerOpts{EnableOpenMetrics: true}),
	}, nil
}

// Meter returns meshgate's meter.
func (m *Metrics) Meter() metric.Meter { return m.provider.Meter(ScopeName) }

// Handler serves /metrics.
func (m *Metrics) Handler() http.Handler { return m.handler }

// Shutdown stops the provider.
func (m *Metrics) Shutdown(ctx context.Context) error { return m.provider.Shutdown(ctx) }
