package resilience

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshgate/meshgate/config"
)

// Defaults of config.OutlierDetection, applied by [NewOutlierGroup] and
// [OutlierGroup.Configure] to fields left at their zero value.
const (
	// DefaultOutlierConsecutiveFailures ejects an instance.
	DefaultOutlierConsecutiveFailures = 5
	// DefaultBaseEjectionTime is the first ejection's length.
	DefaultBaseEjectionTime = 30 * time.Second
	// DefaultMaxEjectionTime caps an ejection.
	DefaultMaxEjectionTime = 5 * time.Minute
	// DefaultMaxEjectionPercent is the largest share of a service's
	// instances ejected at once.
	DefaultMaxEjectionPercent = 50
)

// OutlierGroup is a service's passive outlier detection: it ejects, for a
// while, instances whose requests fail several times in a row, as Envoy's
// consecutive-5xx detection does. The n-th ejection of an instance lasts
// n times BaseEjectionTime, at most MaxEjectionTime; no more than
// MaxEjectionPercent of the service's instances are ejected at once.
//
// One group serves a service and is kept across configuration reloads
// ([OutlierGroup.Configure] applies new settings); one [Outlier] per
// instance, from [OutlierGroup.NewOutlier], is kept while the instance
// stays. A group is safe for concurrent use; its lock is the group's own.
type OutlierGroup struct {
	mu       sync.Mutex
	settings outlierSettings
	// ejected holds the group's ejected instances; ones whose ejection
	// has passed leave it when the next ejection is considered.
	ejected map[*Outlier]struct{}
}

// outlierSettings is config.OutlierDetection with defaults applied.
type outlierSettings struct {
	disabled    bool
	consecutive int
	base, max   time.Duration
	maxPercent  int
}

// Outlier is one instance's ejection record in an [OutlierGroup].
type Outlier struct {
	group *OutlierGroup
	// until ends the current or last ejection, in Unix nanoseconds; 0 when
	// the instance was never ejected or ejection was reset.
	until atomic.Int64
	// failing is set while consecutive > 0, so that a success on a healthy
	// instance (the common case) takes no lock.
	failing atomic.Bool
	// Guarded by group.mu.
	consecutive int
	ejections   int
}

// OutlierStatus is a snapshot of an instance's ejection record.
type OutlierStatus struct {
	// Ejected says whether the instance is ejected now.
	Ejected bool `json:"ejected"`
	// Until is when the current ejection ends; zero when not ejected.
	Until time.Time `json:"until,omitzero"`
	// Ejections counts the instance's ejections so far, the current one
	// included; it sets the length of the next one.
	Ejections int `json:"ejections"`
	// ConsecutiveFailures counts the failures since the last success or
	// ejection.
	ConsecutiveFailures int `json:"consecutive_failures"`
}

// NewOutlierGroup returns a group for cfg with no instance ejected. Zero
// fields take their defaults: ejection after 5 consecutive failures, for
// 30s times the instance's ejection count, at most 5m, and at most 50% of
// the instances ejected at once. A MaxEjectionTime below the base is
// raised to it; a negative MaxEjectionPercent means 0 (never eject), one
// above 100 means 100.
func NewOutlierGroup(cfg config.OutlierDetection) *OutlierGroup {
	g := &OutlierGroup{ejected: make(map[*Outlier]struct{})}
	g.settings = outlierSettingsOf(cfg)
	return g
}

func outlierSettingsOf(cfg config.OutlierDetection) outlierSettings {
	s := outlierSettings{
		disabled:    cfg.Disabled,
		consecutive: cfg.ConsecutiveFailures,
		base:        cfg.BaseEjectionTime.D(),
		max:         cfg.MaxEjectionTime.D(),
		maxPercent:  cfg.MaxEjectionPercent,
	}
	if s.consecutive <= 0 {
		s.consecutive = DefaultOutlierConsecutiveFailures
	}
	if s.base <= 0 {
		s.base = DefaultBaseEjectionTime
	}
	if s.max <= 0 {
		s.max = DefaultMaxEjectionTime
	}
	s.max = max(s.max, s.base)
	switch {
	case s.maxPercent == 0:
		s.maxPercent = DefaultMaxEjectionPercent
	case s.maxPercent < 0:
		s.maxPercent = 0
	case s.maxPercent > 100:
		s.maxPercent = 100
	}
	return s
}

// Configure applies new settings, keeping every instance's record and
// current ejection (which ends when it was going to). Disabling detection
// ends every ejection at once.
func (g *OutlierGroup) Configure(cfg config.OutlierDetection) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.settings = outlierSettingsOf(cfg)
	if g.settings.disabled {
		for o := range g.ejected {
			o.until.Store(0)
		}
		clear(g.ejected)
	}
}

// NewOutlier returns the record of a new instance of the group's service:
// not ejected, no failures.
func (g *OutlierGroup) NewOutlier() *Outlier {
	return &Outlier{group: g}
}

// Remove ends o's ejection, if any, so that an instance that left the
// service no longer counts against MaxEjectionPercent. Optional: an
// ejection left behind stops counting when it ends.
func (g *OutlierGroup) Remove(o *Outlier) {
	if o == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.ejected, o)
	o.until.Store(0)
}

// Record records the outcome of an attempt on o's instance at now and
// reports whether this call ejected it. failure is a 5xx answer, a connect
// failure or a timeout; a success resets the instance's consecutive
// failures. instances is the service's current number of instances.
//
// The ConsecutiveFailures-th failure in a row ejects the instance for
// min(BaseEjectionTime·n, MaxEjectionTime), n being its ejection count,
// unless that would eject more than MaxEjectionPercent of instances
// (rounded down, so that with less than 100% at least one instance always
// stays; a single instance is never ejected unless the percentage is
// 100); the next failure tries again. Outcomes of attempts that end while
// the instance is ejected are ignored, as is everything when detection is
// disabled. o must come from g.
func (g *OutlierGroup) Record(o *Outlier, failure bool, instances int, now time.Time) (ejected bool) {
	if o == nil || (!failure && !o.failing.Load()) {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	s := &g.settings
	if s.disabled {
		return false
	}
	if !failure {
		o.consecutive = 0
		o.failing.Store(false)
		return false
	}
	if o.Ejected(now) {
		return false
	}
	o.consecutive++
	o.failing.Store(true)
	if o.consecutive < s.consecutive {
		return false
	}
	for e := range g.ejected {
		if !e.Ejected(now) {
			delete(g.ejected, e)
		}
	}
	if len(g.ejected) >= max(instances, 0)*s.maxPercent/100 {
		return false
	}
	o.ejections++
	o.consecutive = 0
	o.failing.Store(false)
	o.until.Store(now.Add(ejectionTime(s.base, s.max, o.ejections)).UnixNano())
	g.ejected[o] = struct{}{}
	return true
}

// ejectionTime is base·n, at most limit, without overflowing.
func ejectionTime(base, limit time.Duration, n int) time.Duration {
	if n <= 0 {
		return 0
	}
	if time.Duration(n) > limit/base {
		return limit
	}
	return min(base*time.Duration(n), limit)
}

// Ejected reports whether the instance is ejected at now. It takes no
// lock, for balancers to call on every pick; a nil Outlier is never
// ejected.
func (o *Outlier) Ejected(now time.Time) bool {
	if o == nil {
		return false
	}
	u := o.until.Load()
	return u != 0 && now.UnixNano() < u
}

// Status returns the instance's record at now.
func (o *Outlier) Status(now time.Time) OutlierStatus {
	if o == nil {
		return OutlierStatus{}
	}
	o.group.mu.Lock()
	defer o.group.mu.Unlock()
	st := OutlierStatus{Ejections: o.ejections, ConsecutiveFailures: o.consecutive}
	if o.Ejected(now) {
		st.Ejected = true
		st.Until = time.Unix(0, o.until.Load())
	}
	return st
}
