package telemetry

import (
	"context"
	"fmt"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Metric names of the policy steps.
const (
	MetricPolicyDecisions = "meshgate.policy.decisions"
	MetricPolicyReloads   = "meshgate.policy.reloads"
)

// PolicyObserver counts the decisions of policy steps and the outcomes of
// policy loads. It implements policies.Observer and
// policies.ReloadObserver.
type PolicyObserver struct {
	decisions metric.Int64Counter
	reloads   metric.Int64Counter
	// sets caches the attribute set of each (policy, step, decision), so
	// that counting allocates nothing once a combination was seen.
	sets sync.Map // decisionKey → metric.AddOption
}

type decisionKey struct{ policy, step, decision string }

// NewPolicyObserver creates the policy instruments on meter.
func NewPolicyObserver(meter metric.Meter) (*PolicyObserver, error) {
	decisions, err := meter.Int64Counter(MetricPolicyDecisions,
		metric.WithDescription("Decisions of policy steps, by policy, step (ip, cors, max_body_size, authn, authz, rate_limit, transform) and decision."),
		metric.WithUnit("{decision}"))
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", MetricPolicyDecisions, err)
	}
	reloads, err := meter.Int64Counter(MetricPolicyReloads,
		metric.WithDescription("Loads of the policy files, by result (success, failure: the previous policies stayed in force)."),
		metric.WithUnit("{reload}"))
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", MetricPolicyReloads, err)
	}
	return &PolicyObserver{decisions: decisions, reloads: reloads}, nil
}

// Decision counts one decision.
func (o *PolicyObserver) Decision(ctx context.Context, policy, step, decision string) {
	k := decisionKey{policy, step, decision}
	opt, ok := o.sets.Load(k)
	if !ok {
		opt, _ = o.sets.LoadOrStore(k, metric.WithAttributeSet(attribute.NewSet(
			attribute.String("meshgate.policy.name", policy),
			attribute.String("meshgate.policy.step", step),
			attribute.String("meshgate.policy.decision", decision))))
	}
	o.decisions.Add(ctx, 1, opt.(metric.AddOption))
}

// Reloaded counts one load of the policy files.
func (o *PolicyObserver) Reloaded(ok bool) {
	result := "success"
	if !ok {
		result = "failure"
	}
	o.reloads.Add(context.Background(), 1, metric.WithAttributes(attribute.String("meshgate.result", result)))
}
