package proxy

import (
	"net/http"
	"reflect"
	"strconv"
	"time"

	"github.com/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/resilience"
)

// This file connects the proxy to package resilience: per-service retry
// policy, retry budget, outlier group and bulkhead, and per-instance
// circuit breakers and ejection state. Service state lives in the gateway
// keyed by service name and instance state in endpointState, so both
// survive configuration reloads and discovery changes for what stays.

// serviceState is a service's resilience state that outlives tables.
type serviceState struct {
	retry    *resilience.RetryPolicy
	budget   *resilience.Budget
	outliers *resilience.OutlierGroup
	limiter  *resilience.Limiter
	cfg      config.Service // the settings the state was built from
	// reconfigure applies changed settings to carried-over state once the
	// new table is in force.
	reconfigure []func()
}

// commitResilience applies the settings of a table just put in force to
// the state it carried over. Called with g.mu held.
func (g *Gateway) commitResilience() {
	for _, st := range g.nextServices {
		for _, f := range st.reconfigure {
			f()
		}
		st.reconfigure = nil
	}
}

// instanceRes is an instance's breaker and ejection record; it outlives
// tables while the instance and its service's breaker settings stay.
type instanceRes struct {
	breaker *resilience.Breaker
	outlier *resilience.Outlier
	cfg     config.CircuitBreaker
}

// explicitZeros rewrites the zeros of a loaded (defaulted) service's
// resilience settings as package resilience's "none" (negative), since it
// reads zero as "use the default" while a loaded config's zero was written
// by the user (config.SetDefaults fills every unset one).
func explicitZeros(sc config.Service) config.Service {
	r, o := &sc.Retry, &sc.OutlierDetection
	if r.ReplayLimit == 0 {
		r.ReplayLimit = -1
	}
	if r.RetryAfterMax == 0 {
		r.RetryAfterMax = -1
	}
	if r.Budget.Ratio == 0 {
		r.Budget.Ratio = -1
	}
	if r.Budget.MinPerSecond == 0 {
		r.Budget.MinPerSecond = -1
	}
	if o.MaxEjectionPercent == 0 {
		o.MaxEjectionPercent = -1
	}
	return sc
}

// serviceResilience returns the resilience state of service name for sc,
// reusing what the previous configuration built where its settings did
// not change. It writes only to the pending maps apply commits on success,
// so a reload that fails leaves the live state untouched. Called with g.mu
// held.
func (g *Gateway) serviceResilience(name string, sc config.Service) *serviceState {
	sc = explicitZeros(sc)
	prev := g.services[name]
	st := &serviceState{
		retry: resilience.NewRetryPolicy(sc.Retry, sc.Timeouts.ResponseHeader.D()),
		cfg:   sc,
	}
	// The budget and the ejection records keep their state across a
	// change of settings; the new settings apply once the table that
	// carries them is in force (commitResilience), so a failed reload
	// changes nothing.
	if prev != nil {
		st.budget, st.outliers = prev.budget, prev.outliers
		if !reflect.DeepEqual(prev.cfg.Retry.Budget, sc.Retry.Budget) {
			st.reconfigure = append(st.reconfigure, func() { st.budget.Configure(sc.Retry.Budget) })
		}
		if !reflect.DeepEqual(prev.cfg.OutlierDetection, sc.OutlierDetection) {
			st.reconfigure = append(st.reconfigure, func() { st.outliers.Configure(sc.OutlierDetection) })
		}
	} else {
		st.budget = resilience.NewBudget(sc.Retry.Budget)
		st.outliers = resilience.NewOutlierGroup(sc.OutlierDetection)
	}
	if prev != nil && prev.cfg.MaxConcurrentRequests == sc.MaxConcurrentRequests {
		st.limiter = prev.limiter
	} else {
		st.limiter = resilience.NewLimiter(sc.MaxConcurrentRequests)
	}
	g.nextServices[name] = st
	return st
}

// instanceResilience returns the breaker and ejection record of instance
// id of a service, carried over while the service keeps its breaker and
// ejection settings. Called with g.mu held, like serviceResilience.
func (g *Gateway) instanceResilience(svc *serviceState, service, id string) *instanceRes {
	key := service + "\x00" + id
	prev := g.instRes[key]
	ir := &instanceRes{cfg: svc.cfg.CircuitBreaker}
	if prev != nil && reflect.DeepEqual(prev.cfg, ir.cfg) {
		ir.breaker = prev.breaker
	} else {
		ir.breaker = resilience.NewBreaker(service+"/"+id, ir.cfg, func(name, from, to string) {
			g.log.Info("circuit breaker changed state", "service", service, "instance", id, "from", from, "to", to)
			g.obs.Observe(resilience.Event{Kind: resilience.EventBreakerState, Service: service, Instance: id, From: from, To: to})
		})
	}
	if prev != nil && prev.outlier != nil && g.services[service] != nil && g.services[service].outliers == svc.outliers {
		ir.outlier = prev.outlier
	} else {
		ir.outlier = svc.outliers.NewOutlier()
	}
	g.nextInstRes[key] = ir
	return ir
}

// triedSet records the endpoints a request has tried, by index; it
// allocates only past 64 endpoints.
type triedSet struct {
	bits uint64
	more map[int]bool
}

func (s *triedSet) add(i int) {
	if i < 64 {
		s.bits |= 1 << uint(i)
		return
	}
	if s.more == nil {
		s.more = make(map[int]bool)
	}
	s.more[i] = true
}

func (s *triedSet) has(i int) bool {
	if i < 64 {
		return s.bits&(1<<uint(i)) != 0
	}
	return s.more[i]
}

// pickAvailable chooses an endpoint that r has not tried and whose breaker
// is not open and which is not ejected; nil when there is none.
func (u *upstream) pickAvailable(r *http.Request, tried *triedSet, now time.Time) (*endpoint, int) {
	if len(u.endpoints) == 0 {
		return nil, -1
	}
	i := u.balancer.Pick(r, func(i int) bool {
		ep := u.endpoints[i]
		return tried.has(i) || ep.res.breaker.Open() || ep.res.outlier.Ejected(now)
	})
	if i < 0 {
		return nil, -1
	}
	return u.endpoints[i], i
}

// unavailableRetryAfter is the Retry-After, in whole seconds, for a 503
// sent because no instance can take the request: the time until the first
// open breaker turns half-open, at least one second.
func (u *upstream) unavailableRetryAfter() string {
	var soonest time.Duration
	for _, ep := range u.endpoints {
		if d := ep.res.breaker.RetryAfter(); d > 0 && (soonest == 0 || d < soonest) {
			soonest = d
		}
	}
	secs := int((soonest + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	return strconv.Itoa(secs)
}
