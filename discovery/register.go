package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/meshgate/meshgate/config"
)

// The Registrar applies config.Register's documented defaults (config's
// Default* constants) to zero values itself, so a Register that has not
// been through config.SetDefaults registers the same service as one that has.
const (
	registrarDefaultWeight                  = config.DefaultRegisterWeight
	registrarDefaultCheckPath               = config.DefaultRegisterCheckPath
	registrarDefaultCheckInterval           = time.Duration(config.DefaultRegisterCheckInterval)
	registrarDefaultCheckTimeout            = time.Duration(config.DefaultRegisterCheckTimeout)
	registrarDefaultTTL                     = time.Duration(config.DefaultRegisterTTL)
	registrarDefaultDeregisterCriticalAfter = time.Duration(config.DefaultDeregisterCriticalAfter)
)

const (
	// registrarProbeEvery is how often Run asks the agent whether it still
	// knows the service. The agent is local and the lookup is cheap; it
	// bounds how long a restarted agent goes without the service when the
	// TTL reports alone would notice later.
	registrarProbeEvery = 2 * time.Second
	// registrarCallTimeout bounds one call to the agent, so an agent that
	// accepts connections but hangs counts as unreachable.
	registrarCallTimeout = 5 * time.Second
	// Back-off between attempts while the agent is unreachable: doubling
	// from registrarBackoffMin up to registrarBackoffMax, each delay drawn
	// from [d/2, d). The cap is low because the agent is local: once it is
	// back, the service must be registered again within seconds.
	registrarBackoffMin = 250 * time.Millisecond
	registrarBackoffMax = 4 * time.Second
)

// Names of the two checks registered with the service, after the service
// ID: ID+":http" and ID+":sidecar".
const (
	registrarHTTPCheckSuffix = ":http"
	registrarTTLCheckSuffix  = ":sidecar"
)

// errRegistrarStopped is returned by a registration attempted after
// Deregister: a deregistered service is not repaired.
var errRegistrarStopped = errors.New("registrar stopped by Deregister")

// Registrar keeps one service instance registered in Consul while meshgate
// runs: the local service meshgate is the sidecar of (config.Register).
//
// The instance is registered with two checks: an HTTP check the agent runs
// against the service ("service health", check ID "<id>:http") and a TTL
// check that meshgate itself reports as passing ("meshgate sidecar", check
// ID "<id>:sidecar"). If meshgate dies, the TTL check turns critical after
// the TTL, and the agent removes the instance once its checks have stayed
// critical for deregister_critical_after.
//
// Use: NewRegistrar, then Run in its own goroutine; on shutdown call
// Deregister before draining, then cancel Run's context. Status and
// Registered are safe to call at any time from any goroutine.
type Registrar struct {
	client     *api.Client
	log        *slog.Logger
	svc        *api.AgentServiceRegistration // not modified after NewRegistrar
	ttlCheckID string
	passEvery  time.Duration // TTL/3

	// Timings of Run, fixed by NewRegistrar; tests may shorten them.
	probeEvery  time.Duration
	callTimeout time.Duration
	backoffMin  time.Duration
	backoffMax  time.Duration
	// jitter returns a random duration in [0, d).
	jitter func(d time.Duration) time.Duration

	// sem serializes registrations with Deregister, so that a
	// registration in flight cannot land after the deregistration.
	sem      chan struct{}
	stopped  chan struct{} // closed by Deregister
	stopOnce sync.Once

	mu sync.Mutex
	st RegistrarStatus
}

// RegistrarStatus is the state of the sidecar registration, shown in
// /admin views.
type RegistrarStatus struct {
	// ServiceID is the ID of the registered instance.
	ServiceID string `json:"service_id"`
	// Registered is true while the service is registered as far as
	// meshgate knows; see Registrar.Registered.
	Registered bool `json:"registered"`
	// Registrations counts successful registrations: the first one, plus
	// one for every repair after the agent forgot the service.
	Registrations uint64 `json:"registrations_total"`
	// LastRegistration is when the service was last registered.
	LastRegistration time.Time `json:"last_registration,omitzero"`
	// LastSuccess is when the agent last confirmed the registration: a
	// registration, a TTL report or a lookup of the service.
	LastSuccess time.Time `json:"last_success,omitzero"`
	// Errors counts failed calls to the agent (unreachable, or refusing
	// the call); LastError is the latest and LastErrorTime its time.
	Errors        uint64    `json:"errors_total"`
	LastError     string    `json:"last_error,omitempty"`
	LastErrorTime time.Time `json:"last_error_time,omitzero"`
}

// NewRegistrar returns a Registrar for reg that talks to the agent through
// client. The ACL token is the client's (CONSUL_HTTP_TOKEN or
// discovery.consul.token); the Registrar does not override it.
//
// reg may come straight from the file: zero values take the defaults
// documented on config.Register (ID "name-address-port", weight 1, check
// path "/healthz", interval 10s, timeout 2s, TTL 10s,
// deregister_critical_after 1m), and values already defaulted are used as
// they are. Name, address and port are registered as given; validating
// them is the configuration's job. log receives registration events;
// nil means slog.Default().
func NewRegistrar(client *api.Client, reg config.Register, log *slog.Logger) *Registrar {
	if log == nil {
		log = slog.Default()
	}
	svc, ttl := registrarRegistration(reg)
	return &Registrar{
		client:     client,
		log:        log.With("service", svc.Name, "service_id", svc.ID),
		svc:        svc,
		ttlCheckID: svc.ID + registrarTTLCheckSuffix,
		// The floor only guards against a busy loop on a TTL that
		// validation should have rejected.
		passEvery:   max(ttl/3, 100*time.Millisecond),
		probeEvery:  registrarProbeEvery,
		callTimeout: registrarCallTimeout,
		backoffMin:  registrarBackoffMin,
		backoffMax:  registrarBackoffMax,
		jitter: func(d time.Duration) time.Duration {
			if d <= 0 {
				return 0
			}
			return rand.N(d)
		},
		sem:     make(chan struct{}, 1),
		stopped: make(chan struct{}),
		st:      RegistrarStatus{ServiceID: svc.ID},
	}
}

// registrarRegistration builds the agent registration for reg, applying the
// documented defaults to zero values, and returns it with the TTL of the
// sidecar check.
func registrarRegistration(reg config.Register) (*api.AgentServiceRegistration, time.Duration) {
	orDefault := func(d config.Duration, def time.Duration) time.Duration {
		if d <= 0 {
			return def
		}
		return d.D()
	}
	ttl := orDefault(reg.TTL, registrarDefaultTTL)
	deregisterAfter := orDefault(reg.DeregisterCriticalAfter, registrarDefaultDeregisterCriticalAfter).String()
	weight := reg.Weight
	if weight <= 0 {
		weight = registrarDefaultWeight
	}
	id := reg.ID
	if id == "" {
		id = config.DefaultRegisterID(reg.Name, reg.Address, reg.Port)
	}

	checkURL := reg.Check.URL
	if checkURL == "" {
		path := reg.Check.Path
		if path == "" {
			path = registrarDefaultCheckPath
		}
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		// JoinHostPort brackets IPv6 addresses: http://[::1]:8080/healthz.
		checkURL = "http://" + net.JoinHostPort(reg.Address, strconv.Itoa(reg.Port)) + path
	}

	return &api.AgentServiceRegistration{
		ID:      id,
		Name:    reg.Name,
		Address: reg.Address,
		Port:    reg.Port,
		Tags:    slices.Clone(reg.Tags),
		Meta:    maps.Clone(reg.Meta),
		Weights: &api.AgentWeights{Passing: weight, Warning: 1},
		Checks: api.AgentServiceChecks{
			{
				CheckID:                        id + registrarHTTPCheckSuffix,
				Name:                           "service health",
				HTTP:                           checkURL,
				Interval:                       orDefault(reg.Check.Interval, registrarDefaultCheckInterval).String(),
				Timeout:                        orDefault(reg.Check.Timeout, registrarDefaultCheckTimeout).String(),
				DeregisterCriticalServiceAfter: deregisterAfter,
			},
			{
				CheckID:                        id + registrarTTLCheckSuffix,
				Name:                           "meshgate sidecar",
				TTL:                            ttl.String(),
				Status:                         api.HealthPassing,
				DeregisterCriticalServiceAfter: deregisterAfter,
			},
		},
	}, ttl
}

// ServiceID returns the ID of the registered instance.
func (r *Registrar) ServiceID() string { return r.svc.ID }

// Registered reports whether the service is registered as far as meshgate
// knows: the last registration attempt succeeded, and the agent has not
// since been found to have forgotten the service or to be unreachable. It
// is false before the first registration and after Deregister.
func (r *Registrar) Registered() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.st.Registered
}

// Status returns the state of the registration.
func (r *Registrar) Status() RegistrarStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.st
}

// registrarNeed is what Run must do before the registration counts as
// confirmed again.
type registrarNeed int

const (
	registrarConfirmed registrarNeed = iota // nothing: registered and confirmed
	registrarRegister                       // register (first time, or the agent forgot it)
	registrarVerify                         // ask the agent whether it still has the service
)

// Run registers the service and keeps it registered until ctx is done.
//
// It reports the sidecar's TTL check as passing every TTL/3, and asks the
// agent for the service every 2s. When the agent no longer knows the
// service or its TTL check (an agent restarted in dev mode, or with its
// data directory lost, forgets every registration), Run registers it again
// at once. While the agent is unreachable, Run retries with exponential
// back-off and jitter (250ms doubling up to 4s); when the agent answers
// again it registers the service if the agent has forgotten it, or just
// reports the TTL check if not. Failures are logged and counted in Status;
// they never end Run.
//
// Run returns nil when ctx is done, and also once Deregister has been
// called (a deregistered service is not repaired). It does not deregister
// the service by itself: call Deregister for that. Run must not be called
// again while it is running.
func (r *Registrar) Run(ctx context.Context) error {
	var (
		need      = registrarRegister
		failing   bool // the previous attempt failed: log only the first failure of a streak
		nextPass  time.Time
		nextProbe time.Time
		backoff   = registrarBackoff{min: r.backoffMin, max: r.backoffMax, jitter: r.jitter}
	)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.stopped:
			return nil
		case <-timer.C:
		}
		// The timer may have fired together with ctx or Deregister.
		if ctx.Err() != nil || r.isStopped() {
			return nil
		}

		var (
			err  error
			wait time.Duration
		)
		switch need {
		case registrarRegister, registrarVerify:
			err = r.restore(ctx, need)
			if err == nil {
				need = registrarConfirmed
				now := time.Now()
				nextPass, nextProbe = now.Add(r.passEvery), now.Add(r.probeEvery)
			}
		case registrarConfirmed:
			now := time.Now()
			if !now.Before(nextPass) {
				if err = r.pass(ctx); err == nil {
					nextPass = now.Add(r.passEvery)
				}
			}
			if err == nil && !now.Before(nextProbe) {
				if err = r.lookup(ctx); err == nil {
					nextProbe = now.Add(r.probeEvery)
				}
			}
		}

		switch {
		case errors.Is(err, errRegistrarStopped) || ctx.Err() != nil:
			return nil
		case err == nil:
			if failing {
				r.log.Info("Consul registration restored")
			}
			failing = false
			backoff.reset()
			r.confirmed()
			wait = time.Until(registrarEarliest(nextPass, nextProbe))
		case isNotFound(err):
			// The agent answered that it does not know the service or its
			// TTL check: it forgot them. Register again at once.
			r.log.Warn("Consul agent no longer knows the service; registering it again", "error", err)
			if need != registrarConfirmed {
				// Even a fresh registration did not stick: do not spin.
				wait = backoff.next()
			}
			need = registrarRegister
			r.lost("")
		default:
			// Unreachable, or refusing: we cannot tell whether the
			// service is still registered. Back off, then look it up.
			if !failing {
				r.log.Warn("cannot keep the service registered in Consul; retrying with back-off", "error", err)
			} else {
				r.log.Debug("Consul registration attempt failed", "error", err)
			}
			failing = true
			if need == registrarConfirmed {
				need = registrarVerify
			}
			r.lost(err.Error())
			wait = backoff.next()
		}
		timer.Reset(wait)
	}
}

// restore makes the registration confirmed again: it registers the
// service when need is registrarRegister or when the agent has forgotten
// it, and otherwise reports the TTL check (it may have expired while the
// agent was unreachable).
func (r *Registrar) restore(ctx context.Context, need registrarNeed) error {
	if need == registrarVerify {
		err := r.lookup(ctx)
		if err == nil {
			err = r.pass(ctx)
		}
		if !isNotFound(err) {
			return err
		}
		r.log.Warn("Consul agent no longer knows the service; registering it again", "error", err)
	}
	if err := r.register(ctx); err != nil {
		return err
	}
	// Registering over an existing registration keeps its checks' status,
	// so report the TTL check now rather than in TTL/3.
	return r.pass(ctx)
}

// register registers the service, replacing any previous registration with
// the same ID and its checks.
func (r *Registrar) register(ctx context.Context) error {
	select {
	case r.sem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("registering service %q: %w", r.svc.ID, ctx.Err())
	}
	defer func() { <-r.sem }()
	if r.isStopped() {
		return errRegistrarStopped
	}
	cctx, cancel := context.WithTimeout(ctx, r.callTimeout)
	defer cancel()
	opts := api.ServiceRegisterOpts{ReplaceExistingChecks: true}.WithContext(cctx)
	if err := r.client.Agent().ServiceRegisterOpts(r.svc, opts); err != nil {
		return fmt.Errorf("registering service %q in Consul: %w", r.svc.ID, err)
	}
	now := time.Now()
	r.mu.Lock()
	r.st.Registered = true
	r.st.Registrations++
	r.st.LastRegistration = now
	r.st.LastSuccess = now
	n := r.st.Registrations
	r.mu.Unlock()
	r.log.Info("registered service in Consul", "registrations", n)
	return nil
}

// pass reports the sidecar's TTL check as passing.
func (r *Registrar) pass(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, r.callTimeout)
	defer cancel()
	q := (&api.QueryOptions{}).WithContext(cctx)
	if err := r.client.Agent().UpdateTTLOpts(r.ttlCheckID, "meshgate is running", api.HealthPassing, q); err != nil {
		return fmt.Errorf("reporting check %q passing: %w", r.ttlCheckID, err)
	}
	return nil
}

// lookup asks the agent for the service; a 404 means it has forgotten it.
func (r *Registrar) lookup(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, r.callTimeout)
	defer cancel()
	q := (&api.QueryOptions{}).WithContext(cctx)
	if _, _, err := r.client.Agent().Service(r.svc.ID, q); err != nil {
		return fmt.Errorf("looking up service %q on the Consul agent: %w", r.svc.ID, err)
	}
	return nil
}

// isStopped reports whether Deregister has been called.
func (r *Registrar) isStopped() bool {
	select {
	case <-r.stopped:
		return true
	default:
		return false
	}
}

// confirmed records that the agent confirmed the registration.
func (r *Registrar) confirmed() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.st.Registered = true
	r.st.LastSuccess = time.Now()
}

// lost records that the registration is no longer known to hold, and the
// error that says why, if it is a failure.
func (r *Registrar) lost(errText string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.st.Registered = false
	if errText != "" {
		r.st.Errors++
		r.st.LastError = errText
		r.st.LastErrorTime = time.Now()
	}
}

// Deregister removes the service and its checks from the agent; call it on
// SIGTERM before draining, so that callers stop picking this instance. It
// also stops Run from registering the service again: Run returns nil soon
// after. A service the agent does not know counts as removed. Deregister is
// bounded by ctx; on failure the agent removes the service by itself once
// its TTL check has been critical for deregister_critical_after.
func (r *Registrar) Deregister(ctx context.Context) error {
	r.stopOnce.Do(func() { close(r.stopped) })
	// Wait for a registration in flight, so that it cannot land after the
	// deregistration; later ones see stopped and give up.
	select {
	case r.sem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("deregistering service %q: %w", r.svc.ID, ctx.Err())
	}
	defer func() { <-r.sem }()
	q := (&api.QueryOptions{}).WithContext(ctx)
	if err := r.client.Agent().ServiceDeregisterOpts(r.svc.ID, q); err != nil && !isNotFound(err) {
		err = fmt.Errorf("deregistering service %q from Consul: %w", r.svc.ID, err)
		r.lost(err.Error())
		return err
	}
	r.lost("")
	r.log.Info("deregistered service from Consul")
	return nil
}

// registrarBackoff is exponential back-off with jitter: each call to next
// doubles the base delay d, from min up to max, and returns a delay drawn
// from [d/2, d).
type registrarBackoff struct {
	min, max time.Duration
	jitter   func(time.Duration) time.Duration
	cur      time.Duration
}

func (b *registrarBackoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(2*b.cur, b.max)
	}
	half := b.cur / 2
	return half + b.jitter(b.cur-half)
}

func (b *registrarBackoff) reset() { b.cur = 0 }

// registrarEarliest returns the earlier of a and b.
func registrarEarliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
