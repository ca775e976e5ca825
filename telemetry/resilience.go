package telemetry

import (
	"context"
	"fmt"

	"github.com/meshgate/meshgate/resilience"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Resilience metric names.
const (
	MetricRetries            = "meshgate.retries"
	MetricRetryBudgetDenied  = "meshgate.retry_budget.exhausted"
	MetricBreakerTransitions = "meshgate.circuit_breaker.transitions"
	MetricEjections          = "meshgate.outlier.ejections"
	MetricLoadShed           = "meshgate.load_shed"
)

// ResilienceObserver returns an Observer that counts every resilience
// decision on meter, with the service, and the instance where the decision
// concerns one (a bounded set: instances come from discovery).
func ResilienceObserver(meter metric.Meter) (resilience.Observer, error) {
	counter := func(name, desc, unit string) (metric.Int64Counter, error) {
		c, err := meter.Int64Counter(name, metric.WithDescription(desc), metric.WithUnit(unit))
		if err != nil {
			return nil, fmt.Errorf("creating %s: %w", name, err)
		}
		return c, nil
	}
	retries, err := counter(MetricRetries, "Attempts retried, by reason (a status, connect or timeout).", "{retry}")
	if err != nil {
		return nil, err
	}
	denied, err := counter(MetricRetryBudgetDenied, "Retries refused because the service's retry budget was spent.", "{retry}")
	if err != nil {
		return nil, err
	}
	transitions, err := counter(MetricBreakerTransitions, "Circuit breaker state changes, by the state entered.", "{transition}")
	if err != nil {
		return nil, err
	}
	ejections, err := counter(MetricEjections, "Instances ejected by outlier detection.", "{ejection}")
	if err != nil {
		return nil, err
	}
	shed, err := counter(MetricLoadShed, "Requests refused by a concurrency limit.", "{request}")
	if err != nil {
		return nil, err
	}
	return func(e resilience.Event) {
		ctx := context.Background()
		svc := attribute.String("meshgate.service", e.Service)
		switch e.Kind {
		case resilience.EventRetry:
			retries.Add(ctx, 1, metric.WithAttributes(svc, attribute.String("meshgate.reason", e.Reason)))
		case resilience.EventBudgetDenied:
			denied.Add(ctx, 1, metric.WithAttributes(svc))
		case resilience.EventBreakerState:
			transitions.Add(ctx, 1, metric.WithAttributes(svc, attribute.String("meshgate.instance", e.Instance), attribute.String("meshgate.state", e.To)))
		case resilience.EventEjection:
			ejections.Add(ctx, 1, metric.WithAttributes(svc, attribute.String("meshgate.instance", e.Instance)))
		case resilience.EventLoadShed:
			shed.Add(ctx, 1, metric.WithAttributes(svc, attribute.String("meshgate.limit", e.Reason)))
		}
	}, nil
}
