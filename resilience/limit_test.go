package resilience

import (
	"sync"
	"sync/atomic"
	"testing"
)

func TestLimiter(t *testing.T) {
	t.Parallel()
	l := NewLimiter(2)
	if !l.Acquire() || !l.Acquire() {
		t.Fatal("refused within the limit")
	}
	if l.Acquire() {
		t.Fatal("allowed a third request with a limit of 2")
	}
	if got := l.InFlight(); got != 2 {
		t.Errorf("InFlight() = %d, want 2", got)
	}
	l.Release()
	if !l.Acquire() {
		t.Fatal("refused after a release")
	}
	l.Release()
	l.Release()
	if got := l.InFlight(); got != 0 {
		t.Errorf("InFlight() = %d after releasing all, want 0", got)
	}
}

func TestLimiterUnlimited(t *testing.T) {
	t.Parallel()
	for _, limit := range []int{0, -1} {
		l := NewLimiter(limit)
		for range 1000 {
			if !l.Acquire() {
				t.Fatalf("NewLimiter(%d) refused", limit)
			}
		}
		if got := l.InFlight(); got != 1000 {
			t.Errorf("NewLimiter(%d): InFlight() = %d, want 1000", limit, got)
		}
		if got := l.Max(); got != 0 {
			t.Errorf("NewLimiter(%d): Max() = %d, want 0", limit, got)
		}
	}
}

func TestLimiterNil(t *testing.T) {
	t.Parallel()
	var l *Limiter
	if !l.Acquire() {
		t.Error("a nil Limiter refused")
	}
	l.Release()
	if l.InFlight() != 0 || l.Max() != 0 {
		t.Error("a nil Limiter counts")
	}
}

func TestLimiterConcurrent(t *testing.T) {
	t.Parallel()
	const limit = 5
	l := NewLimiter(limit)
	var current, peak, admitted, shed atomic.Int64
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			<-start
			for range 2000 {
				if !l.Acquire() {
					shed.Add(1)
					continue
				}
				admitted.Add(1)
				n := current.Add(1)
				for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
				}
				if f := l.InFlight(); f > limit {
					t.Errorf("InFlight() = %d, over the limit of %d", f, limit)
				}
				current.Add(-1)
				l.Release()
			}
		})
	}
	close(start)
	wg.Wait()
	if p := peak.Load(); p > limit || p < 1 {
		t.Errorf("peak concurrency %d, want 1..%d", p, limit)
	}
	if admitted.Load()+shed.Load() != 32*2000 || admitted.Load() == 0 {
		t.Errorf("admitted %d, shed %d of %d", admitted.Load(), shed.Load(), 32*2000)
	}
	if got := l.InFlight(); got != 0 {
		t.Errorf("InFlight() = %d at the end, want 0", got)
	}
}
