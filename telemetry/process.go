package telemetry

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Process metric names.
const (
	MetricConfigReloads = "meshgate.config.reloads"
	MetricSpansDropped  = "meshgate.telemetry.spans_dropped"
)

// ProcessState is what the process metrics read at each collection.
type ProcessState struct {
	// Reloads returns the configuration reloads tried and those that
	// failed (the last good configuration stayed in force).
	Reloads func() (total, failed uint64)
	// SpansDropped returns the spans that could not be exported.
	SpansDropped func() uint64
}

// RegisterProcess registers the configuration reload counters (by
// meshgate.result: success or failure) and the dropped-span counter.
func RegisterProcess(meter metric.Meter, st ProcessState) error {
	reloads, err := meter.Int64ObservableCounter(MetricConfigReloads,
		metric.WithDescription("Configuration reloads, by result; a failed one keeps the last good configuration."),
		metric.WithUnit("{reload}"))
	if err != nil {
		return fmt.Errorf("creating %s: %w", MetricConfigReloads, err)
	}
	dropped, err := meter.Int64ObservableCounter(MetricSpansDropped,
		metric.WithDescription("Spans not exported: the export queue was full or the collector failed."),
		metric.WithUnit("{span}"))
	if err != nil {
		return fmt.Errorf("creating %s: %w", MetricSpansDropped, err)
	}
	success := metric.WithAttributes(attribute.String("meshgate.result", "success"))
	failure := metric.WithAttributes(attribute.String("meshgate.result", "failure"))
	_, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		if st.Reloads != nil {
			total, failed := st.Reloads()
			o.ObserveInt64(reloads, int64(total-failed), success)
			o.ObserveInt64(reloads, int64(failed), failure)
		}
		if st.SpansDropped != nil {
			o.ObserveInt64(dropped, int64(st.SpansDropped()))
		}
		return nil
	}, reloads, dropped)
	if err != nil {
		return fmt.Errorf("registering the process metrics callback: %w", err)
	}
	return nil
}
