package resilience

import (
	"math"
	"math/bits"
	"sync"
	"time"

	"github.com/meshgate/meshgate/config"
)

// Defaults of config.RetryBudget, applied by [NewBudget] to fields left at
// their zero value.
const (
	// DefaultBudgetRatio is the share of requests that may be retried.
	DefaultBudgetRatio = 0.2
	// DefaultBudgetMinPerSecond is the retries per second always allowed.
	DefaultBudgetMinPerSecond = 10
	// DefaultBudgetWindow is the span over which requests and retries are
	// counted.
	DefaultBudgetWindow = 10 * time.Second
)

// ppm is the fixed-point scale of the budget's ratio: integer arithmetic
// keeps "20 retries per 100 requests at 0.2" exact, where 0.2·35 in
// floating point would let an eighth retry through.
const ppm = 1_000_000

// Budget bounds a service's retries so that they cannot multiply the load
// on it when it fails, as Finagle's and Linkerd's retry budgets do: a retry
// is allowed while the retries of the last window stay below Ratio times
// the requests of the window plus MinPerSecond for each second of it. The
// window slides in one-second steps.
//
// A Budget is per service and meant to be kept across configuration
// reloads by its owner. It is safe for concurrent use; each call holds the
// budget's own lock for a constant amount of work.
type Budget struct {
	now   func() time.Time
	epoch time.Time // seconds are counted from here, on now's (monotonic) clock

	mu       sync.Mutex
	ratio    uint64 // in millionths
	floor    uint64 // MinPerSecond × seconds in the window, in millionths
	buckets  []budgetBucket
	head     int64 // the second counted by the newest bucket
	requests uint64
	retries  uint64
	denied   uint64
}

// budgetBucket counts one second.
type budgetBucket struct {
	requests, retries uint64
}

// BudgetStats is a snapshot of a [Budget].
type BudgetStats struct {
	// Requests counted in the current window.
	Requests uint64 `json:"requests"`
	// Retries allowed in the current window.
	Retries uint64 `json:"retries"`
	// Denied is the number of retries refused since the budget was built.
	Denied uint64 `json:"denied"`
}

// NewBudget returns an empty budget for cfg. Zero fields take their
// defaults: ratio 0.2, 10 retries per second, a 10s window. Because a zero
// field means "default", a Go caller that wants no ratio or no minimum
// passes a negative Ratio or MinPerSecond. A window is a whole number of
// seconds, rounded up.
func NewBudget(cfg config.RetryBudget) *Budget {
	return NewBudgetClock(cfg, time.Now)
}

// NewBudgetClock is [NewBudget] with the clock injected, for tests. now
// must be safe for concurrent use.
func NewBudgetClock(cfg config.RetryBudget, now func() time.Time) *Budget {
	if now == nil {
		now = time.Now
	}
	b := &Budget{now: now, epoch: now()}
	b.configure(cfg)
	return b
}

// Configure applies new settings to the budget. Counts are kept, unless
// the window's length changes: then counting starts over, as with a new
// budget.
func (b *Budget) Configure(cfg config.RetryBudget) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.configure(cfg)
}

// configure applies cfg; b.mu is held or b not yet shared.
func (b *Budget) configure(cfg config.RetryBudget) {
	ratio := cfg.Ratio
	switch {
	case ratio == 0 || math.IsNaN(ratio):
		ratio = DefaultBudgetRatio
	case ratio < 0:
		ratio = 0
	}
	minPerSecond := cfg.MinPerSecond
	switch {
	case minPerSecond == 0:
		minPerSecond = DefaultBudgetMinPerSecond
	case minPerSecond < 0:
		minPerSecond = 0
	}
	window := cfg.Window.D()
	if window <= 0 {
		window = DefaultBudgetWindow
	}
	seconds := int64((window + time.Second - 1) / time.Second)

	// More than a million retries per request is no bound at all; the
	// clamp keeps the products below in range.
	b.ratio = uint64(math.Round(min(ratio, 1e6) * ppm))
	hi, lo := bits.Mul64(uint64(minPerSecond), uint64(seconds)*ppm)
	if hi != 0 {
		lo = math.MaxUint64
	}
	b.floor = lo
	if int64(len(b.buckets)) != seconds {
		b.buckets = make([]budgetBucket, seconds)
		b.head = b.second()
		b.requests, b.retries = 0, 0
	}
}

// Request counts one client request to the service; call it once per
// request, not per try.
func (b *Budget) Request() {
	b.mu.Lock()
	i := b.advance()
	b.buckets[i].requests++
	b.requests++
	b.mu.Unlock()
}

// TryRetry reports whether one more retry fits the budget, and counts it
// when it does: it does when the window's retries are fewer than Ratio
// times its requests plus MinPerSecond times its length in seconds. A
// refusal is counted in [BudgetStats].Denied.
func (b *Budget) TryRetry() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	i := b.advance()
	// retries < ratio·requests + floor, all in millionths and 128 bits.
	rhi, rlo := bits.Mul64(b.retries, ppm)
	ahi, alo := bits.Mul64(b.ratio, b.requests)
	alo, carry := bits.Add64(alo, b.floor, 0)
	ahi += carry
	if rhi > ahi || (rhi == ahi && rlo >= alo) {
		b.denied++
		return false
	}
	b.buckets[i].retries++
	b.retries++
	return true
}

// Stats returns the window's counts and the refusals so far.
func (b *Budget) Stats() BudgetStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.advance()
	return BudgetStats{Requests: b.requests, Retries: b.retries, Denied: b.denied}
}

// second is the current second since the budget's epoch.
func (b *Budget) second() int64 {
	return int64(b.now().Sub(b.epoch) / time.Second)
}

// advance moves the window to the current second, forgetting the seconds
// that left it, and returns the current second's bucket. A clock that
// goes back counts into the newest bucket. Each bucket is cleared at most
// once per second that passes, so the work is bounded by the window's
// length and constant on average. b.mu is held.
func (b *Budget) advance() int {
	n := int64(len(b.buckets))
	now := b.second()
	if now > b.head {
		if now-b.head >= n {
			clear(b.buckets)
			b.requests, b.retries = 0, 0
		} else {
			for s := b.head + 1; s <= now; s++ {
				bk := &b.buckets[mod(s, n)]
				b.requests -= bk.requests
				b.retries -= bk.retries
				*bk = budgetBucket{}
			}
		}
		b.head = now
	}
	return int(mod(b.head, n))
}

// mod is the non-negative remainder of a divided by n > 0.
func mod(a, n int64) int64 {
	return (a%n + n) % n
}
