package resilience

// EventKind names a kind of resilience decision.
type EventKind string

// The kinds of [Event].
const (
	// EventRetry: a failed attempt is tried again; Reason says why (a
	// status such as "503", or "connect", "reset", "timeout").
	EventRetry EventKind = "retry"
	// EventBudgetDenied: a retry was refused because the service's retry
	// budget is spent; the upstream's answer went to the client.
	EventBudgetDenied EventKind = "budget_denied"
	// EventBreakerState: an instance's circuit breaker changed state, From
	// and To being "closed", "open" or "half-open".
	EventBreakerState EventKind = "breaker_state"
	// EventEjection: an instance was ejected by outlier detection.
	EventEjection EventKind = "ejection"
	// EventLoadShed: a request was refused because a concurrency limit
	// was reached; Reason says which ("listener" or "service").
	EventLoadShed EventKind = "load_shed"
)

// Event is a resilience decision, for logs, metrics and traces.
type Event struct {
	// Kind says what was decided.
	Kind EventKind `json:"kind"`
	// Service is the upstream service's name; empty for a listener's load
	// shedding.
	Service string `json:"service,omitempty"`
	// Instance is the instance's ID, when the decision concerns one.
	Instance string `json:"instance,omitempty"`
	// Reason explains the decision in a word or two.
	Reason string `json:"reason,omitempty"`
	// From and To are the states before and after an EventBreakerState.
	From string `json:"from,omitempty"`
	To   string `json:"to,omitempty"`
}

// Observer receives events as they happen, on the goroutine that made the
// decision, so it must be quick and safe for concurrent use. A nil
// Observer ignores them.
type Observer func(Event)

// Observe passes e to o, if o is not nil.
func (o Observer) Observe(e Event) {
	if o != nil {
		o(e)
	}
}
