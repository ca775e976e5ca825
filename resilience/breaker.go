package resilience

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/meshgate/meshgate/config"
)

// Defaults of config.CircuitBreaker, applied by [NewBreaker] to fields left
// at their zero value.
const (
	// DefaultBreakerConsecutiveFailures trips a breaker.
	DefaultBreakerConsecutiveFailures = 5
	// DefaultBreakerFailureRatio trips a breaker once
	// DefaultBreakerMinRequests were seen in the window.
	DefaultBreakerFailureRatio = 0.5
	// DefaultBreakerMinRequests is the least requests in a window before
	// the failure ratio counts.
	DefaultBreakerMinRequests = 20
	// DefaultBreakerWindow is how long a closed breaker counts before its
	// counts start over.
	DefaultBreakerWindow = 10 * time.Second
	// DefaultBreakerOpenTime is how long a tripped breaker stays open.
	DefaultBreakerOpenTime = 10 * time.Second
	// DefaultBreakerHalfOpenRequests is the number of probes let through
	// half-open.
	DefaultBreakerHalfOpenRequests = 1
)

// Breaker states, as [Breaker.State] reports them and onChange receives
// them.
const (
	// StateClosed: requests go through and their outcomes are counted.
	StateClosed = "closed"
	// StateHalfOpen: a few probes go through; their outcomes close the
	// breaker or open it again.
	StateHalfOpen = "half-open"
	// StateOpen: no request goes through until OpenTime has passed.
	StateOpen = "open"
)

// errAttemptFailed is what a failed attempt reports to gobreaker, which
// counts errors.
var errAttemptFailed = errors.New("resilience: attempt failed")

// Breaker is one instance's circuit breaker, on sony/gobreaker's
// TwoStepCircuitBreaker. Closed, it lets every request through and counts
// outcomes; it trips open after ConsecutiveFailures failures in a row, or
// once at least MinRequests requests were seen in the window and the
// share of failures among them reaches FailureRatio. Open, it lets nothing
// through for OpenTime; then, half-open, it lets HalfOpenRequests probes
// through: if all succeed it closes, and the first failure opens it again.
// A closed breaker's counts start over every Window.
//
// A Breaker is safe for concurrent use. Owners keep it while the instance
// and its service's breaker settings stay.
type Breaker struct {
	name     string
	cb       *gobreaker.TwoStepCircuitBreaker[struct{}] // nil when disabled
	timeout  time.Duration
	onChange func(name, from, to string)

	// Mirrors of the breaker's state for the lock-free Open, written by
	// gobreaker's state-change hook: the state, and when an open breaker
	// turns half-open, in nanoseconds on the monotonic clock since epoch.
	epoch     time.Time
	state     atomic.Int32
	openUntil atomic.Int64

	// State changes waiting to be reported to onChange. gobreaker reports
	// them with its lock held; they are handed to onChange after it was
	// released, in order and one at a time, so that onChange may call
	// back into the Breaker.
	mu       sync.Mutex
	pending  []transition
	flushing bool
}

// transition is one state change.
type transition struct{ from, to string }

// NewBreaker returns a closed breaker called name (which onChange gets,
// and which should say service and instance) for cfg. Zero fields take
// their defaults: 5 consecutive failures, failure ratio 0.5 over at least
// 20 requests, a 10s window, 10s open, 1 half-open probe. With
// cfg.Disabled the breaker always allows and never changes state.
//
// onChange, which may be nil, is called after each state change with the
// states before and after it ("closed", "open", "half-open"), one change
// at a time and in order. It runs without the breaker's locks held, so it
// may call the breaker's methods, on the goroutine whose call caused the
// change (or, when changes come quickly, on one that is reporting earlier
// ones); it should be quick.
func NewBreaker(name string, cfg config.CircuitBreaker, onChange func(name string, from, to string)) *Breaker {
	b := &Breaker{name: name, onChange: onChange, epoch: time.Now()}
	if cfg.Disabled {
		return b
	}
	consecutive := cfg.ConsecutiveFailures
	if consecutive <= 0 {
		consecutive = DefaultBreakerConsecutiveFailures
	}
	ratio := cfg.FailureRatio
	if ratio <= 0 {
		ratio = DefaultBreakerFailureRatio
	}
	minRequests := cfg.MinRequests
	if minRequests <= 0 {
		minRequests = DefaultBreakerMinRequests
	}
	window := cfg.Window.D()
	if window <= 0 {
		window = DefaultBreakerWindow
	}
	b.timeout = cfg.OpenTime.D()
	if b.timeout <= 0 {
		b.timeout = DefaultBreakerOpenTime
	}
	halfOpen := cfg.HalfOpenRequests
	if halfOpen <= 0 {
		halfOpen = DefaultBreakerHalfOpenRequests
	}
	b.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        name,
		MaxRequests: clampUint32(halfOpen),
		Interval:    window,
		Timeout:     b.timeout,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			if int64(c.ConsecutiveFailures) >= int64(consecutive) {
				return true
			}
			return int64(c.Requests) >= int64(minRequests) &&
				float64(c.TotalFailures) >= ratio*float64(c.Requests)
		},
		OnStateChange: b.stateChanged,
		IsExcluded:    func(err error) bool { return errors.Is(err, errExcluded) },
	})
	return b
}

// clampUint32 converts n > 0 to uint32, saturating.
func clampUint32(n int) uint32 {
	return uint32(min(int64(n), int64(^uint32(0))))
}

// stateChanged is gobreaker's OnStateChange hook; gobreaker's lock is
// held.
func (b *Breaker) stateChanged(_ string, from, to gobreaker.State) {
	if to == gobreaker.StateOpen {
		// Taken after gobreaker took its own time, so this is never before
		// the moment gobreaker turns half-open: when Open says false, Allow
		// lets a probe through.
		b.openUntil.Store(int64(time.Since(b.epoch) + b.timeout))
	}
	b.state.Store(int32(to))
	if b.onChange == nil {
		return
	}
	b.mu.Lock()
	b.pending = append(b.pending, transition{from.String(), to.String()})
	b.mu.Unlock()
}

// flush reports pending state changes to onChange, unless another
// goroutine is doing so already (it will report these too). No lock is
// held while onChange runs.
func (b *Breaker) flush() {
	if b.onChange == nil {
		return
	}
	b.mu.Lock()
	if b.flushing || len(b.pending) == 0 {
		b.mu.Unlock()
		return
	}
	b.flushing = true
	for len(b.pending) > 0 {
		batch := b.pending
		b.pending = nil
		b.mu.Unlock()
		for _, t := range batch {
			b.onChange(b.name, t.from, t.to)
		}
		b.mu.Lock()
	}
	b.flushing = false
	b.mu.Unlock()
}

// Outcome is what an attempt tells its breaker.
type Outcome int8

const (
	// Success: the instance answered, below 500.
	Success Outcome = iota
	// Failure: a 5xx answer, a connect failure, a reset or a timeout.
	Failure
	// Excluded: the attempt says nothing about the instance (the client
	// went away first). It is not counted, and frees its half-open slot.
	Excluded
)

// OutcomeOf is Success when success is true, else Failure.
func OutcomeOf(success bool) Outcome {
	if success {
		return Success
	}
	return Failure
}

// errExcluded is what an excluded attempt reports to gobreaker, whose
// IsExcluded leaves it out of the counts.
var errExcluded = errors.New("resilience: attempt excluded")

// noopDone is the done of a disabled breaker.
func noopDone(Outcome) {}

// Allow asks whether a request may go to the instance. When ok, the
// caller must call done exactly once with the request's outcome (a later
// call is ignored); a half-open breaker waits for its probes' outcomes, so
// a missing call keeps it half-open. When not ok, the breaker is open, or
// half-open with all its probes out, and done is nil.
func (b *Breaker) Allow() (done func(Outcome), ok bool) {
	if b.cb == nil {
		return noopDone, true
	}
	report, err := b.cb.Allow()
	b.flush()
	if err != nil {
		return nil, false
	}
	var once atomic.Bool
	return func(o Outcome) {
		if once.Swap(true) {
			return
		}
		switch o {
		case Success:
			report(nil)
		case Excluded:
			report(errExcluded)
		default:
			report(errAttemptFailed)
		}
		b.flush()
	}, true
}

// State is the breaker's state: "closed", "open" or "half-open". An open
// breaker whose OpenTime has passed reports (and becomes) half-open.
func (b *Breaker) State() string {
	if b.cb == nil {
		return StateClosed
	}
	s := b.cb.State()
	b.flush()
	return s.String()
}

// Open reports whether the breaker is open and its OpenTime has not
// passed: the instance takes no requests. It is false when half-open
// (probes may go through; [Breaker.Allow] decides). Open takes no lock, for
// balancers to call on every pick.
func (b *Breaker) Open() bool {
	if b.cb == nil || gobreaker.State(b.state.Load()) != gobreaker.StateOpen {
		return false
	}
	return int64(time.Since(b.epoch)) < b.openUntil.Load()
}

// RetryAfter is how long an open breaker stays open, rounded up to whole
// seconds and at least one second, for a Retry-After header; 0 when the
// breaker is not open.
func (b *Breaker) RetryAfter() time.Duration {
	if b.cb == nil || gobreaker.State(b.state.Load()) != gobreaker.StateOpen {
		return 0
	}
	left := time.Duration(b.openUntil.Load()) - time.Since(b.epoch)
	if left <= 0 {
		return 0
	}
	return (left + time.Second - 1).Truncate(time.Second)
}

// Counts are the breaker's counts in its current state (closed: in the
// current window): requests let through, their failures, and the
// failures since the last success. They start over at every state change.
// A disabled breaker counts nothing.
func (b *Breaker) Counts() (requests, failures, consecutiveFailures uint32) {
	if b.cb == nil {
		return 0, 0, 0
	}
	// State first: it starts a new window when the last one has passed.
	b.cb.State()
	b.flush()
	c := b.cb.Counts()
	return c.Requests, c.TotalFailures, c.ConsecutiveFailures
}

// Name is the breaker's name.
func (b *Breaker) Name() string { return b.name }
