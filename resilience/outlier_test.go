package resilience

import (
	"sync"
	"testing"
	"time"

	"github.com/meshgate/meshgate/config"
)

// fail records n failures of o at now and returns how many ejected it.
func fail(g *OutlierGroup, o *Outlier, n, instances int, now time.Time) int {
	ejections := 0
	for range n {
		if g.Record(o, true, instances, now) {
			ejections++
		}
	}
	return ejections
}

func TestOutlierEjectsAfterConsecutiveFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		cfg      config.OutlierDetection
		failures int
		duration time.Duration
	}{
		{name: "configured", cfg: config.OutlierDetection{ConsecutiveFailures: 3, BaseEjectionTime: config.Duration(10 * time.Second)}, failures: 3, duration: 10 * time.Second},
		{name: "defaults: 5 failures, 30s", failures: 5, duration: 30 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			now := newFakeClock().Now()
			g := NewOutlierGroup(tt.cfg)
			o := g.NewOutlier()
			if n := fail(g, o, tt.failures-1, 10, now); n != 0 || o.Ejected(now) {
				t.Fatalf("ejected after %d failures", tt.failures-1)
			}
			if got, want := o.Status(now), (OutlierStatus{ConsecutiveFailures: tt.failures - 1}); got != want {
				t.Errorf("Status() = %+v, want %+v", got, want)
			}
			if !g.Record(o, true, 10, now) {
				t.Fatalf("failure %d did not eject", tt.failures)
			}
			until := now.Add(tt.duration)
			if got, want := o.Status(now), (OutlierStatus{Ejected: true, Until: until, Ejections: 1}); !got.Until.Equal(want.Until) || got.Ejected != want.Ejected || got.Ejections != want.Ejections || got.ConsecutiveFailures != 0 {
				t.Errorf("Status() = %+v, want %+v", got, want)
			}
			if !o.Ejected(until.Add(-time.Nanosecond)) {
				t.Error("not ejected just before the ejection ends")
			}
			if o.Ejected(until) {
				t.Error("still ejected when the ejection ends")
			}
			if st := o.Status(until); st.Ejected || !st.Until.IsZero() || st.Ejections != 1 {
				t.Errorf("after the ejection: Status() = %+v, want not ejected with 1 ejection", st)
			}
		})
	}
}

func TestOutlierSuccessResets(t *testing.T) {
	t.Parallel()
	now := newFakeClock().Now()
	g := NewOutlierGroup(config.OutlierDetection{ConsecutiveFailures: 3})
	o := g.NewOutlier()
	for i, failure := range []bool{true, true, false, true, true, false, true, true} {
		if g.Record(o, failure, 10, now) {
			t.Fatalf("outcome %d ejected, never 3 failures in a row", i)
		}
	}
	if st := o.Status(now); st.ConsecutiveFailures != 2 || st.Ejected {
		t.Errorf("Status() = %+v, want 2 consecutive failures, not ejected", st)
	}
}

func TestOutlierEjectionTimeGrowsAndCaps(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	g := NewOutlierGroup(config.OutlierDetection{
		ConsecutiveFailures: 1,
		BaseEjectionTime:    config.Duration(10 * time.Second),
		MaxEjectionTime:     config.Duration(25 * time.Second),
	})
	o := g.NewOutlier()
	for i, want := range []time.Duration{10 * time.Second, 20 * time.Second, 25 * time.Second, 25 * time.Second} {
		now := clock.Now()
		if !g.Record(o, true, 10, now) {
			t.Fatalf("ejection %d: failure did not eject", i+1)
		}
		st := o.Status(now)
		if got := st.Until.Sub(now); got != want || st.Ejections != i+1 {
			t.Errorf("ejection %d: lasts %v (ejections %d), want %v", i+1, got, st.Ejections, want)
		}
		clock.Advance(want)
		if o.Ejected(clock.Now()) {
			t.Fatalf("ejection %d: still ejected after %v", i+1, want)
		}
	}
}

func TestEjectionTime(t *testing.T) {
	t.Parallel()
	tests := []struct {
		n    int
		want time.Duration
	}{
		{0, 0}, {1, 30 * time.Second}, {2, time.Minute}, {10, 5 * time.Minute}, {11, 5 * time.Minute}, {1 << 40, 5 * time.Minute},
	}
	for _, tt := range tests {
		if got := ejectionTime(30*time.Second, 5*time.Minute, tt.n); got != tt.want {
			t.Errorf("ejectionTime(30s, 5m, %d) = %v, want %v", tt.n, got, tt.want)
		}
	}
}

func TestOutlierMaxEjectionPercent(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		percent   int
		instances int
		want      int // ejected when every instance fails
	}{
		{name: "4 instances at 50%", percent: 50, instances: 4, want: 2},
		{name: "3 instances at 50% round down", percent: 50, instances: 3, want: 1},
		{name: "default 50%", percent: 0, instances: 6, want: 3},
		{name: "1 instance at 50% stays", percent: 50, instances: 1, want: 0},
		{name: "1 instance at 99% stays", percent: 99, instances: 1, want: 0},
		{name: "1 instance at 100% is ejected", percent: 100, instances: 1, want: 1},
		{name: "2 instances at 99%: one stays", percent: 99, instances: 2, want: 1},
		{name: "5 instances at 100%", percent: 100, instances: 5, want: 5},
		{name: "over 100% is 100%", percent: 150, instances: 3, want: 3},
		{name: "negative: never", percent: -1, instances: 10, want: 0},
		{name: "10 instances at 10%", percent: 10, instances: 10, want: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			now := newFakeClock().Now()
			g := NewOutlierGroup(config.OutlierDetection{ConsecutiveFailures: 2, MaxEjectionPercent: tt.percent})
			outliers := make([]*Outlier, tt.instances)
			for i := range outliers {
				outliers[i] = g.NewOutlier()
			}
			// Several rounds: a refused ejection is tried again at the next failure.
			for range 5 {
				for _, o := range outliers {
					g.Record(o, true, tt.instances, now)
				}
			}
			ejected := 0
			for _, o := range outliers {
				if o.Ejected(now) {
					ejected++
				}
			}
			if ejected != tt.want {
				t.Errorf("%d of %d ejected, want %d", ejected, tt.instances, tt.want)
			}
		})
	}
}

func TestOutlierQuotaFreesWhenEjectionsEnd(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	g := NewOutlierGroup(config.OutlierDetection{
		ConsecutiveFailures: 1,
		BaseEjectionTime:    config.Duration(10 * time.Second),
		MaxEjectionPercent:  50,
	})
	a, b, c, d := g.NewOutlier(), g.NewOutlier(), g.NewOutlier(), g.NewOutlier()
	now := clock.Now()
	if !g.Record(a, true, 4, now) || !g.Record(b, true, 4, now) {
		t.Fatal("the first 2 of 4 were not ejected")
	}
	if g.Record(c, true, 4, now) {
		t.Fatal("a third of 4 was ejected at 50%")
	}
	clock.Advance(5 * time.Second)
	if got := fail(g, c, 3, 4, clock.Now()); got != 0 {
		t.Fatal("a third of 4 was ejected while 2 still are")
	}
	clock.Advance(5 * time.Second) // a's and b's ejections end
	if !g.Record(c, true, 4, clock.Now()) || !g.Record(d, true, 4, clock.Now()) {
		t.Error("c and d were not ejected once a and b came back")
	}
	if g.Record(a, true, 4, clock.Now()) {
		t.Error("a third of 4 was ejected at 50%")
	}
	// Removing an ejected instance frees its place at once: c leaves, a
	// new instance takes its place, and a may be ejected.
	g.Remove(c)
	if c.Ejected(clock.Now()) {
		t.Error("removed instance still ejected")
	}
	if !g.Record(a, true, 4, clock.Now()) {
		t.Error("a was not ejected after c left")
	}
}

func TestOutlierOutcomesWhileEjectedAreIgnored(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	g := NewOutlierGroup(config.OutlierDetection{ConsecutiveFailures: 2, BaseEjectionTime: config.Duration(10 * time.Second)})
	o := g.NewOutlier()
	if fail(g, o, 2, 10, clock.Now()) != 1 {
		t.Fatal("not ejected after 2 failures")
	}
	// Attempts that were in flight when it was ejected end now.
	if fail(g, o, 5, 10, clock.Now()) != 0 {
		t.Fatal("ejected again while ejected")
	}
	clock.Advance(10 * time.Second)
	if st := o.Status(clock.Now()); st.Ejected || st.Ejections != 1 || st.ConsecutiveFailures != 0 {
		t.Fatalf("Status() = %+v, want back, 1 ejection, no failures counted", st)
	}
	if g.Record(o, true, 10, clock.Now()) {
		t.Fatal("ejected on the first failure after coming back")
	}
	if !g.Record(o, true, 10, clock.Now()) {
		t.Fatal("not ejected after 2 new failures")
	}
	if st := o.Status(clock.Now()); st.Until.Sub(clock.Now()) != 20*time.Second {
		t.Errorf("second ejection lasts %v, want 20s", st.Until.Sub(clock.Now()))
	}
}

func TestOutlierDisabledAndConfigure(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	now := clock.Now()

	g := NewOutlierGroup(config.OutlierDetection{Disabled: true, ConsecutiveFailures: 1})
	o := g.NewOutlier()
	if fail(g, o, 100, 10, now) != 0 || o.Ejected(now) {
		t.Fatal("disabled detection ejected")
	}

	g.Configure(config.OutlierDetection{ConsecutiveFailures: 2, BaseEjectionTime: config.Duration(10 * time.Second)})
	if fail(g, o, 2, 10, now) != 1 {
		t.Fatal("not ejected after enabling detection")
	}
	// A reload keeps the ejection and the ejection count.
	g.Configure(config.OutlierDetection{ConsecutiveFailures: 2, BaseEjectionTime: config.Duration(time.Minute)})
	if st := o.Status(now); !st.Ejected || st.Until.Sub(now) != 10*time.Second {
		t.Fatalf("after a reload: Status() = %+v, want the 10s ejection kept", st)
	}
	clock.Advance(10 * time.Second)
	if fail(g, o, 2, 10, clock.Now()) != 1 {
		t.Fatal("not ejected again")
	}
	if st := o.Status(clock.Now()); st.Ejections != 2 || st.Until.Sub(clock.Now()) != 2*time.Minute {
		t.Fatalf("second ejection: Status() = %+v, want 2 ejections of the new 1m base", st)
	}
	// Disabling ends every ejection.
	g.Configure(config.OutlierDetection{Disabled: true})
	if o.Ejected(clock.Now()) {
		t.Error("still ejected after detection was disabled")
	}
}

func TestOutlierNil(t *testing.T) {
	t.Parallel()
	var o *Outlier
	g := NewOutlierGroup(config.OutlierDetection{})
	now := time.Now()
	if o.Ejected(now) || g.Record(o, true, 1, now) || o.Status(now) != (OutlierStatus{}) {
		t.Error("a nil Outlier is not inert")
	}
	g.Remove(o)
}

func TestOutlierConcurrent(t *testing.T) {
	t.Parallel()
	g := NewOutlierGroup(config.OutlierDetection{ConsecutiveFailures: 2, MaxEjectionPercent: 50, BaseEjectionTime: config.Duration(time.Hour)})
	outliers := make([]*Outlier, 8)
	for i := range outliers {
		outliers[i] = g.NewOutlier()
	}
	now := time.Now()
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			for j := range 500 {
				o := outliers[(i+j)%len(outliers)]
				_ = o.Ejected(now)
				g.Record(o, j%5 != 0, len(outliers), now)
				_ = o.Status(now)
			}
		})
	}
	wg.Wait()
	ejected := 0
	for _, o := range outliers {
		if o.Ejected(now) {
			ejected++
		}
	}
	if ejected != 4 {
		t.Errorf("%d of 8 ejected, want the 50%% limit of 4", ejected)
	}
}
