package telemetry

import (
	"context"
	"fmt"
	"time"

	"github.com/meshgate/meshgate/discovery"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Discovery metric names.
const (
	MetricDiscoveryInstances     = "meshgate.discovery.instances"
	MetricDiscoverySnapshotAge   = "meshgate.discovery.snapshot.age"
	MetricDiscoveryStaleness     = "meshgate.discovery.consul.staleness"
	MetricDiscoveryConsulErrors  = "meshgate.discovery.consul.errors"
	MetricDiscoveryConsulQueries = "meshgate.discovery.consul.requests"
)

// DiscoveryState is what the discovery metrics read at each collection.
type DiscoveryState struct {
	// Store holds the snapshot in use.
	Store *discovery.Store
	// Consul returns the Consul source's status, or nil when the static
	// catalog is the source. Called at collection time.
	Consul func() *discovery.ConsulStatus
}

// RegisterDiscovery registers the discovery instruments on meter: instances
// per service and health, the age of the snapshot in use, and for Consul
// the time since it last answered, its failed queries and all queries.
func RegisterDiscovery(meter metric.Meter, st DiscoveryState) error {
	instances, err := meter.Int64ObservableGauge(MetricDiscoveryInstances,
		metric.WithDescription("Instances per service in the discovery snapshot in use, by health."),
		metric.WithUnit("{instance}"))
	if err != nil {
		return fmt.Errorf("creating %s: %w", MetricDiscoveryInstances, err)
	}
	age, err := meter.Float64ObservableGauge(MetricDiscoverySnapshotAge,
		metric.WithDescription("Time since the discovery snapshot in use was built."),
		metric.WithUnit("s"))
	if err != nil {
		return fmt.Errorf("creating %s: %w", MetricDiscoverySnapshotAge, err)
	}
	stale, err := meter.Float64ObservableGauge(MetricDiscoveryStaleness,
		metric.WithDescription("Time since Consul last answered; grows while the last known snapshot is served."),
		metric.WithUnit("s"))
	if err != nil {
		return fmt.Errorf("creating %s: %w", MetricDiscoveryStaleness, err)
	}
	errs, err := meter.Int64ObservableCounter(MetricDiscoveryConsulErrors,
		metric.WithDescription("Failed Consul queries."),
		metric.WithUnit("{error}"))
	if err != nil {
		return fmt.Errorf("creating %s: %w", MetricDiscoveryConsulErrors, err)
	}
	queries, err := meter.Int64ObservableCounter(MetricDiscoveryConsulQueries,
		metric.WithDescription("HTTP requests made to Consul."),
		metric.WithUnit("{request}"))
	if err != nil {
		return fmt.Errorf("creating %s: %w", MetricDiscoveryConsulQueries, err)
	}
	_, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		if snap := st.Store.Load(); snap != nil {
			o.ObserveFloat64(age, time.Since(snap.Created).Seconds())
			for name, svc := range snap.Services {
				counts := map[discovery.Health]int64{}
				for _, in := range svc.Instances {
					counts[in.Health]++
				}
				for _, h := range []discovery.Health{discovery.Passing, discovery.Warning, discovery.Critical} {
					o.ObserveInt64(instances, counts[h], metric.WithAttributes(
						attribute.String("meshgate.service", name), attribute.String("meshgate.health", string(h))))
				}
			}
		}
		if st.Consul == nil {
			return nil
		}
		if cs := st.Consul(); cs != nil {
			o.ObserveInt64(errs, int64(cs.Errors))
			o.ObserveInt64(queries, int64(cs.Requests))
			if !cs.LastContact.IsZero() {
				o.ObserveFloat64(stale, cs.StalenessSeconds)
			}
		}
		return nil
	}, instances, age, stale, errs, queries)
	if err != nil {
		return fmt.Errorf("registering the discovery metrics callback: %w", err)
	}
	return nil
}
