package telemetry

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.39.0"
)

// Metric names of aggregate routes.
const (
	MetricAggregateRequests = "meshgate.aggregate.requests"
	MetricAggregateParts    = "meshgate.aggregate.parts"
)

// Results of an aggregate request (meshgate.aggregate.result on
// meshgate.aggregate.requests).
const (
	AggregateComplete = "complete" // every part succeeded
	AggregatePartial  = "partial"  // an optional part failed or was skipped
	AggregateFailed   = "failed"   // a required part failed: 502
)

// Results of a part (meshgate.aggregate.result on meshgate.aggregate.parts).
const (
	PartOK      = "ok"
	PartFailed  = "failed"
	PartSkipped = "skipped" // a part it needs failed
)

// AggregateMetrics counts the requests of aggregate routes by result, and
// their parts by result.
type AggregateMetrics struct {
	requests metric.Int64Counter
	parts    metric.Int64Counter
}

// NewAggregateMetrics creates the aggregate instruments on meter.
func NewAggregateMetrics(meter metric.Meter) (*AggregateMetrics, error) {
	requests, err := meter.Int64Counter(MetricAggregateRequests,
		metric.WithDescription("Requests of aggregate routes, by route and result (complete, partial: an optional part is missing, failed: a required part failed)."),
		metric.WithUnit("{request}"))
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", MetricAggregateRequests, err)
	}
	parts, err := meter.Int64Counter(MetricAggregateParts,
		metric.WithDescription("Parts of aggregate requests, by route, part and result (ok, failed, skipped: a part it needs failed)."),
		metric.WithUnit("{part}"))
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", MetricAggregateParts, err)
	}
	return &AggregateMetrics{requests: requests, parts: parts}, nil
}

// Request counts one request of the aggregate route whose http.route is
// route, with its result.
func (m *AggregateMetrics) Request(ctx context.Context, route, result string) {
	m.requests.Add(ctx, 1, metric.WithAttributes(semconv.HTTPRoute(route),
		attribute.String("meshgate.aggregate.result", result)))
}

// Part counts one part of an aggregate request, with its result.
func (m *AggregateMetrics) Part(ctx context.Context, route, part, result string) {
	m.parts.Add(ctx, 1, metric.WithAttributes(semconv.HTTPRoute(route),
		attribute.String("meshgate.aggregate.part", part),
		attribute.String("meshgate.aggregate.result", result)))
}
