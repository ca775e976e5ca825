package resilience

import (
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshgate/meshgate/config"
)

// record sends one request through b with the given outcome; it fails the
// test when b refuses it.
func record(t *testing.T, b *Breaker, success bool) {
	t.Helper()
	done, ok := b.Allow()
	if !ok {
		t.Fatalf("Allow() refused in state %s", b.State())
	}
	done(OutcomeOf(success))
}

// transitions collects a breaker's state changes.
type transitions struct {
	mu   sync.Mutex
	name string
	seen []string
}

func (tr *transitions) onChange(name, from, to string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.name = name
	tr.seen = append(tr.seen, from+"->"+to)
}

func (tr *transitions) get() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return slices.Clone(tr.seen)
}

// waitHalfOpen waits, at most a second, for an open breaker's OpenTime to
// pass, as a balancer sees it.
func waitHalfOpen(t *testing.T, b *Breaker) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for b.Open() {
		if time.Now().After(deadline) {
			t.Fatal("breaker still open after a second")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestBreakerTripsOnConsecutiveFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     config.CircuitBreaker
		trip    int
		openFor time.Duration
	}{
		{name: "configured", cfg: config.CircuitBreaker{ConsecutiveFailures: 3, OpenTime: config.Duration(time.Hour)}, trip: 3, openFor: time.Hour},
		{name: "defaults: 5 failures, 10s", trip: 5, openFor: 10 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var tr transitions
			b := NewBreaker("svc/a", tt.cfg, tr.onChange)
			for i := 1; i < tt.trip; i++ {
				record(t, b, false)
			}
			if s := b.State(); s != StateClosed || b.Open() {
				t.Fatalf("after %d failures: state %s, Open %v; want closed", tt.trip-1, s, b.Open())
			}
			if req, fail, consec := b.Counts(); req != uint32(tt.trip-1) || fail != uint32(tt.trip-1) || consec != uint32(tt.trip-1) {
				t.Errorf("Counts() = %d, %d, %d; want %d each", req, fail, consec, tt.trip-1)
			}
			if got := b.RetryAfter(); got != 0 {
				t.Errorf("closed: RetryAfter() = %v, want 0", got)
			}
			record(t, b, false)
			if s := b.State(); s != StateOpen || !b.Open() {
				t.Fatalf("after %d failures: state %s, Open %v; want open", tt.trip, s, b.Open())
			}
			if done, ok := b.Allow(); ok || done != nil {
				t.Error("open: Allow() let a request through")
			}
			if got := b.RetryAfter(); got != tt.openFor {
				t.Errorf("RetryAfter() = %v, want %v (rounded up to whole seconds)", got, tt.openFor)
			}
			if got, want := tr.get(), []string{"closed->open"}; !slices.Equal(got, want) || tr.name != "svc/a" {
				t.Errorf("onChange saw %q for %q, want %q for svc/a", got, tr.name, want)
			}
		})
	}
}

func TestBreakerSuccessResetsConsecutiveFailures(t *testing.T) {
	t.Parallel()
	b := NewBreaker("svc/a", config.CircuitBreaker{ConsecutiveFailures: 3}, nil)
	for _, ok := range []bool{false, false, true, false, false, true, false, false} {
		record(t, b, ok)
	}
	if s := b.State(); s != StateClosed {
		t.Fatalf("state %s, want closed: never 3 failures in a row", s)
	}
	if req, fail, consec := b.Counts(); req != 8 || fail != 6 || consec != 2 {
		t.Errorf("Counts() = %d, %d, %d; want 8, 6, 2", req, fail, consec)
	}
}

func TestBreakerFailureRatio(t *testing.T) {
	t.Parallel()
	cfg := config.CircuitBreaker{ConsecutiveFailures: 100, MinRequests: 10, FailureRatio: 0.5, OpenTime: config.Duration(time.Hour)}
	tests := []struct {
		name     string
		outcomes []bool // true: success
		want     string
	}{
		{name: "half failed after 10 requests trips", outcomes: []bool{true, false, true, false, true, false, true, false, true, false}, want: StateOpen},
		{name: "half failed after 9 requests does not", outcomes: []bool{false, true, false, true, false, true, false, true, true}, want: StateClosed},
		{name: "4 of 10 failed does not", outcomes: []bool{true, false, true, false, true, false, true, false, true, true}, want: StateClosed},
		{name: "failures past the minimum trip", outcomes: []bool{true, true, true, true, true, true, true, false, false, false, false, false, false, false}, want: StateOpen},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := NewBreaker("svc/a", cfg, nil)
			for _, ok := range tt.outcomes {
				record(t, b, ok)
			}
			if s := b.State(); s != tt.want {
				t.Errorf("state %s, want %s", s, tt.want)
			}
		})
	}
}

func TestBreakerRatioDefaults(t *testing.T) {
	t.Parallel()
	// Defaults: ratio 0.5 over at least 20 requests (and 5 in a row).
	b := NewBreaker("svc/a", config.CircuitBreaker{}, nil)
	for i := range 19 {
		record(t, b, i%2 == 0) // 9 failures among 19
	}
	if s := b.State(); s != StateClosed {
		t.Fatalf("after 19 requests: state %s, want closed", s)
	}
	record(t, b, false) // 10 of 20
	if s := b.State(); s != StateOpen {
		t.Fatalf("after 20 requests, 10 failed: state %s, want open", s)
	}
}

func TestBreakerHalfOpen(t *testing.T) {
	t.Parallel()
	const openTime = 50 * time.Millisecond
	cfg := config.CircuitBreaker{ConsecutiveFailures: 2, OpenTime: config.Duration(openTime), HalfOpenRequests: 2}

	t.Run("probes that succeed close it", func(t *testing.T) {
		t.Parallel()
		var tr transitions
		b := NewBreaker("svc/a", cfg, tr.onChange)
		record(t, b, false)
		start := time.Now()
		record(t, b, false)
		open, retryAfter := b.Open(), b.RetryAfter()
		// gobreaker reads the real clock: check only while OpenTime
		// cannot have passed, so that a slow machine does not fail.
		if time.Since(start) < openTime && (!open || retryAfter != time.Second) {
			t.Fatalf("after 2 failures: Open %v, RetryAfter %v; want open for 1s (rounded up)", open, retryAfter)
		}
		waitHalfOpen(t, b)
		if got := b.RetryAfter(); got != 0 {
			t.Errorf("after OpenTime: RetryAfter() = %v, want 0", got)
		}
		if s := b.State(); s != StateHalfOpen || b.Open() {
			t.Fatalf("state %s, Open %v; want half-open, not Open", s, b.Open())
		}
		done1, ok1 := b.Allow()
		done2, ok2 := b.Allow()
		if !ok1 || !ok2 {
			t.Fatal("half-open refused one of its 2 probes")
		}
		if _, ok := b.Allow(); ok {
			t.Error("half-open let a third request through with 2 probes out")
		}
		if b.Open() {
			t.Error("Open() with probes out, want false: half-open")
		}
		done1(OutcomeOf(true))
		if s := b.State(); s != StateHalfOpen {
			t.Errorf("after 1 of 2 probes: state %s, want half-open", s)
		}
		done2(OutcomeOf(true))
		if s := b.State(); s != StateClosed {
			t.Errorf("after 2 successful probes: state %s, want closed", s)
		}
		want := []string{"closed->open", "open->half-open", "half-open->closed"}
		if got := tr.get(); !slices.Equal(got, want) {
			t.Errorf("onChange saw %q, want %q", got, want)
		}
	})

	t.Run("a probe that fails opens it again", func(t *testing.T) {
		t.Parallel()
		var tr transitions
		b := NewBreaker("svc/a", cfg, tr.onChange)
		record(t, b, false)
		record(t, b, false)
		waitHalfOpen(t, b)
		start := time.Now()
		record(t, b, false)
		state, open := b.State(), b.Open()
		_, allowed := b.Allow()
		if time.Since(start) < openTime && (state != StateOpen || !open || allowed) {
			t.Fatalf("after a failed probe: state %s, Open %v, Allow %v; want open, refusing", state, open, allowed)
		}
		want := []string{"closed->open", "open->half-open", "half-open->open"}
		if got := tr.get(); !slices.Equal(got, want) {
			t.Errorf("onChange saw %q, want %q", got, want)
		}
		// And it gets another chance after OpenTime.
		waitHalfOpen(t, b)
		record(t, b, true)
		record(t, b, true)
		if s := b.State(); s != StateClosed {
			t.Errorf("after 2 successful probes: state %s, want closed", s)
		}
	})
}

func TestBreakerDoneCountsOnce(t *testing.T) {
	t.Parallel()
	b := NewBreaker("svc/a", config.CircuitBreaker{ConsecutiveFailures: 2}, nil)
	done, ok := b.Allow()
	if !ok {
		t.Fatal("Allow() refused")
	}
	done(OutcomeOf(false))
	done(OutcomeOf(false))
	if s := b.State(); s != StateClosed {
		t.Errorf("state %s after one failure reported twice, want closed", s)
	}
	if _, fail, _ := b.Counts(); fail != 1 {
		t.Errorf("%d failures counted, want 1", fail)
	}
}

func TestBreakerWindowClearsCounts(t *testing.T) {
	t.Parallel()
	b := NewBreaker("svc/a", config.CircuitBreaker{ConsecutiveFailures: 3, Window: config.Duration(30 * time.Millisecond)}, nil)
	record(t, b, false)
	record(t, b, false)
	time.Sleep(60 * time.Millisecond)
	if req, fail, consec := b.Counts(); req != 0 || fail != 0 || consec != 0 {
		t.Fatalf("after the window: Counts() = %d, %d, %d; want zeros", req, fail, consec)
	}
	record(t, b, false)
	if s := b.State(); s != StateClosed {
		t.Errorf("state %s, want closed: the window forgot the first 2 failures", s)
	}
}

func TestBreakerDisabled(t *testing.T) {
	t.Parallel()
	var tr transitions
	b := NewBreaker("svc/a", config.CircuitBreaker{Disabled: true, ConsecutiveFailures: 1}, tr.onChange)
	for range 1000 {
		record(t, b, false)
	}
	if s := b.State(); s != StateClosed || b.Open() || b.RetryAfter() != 0 {
		t.Errorf("disabled: state %s, Open %v, RetryAfter %v; want closed, false, 0", s, b.Open(), b.RetryAfter())
	}
	if req, fail, consec := b.Counts(); req+fail+consec != 0 {
		t.Errorf("disabled: Counts() = %d, %d, %d; want zeros", req, fail, consec)
	}
	if got := tr.get(); len(got) != 0 {
		t.Errorf("disabled: onChange saw %q", got)
	}
}

// TestBreakerOnChangeMayCallBack checks that onChange runs without the
// breaker's locks: it may ask the breaker for its state.
func TestBreakerOnChangeMayCallBack(t *testing.T) {
	t.Parallel()
	var b *Breaker
	var states []string
	b = NewBreaker("svc/a", config.CircuitBreaker{ConsecutiveFailures: 1, OpenTime: config.Duration(time.Hour)}, func(_, _, to string) {
		req, _, _ := b.Counts()
		states = append(states, to+"="+b.State()+"/"+string(rune('0'+req)))
	})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		done, _ := b.Allow()
		done(OutcomeOf(false))
	}()
	select {
	case <-finished:
	case <-time.After(5 * time.Second):
		t.Fatal("onChange calling back into the breaker deadlocked")
	}
	if want := []string{"open=open/0"}; !slices.Equal(states, want) {
		t.Errorf("onChange saw %q, want %q", states, want)
	}
}

func TestBreakerConcurrent(t *testing.T) {
	t.Parallel()
	var inCallback, overlaps, changes atomic.Int32
	b := NewBreaker("svc/a", config.CircuitBreaker{ConsecutiveFailures: 3, OpenTime: config.Duration(time.Millisecond)},
		func(_, _, _ string) {
			if inCallback.Add(1) > 1 {
				overlaps.Add(1)
			}
			changes.Add(1)
			inCallback.Add(-1)
		})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				_ = b.Open()
				_ = b.RetryAfter()
				if done, ok := b.Allow(); ok {
					done(OutcomeOf((i+g)%3 == 0))
				}
			}
		})
	}
	wg.Wait()
	if n := overlaps.Load(); n != 0 {
		t.Errorf("onChange ran concurrently with itself %d times", n)
	}
	if changes.Load() == 0 {
		t.Error("no state change in 4000 requests failing two in three")
	}
}
