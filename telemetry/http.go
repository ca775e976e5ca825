package telemetry

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.39.0"
)

// HTTP metric names, from the OpenTelemetry semantic conventions.
const (
	MetricServerDuration = "http.server.request.duration"
	MetricServerActive   = "http.server.active_requests"
	MetricClientDuration = "http.client.request.duration"
)

// DurationBuckets are the semantic conventions' advised bucket boundaries
// for HTTP durations, in seconds.
var DurationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}

// HTTPMetrics records the RED metrics of the gateway: a duration per
// request (server) and per upstream attempt (client), and the requests in
// flight. Attributes are bounded: method, route template, status, service
// and instance, never a raw path. Recording with a context that carries a
// sampled span attaches the trace as an exemplar.
type HTTPMetrics struct {
	server metric.Float64Histogram
	client metric.Float64Histogram
	active metric.Int64UpDownCounter
	// Attribute sets are built once per distinct combination and reused:
	// building one sorts and allocates, and the combinations are few.
	serverSets sync.Map // serverKey → metric.MeasurementOption
	clientSets sync.Map // clientKey → metric.MeasurementOption
	activeSets sync.Map // activeKey → metric.MeasurementOption
}

type serverKey struct {
	method, scheme, route, service, errType string
	status                                  int
}

type clientKey struct {
	method, service, instance, address, errType string
	port, status                                int
}

type activeKey struct{ method, scheme string }

// cached returns the option stored under key, building it with build on
// first use.
func cached[K comparable](m *sync.Map, key K, build func() []attribute.KeyValue) metric.MeasurementOption {
	if o, ok := m.Load(key); ok {
		return o.(metric.MeasurementOption)
	}
	o := metric.WithAttributeSet(attribute.NewSet(build()...))
	m.Store(key, o)
	return o
}

func (m *HTTPMetrics) activeOpt(method, scheme string) metric.MeasurementOption {
	return cached(&m.activeSets, activeKey{method, scheme}, func() []attribute.KeyValue {
		return []attribute.KeyValue{semconv.HTTPRequestMethodKey.String(method), semconv.URLScheme(scheme)}
	})
}

// NewHTTPMetrics creates the instruments on meter.
func NewHTTPMetrics(meter metric.Meter) (*HTTPMetrics, error) {
	server, err := meter.Float64Histogram(MetricServerDuration,
		metric.WithDescription("Duration of HTTP server requests."), metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(DurationBuckets...))
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", MetricServerDuration, err)
	}
	client, err := meter.Float64Histogram(MetricClientDuration,
		metric.WithDescription("Duration of HTTP client requests (one per upstream attempt)."), metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(DurationBuckets...))
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", MetricClientDuration, err)
	}
	active, err := meter.Int64UpDownCounter(MetricServerActive,
		metric.WithDescription("Number of active HTTP server requests."), metric.WithUnit("{request}"))
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", MetricServerActive, err)
	}
	return &HTTPMetrics{server: server, client: client, active: active}, nil
}

// ServerStarted counts a request in flight; call ServerDone when it ends.
func (m *HTTPMetrics) ServerStarted(ctx context.Context, method, scheme string) {
	m.active.Add(ctx, 1, m.activeOpt(method, scheme))
}

// ServerDone records a finished request. route is the route template ("" when
// none matched), status the status sent (499: the client left), errType the
// error.type ("" for none).
func (m *HTTPMetrics) ServerDone(ctx context.Context, start time.Time, method, scheme, route, service string, status int, errType string) {
	m.active.Add(ctx, -1, m.activeOpt(method, scheme))
	opt := cached(&m.serverSets, serverKey{method, scheme, route, service, errType, status}, func() []attribute.KeyValue {
		attrs := []attribute.KeyValue{
			semconv.HTTPRequestMethodKey.String(method),
			semconv.URLScheme(scheme),
			semconv.HTTPResponseStatusCode(status),
		}
		if route != "" {
			attrs = append(attrs, semconv.HTTPRoute(route), attribute.String("meshgate.service", service))
		}
		if errType != "" {
			attrs = append(attrs, semconv.ErrorTypeKey.String(errType))
		}
		return attrs
	})
	m.server.Record(ctx, time.Since(start).Seconds(), opt)
}

// ClientDone records one upstream attempt.
func (m *HTTPMetrics) ClientDone(ctx context.Context, start time.Time, method, service, instance, address string, port, status int, errType string) {
	opt := cached(&m.clientSets, clientKey{method, service, instance, address, errType, port, status}, func() []attribute.KeyValue {
		attrs := []attribute.KeyValue{
			semconv.HTTPRequestMethodKey.String(method),
			semconv.ServerAddress(address),
			semconv.ServerPort(port),
			attribute.String("meshgate.service", service),
			attribute.String("meshgate.instance", instance),
		}
		if status > 0 && status != 499 {
			attrs = append(attrs, semconv.HTTPResponseStatusCode(status))
		}
		if errType != "" {
			attrs = append(attrs, semconv.ErrorTypeKey.String(errType))
		}
		return attrs
	})
	m.client.Record(ctx, time.Since(start).Seconds(), opt)
}

// ErrorType is the error.type of a finished request or attempt: the status
// for 5xx answers, "" otherwise.
func ErrorType(status int) string {
	if status >= 500 {
		return strconv.Itoa(status)
	}
	return ""
}
