package resilience

import (
	"sync"
	"testing"
	"time"

	"github.com/meshgate/meshgate/config"
)

// retriesAllowed calls TryRetry until it refuses, at most limit times, and
// returns how many it allowed.
func retriesAllowed(b *Budget, limit int) int {
	n := 0
	for n < limit && b.TryRetry() {
		n++
	}
	return n
}

func TestBudgetRatio(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		ratio    float64
		requests int
		want     int
	}{
		{name: "0.2 of 100", ratio: 0.2, requests: 100, want: 20},
		// 0.2·35 and 0.3·10 in floating point are a hair above 7 and 3.
		{name: "0.2 of 35", ratio: 0.2, requests: 35, want: 7},
		{name: "0.3 of 10", ratio: 0.3, requests: 10, want: 3},
		{name: "0.1 of 10", ratio: 0.1, requests: 10, want: 1},
		{name: "a fraction rounds up: 0.5 of 3", ratio: 0.5, requests: 3, want: 2},
		{name: "0.2 of 1", ratio: 0.2, requests: 1, want: 1},
		{name: "no requests", ratio: 0.2, requests: 0, want: 0},
		{name: "1 of 50", ratio: 1, requests: 50, want: 50},
		{name: "negative ratio means none", ratio: -1, requests: 100, want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clock := newFakeClock()
			// MinPerSecond -1: no floor, so only the ratio counts.
			b := NewBudgetClock(config.RetryBudget{Ratio: tt.ratio, MinPerSecond: -1, Window: config.Duration(10 * time.Second)}, clock.Now)
			for range tt.requests {
				b.Request()
			}
			if got := retriesAllowed(b, 1000); got != tt.want {
				t.Errorf("allowed %d retries, want %d", got, tt.want)
			}
			want := BudgetStats{Requests: uint64(tt.requests), Retries: uint64(tt.want), Denied: 1}
			if got := b.Stats(); got != want {
				t.Errorf("Stats() = %+v, want %+v", got, want)
			}
		})
	}
}

func TestBudgetWindowSlides(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	b := NewBudgetClock(config.RetryBudget{Ratio: 0.2, MinPerSecond: -1, Window: config.Duration(10 * time.Second)}, clock.Now)
	clock.Advance(300 * time.Millisecond) // not on a second's boundary

	for range 100 {
		b.Request()
	}
	if got := retriesAllowed(b, 1000); got != 20 {
		t.Fatalf("second 0: allowed %d retries, want 20", got)
	}

	clock.Advance(5 * time.Second)
	for range 50 {
		b.Request()
	}
	// 150 requests in the window allow 30 retries; 20 are spent.
	if got := retriesAllowed(b, 1000); got != 10 {
		t.Fatalf("second 5: allowed %d retries, want 10", got)
	}
	if got, want := b.Stats(), (BudgetStats{Requests: 150, Retries: 30, Denied: 2}); got != want {
		t.Fatalf("second 5: Stats() = %+v, want %+v", got, want)
	}

	clock.Advance(4*time.Second + 600*time.Millisecond) // 9.9s after the first requests
	if got, want := b.Stats(), (BudgetStats{Requests: 150, Retries: 30, Denied: 2}); got != want {
		t.Fatalf("second 9: Stats() = %+v, want %+v", got, want)
	}

	clock.Advance(100 * time.Millisecond) // second 0 leaves the window
	if got, want := b.Stats(), (BudgetStats{Requests: 50, Retries: 10, Denied: 2}); got != want {
		t.Fatalf("second 10: Stats() = %+v, want %+v", got, want)
	}
	// 50 requests allow 10 retries, all spent in second 5.
	if b.TryRetry() {
		t.Fatal("second 10: retry allowed, want the budget spent")
	}

	clock.Advance(5 * time.Second) // second 5 leaves too
	if got, want := b.Stats(), (BudgetStats{Requests: 0, Retries: 0, Denied: 3}); got != want {
		t.Fatalf("second 15: Stats() = %+v, want %+v", got, want)
	}
	for range 10 {
		b.Request()
	}
	if got := retriesAllowed(b, 1000); got != 2 {
		t.Fatalf("second 15: allowed %d retries, want 2", got)
	}

	clock.Advance(time.Hour) // far beyond the window: everything forgotten
	if got, want := b.Stats(), (BudgetStats{Requests: 0, Retries: 0, Denied: 4}); got != want {
		t.Fatalf("an hour later: Stats() = %+v, want %+v", got, want)
	}
}

func TestBudgetMinPerSecond(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		cfg      config.RetryBudget
		requests int
		want     int
	}{
		{name: "floor alone: 2/s over 5s", cfg: config.RetryBudget{Ratio: -1, MinPerSecond: 2, Window: config.Duration(5 * time.Second)}, want: 10},
		{name: "floor plus ratio", cfg: config.RetryBudget{Ratio: 0.5, MinPerSecond: 1, Window: config.Duration(3 * time.Second)}, requests: 10, want: 8},
		{name: "window rounds up to whole seconds", cfg: config.RetryBudget{Ratio: -1, MinPerSecond: 3, Window: config.Duration(1500 * time.Millisecond)}, want: 6},
		{name: "a window under a second is one second", cfg: config.RetryBudget{Ratio: -1, MinPerSecond: 3, Window: config.Duration(time.Millisecond)}, want: 3},
		{name: "defaults: 10/s over 10s", want: 100},
		{name: "defaults with requests: 0.2 of 50 on top", requests: 50, want: 110},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := NewBudgetClock(tt.cfg, newFakeClock().Now)
			for range tt.requests {
				b.Request()
			}
			if got := retriesAllowed(b, 10000); got != tt.want {
				t.Errorf("allowed %d retries, want %d", got, tt.want)
			}
		})
	}
}

func TestBudgetFloorRenewsAsTheWindowSlides(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	b := NewBudgetClock(config.RetryBudget{Ratio: -1, MinPerSecond: 1, Window: config.Duration(3 * time.Second)}, clock.Now)
	if got := retriesAllowed(b, 100); got != 3 {
		t.Fatalf("allowed %d retries, want 3", got)
	}
	clock.Advance(time.Second)
	if b.TryRetry() {
		t.Fatal("retry allowed while the window still holds 3")
	}
	clock.Advance(2 * time.Second) // the second of the 3 retries leaves
	if got := retriesAllowed(b, 100); got != 3 {
		t.Fatalf("after the window: allowed %d retries, want 3", got)
	}
}

func TestBudgetClockGoingBack(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	b := NewBudgetClock(config.RetryBudget{Ratio: 1, MinPerSecond: -1}, clock.Now)
	clock.Advance(5 * time.Second)
	b.Request()
	clock.Advance(-3 * time.Second)
	b.Request()
	if !b.TryRetry() || !b.TryRetry() || b.TryRetry() {
		t.Error("want exactly 2 retries for 2 requests at ratio 1")
	}
	if got, want := b.Stats(), (BudgetStats{Requests: 2, Retries: 2, Denied: 1}); got != want {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}
}

func TestBudgetConfigure(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	b := NewBudgetClock(config.RetryBudget{Ratio: 0.1, MinPerSecond: -1, Window: config.Duration(10 * time.Second)}, clock.Now)
	for range 100 {
		b.Request()
	}
	if got := retriesAllowed(b, 1000); got != 10 {
		t.Fatalf("allowed %d retries, want 10", got)
	}
	b.Configure(config.RetryBudget{Ratio: 0.3, MinPerSecond: -1, Window: config.Duration(10 * time.Second)})
	if got := retriesAllowed(b, 1000); got != 20 {
		t.Fatalf("after a higher ratio: allowed %d more retries, want 20", got)
	}
	b.Configure(config.RetryBudget{Ratio: 0.3, MinPerSecond: -1, Window: config.Duration(5 * time.Second)})
	if got, want := b.Stats(), (BudgetStats{Requests: 0, Retries: 0, Denied: 2}); got != want {
		t.Fatalf("after a new window: Stats() = %+v, want %+v", got, want)
	}
}

func TestBudgetConcurrent(t *testing.T) {
	t.Parallel()
	b := NewBudget(config.RetryBudget{Ratio: 0.25, MinPerSecond: -1, Window: config.Duration(time.Hour)})
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := 0
	for range 8 {
		wg.Go(func() {
			n := 0
			for range 1000 {
				b.Request()
				if b.TryRetry() {
					n++
				}
				_ = b.Stats()
			}
			mu.Lock()
			allowed += n
			mu.Unlock()
		})
	}
	wg.Wait()
	st := b.Stats()
	if st.Requests != 8000 || st.Retries != uint64(allowed) || st.Retries+st.Denied != 8000 {
		t.Errorf("Stats() = %+v with %d retries allowed, want 8000 requests and every retry counted", st, allowed)
	}
	if st.Retries > 2000 {
		t.Errorf("%d retries allowed for 8000 requests at ratio 0.25", st.Retries)
	}
}
