// Package proxy routes and forwards client requests: the traffic listeners,
// the router, forwarding over HTTP/1.1, HTTP/2 and h2c with streaming and
// WebSocket upgrades, error mapping, and the admin endpoints.
//
// A Gateway compiles the configuration and the latest discovery snapshot
// into an immutable table that requests read through an atomic pointer: no
// request takes a lock or parses configuration.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/discovery"
	"github.com/meshgate/meshgate/policies"
	"github.com/meshgate/meshgate/proxy/balancer"
	"github.com/meshgate/meshgate/resilience"
	"github.com/meshgate/meshgate/telemetry"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Options are the dependencies of a Gateway.
type Options struct {
	// Logger receives operational logs. Default: slog.Default().
	Logger *slog.Logger
	// Rand is the random source of the randomised balancers. Default:
	// balancer.DefaultRand.
	Rand balancer.Rand
	// Store is where discovery publishes snapshots. Required.
	Store *discovery.Store
	// Observer receives every resilience decision (retries, budget
	// denials, breaker changes, ejections, load shedding) for metrics and
	// traces. Optional; decisions are logged either way.
	Observer resilience.Observer
	// Tracer, when set, creates a server span per request and a client
	// span per upstream attempt; Propagator (default W3C trace context and
	// baggage) reads the client's trace context and writes each attempt's.
	Tracer     trace.Tracer
	Propagator propagation.TextMapPropagator
	// AccessLog, when set, receives one line per request (see logAccess);
	// nil turns the access log off.
	AccessLog *slog.Logger
	// Metrics, when set, records http.server.request.duration,
	// http.client.request.duration and http.server.active_requests.
	Metrics *telemetry.HTTPMetrics
	// AggregateMetrics, when set, counts the requests of aggregate routes
	// and their parts by result.
	AggregateMetrics *telemetry.AggregateMetrics
}

// Gateway is the request handler of the traffic listeners. Its zero value
// is not usable; build one with New.
type Gateway struct {
	log    *slog.Logger
	rnd    balancer.Rand
	store  *discovery.Store
	obs    resilience.Observer
	tr     tracing
	met    *telemetry.HTTPMetrics
	aggMet *telemetry.AggregateMetrics
	access *slog.Logger

	table    atomic.Pointer[table]
	draining atomic.Bool

	// mu serialises table rebuilds (the control path, never requests).
	mu         sync.Mutex
	cfg        *config.Config
	transports map[string]*transportEntry
	states     map[string]map[string]*endpointState // service → instance ID
	services   map[string]*serviceState             // resilience state by service
	instRes    map[string]*instanceRes              // breakers and ejections by service and instance
	// policies is the policy set in force; each table links its routes'
	// chains from it.
	policies *policies.Set
	// The maps a table build fills; apply makes them current on success.
	nextServices map[string]*serviceState
	nextInstRes  map[string]*instanceRes

	reloads        atomic.Uint64
	reloadFailures atomic.Uint64
	lastReloadErr  atomic.Pointer[string]
	loadedAt       atomic.Pointer[time.Time]

	upgrades  upgradeTracker
	discovery discoveryStatus
}

type transportEntry struct {
	key transportKey
	t   *http.Transport
	h1  *h1Settings
}

// table is everything a request needs, compiled from one config and one
// snapshot. It is never modified after it is stored.
type table struct {
	cfg         *config.Config
	router      *router
	upstreams   map[string]*upstream
	snap        *discovery.Snapshot
	maxBody     int64
	trusted     int
	ignoreTrace bool // server.ignore_incoming_trace_context
	// server.path_normalization
	escapedSlashes string
	mergeSlashes   bool
}

// New returns a gateway serving cfg. Requests are answered 503 until the
// first snapshot reaches the store.
func New(cfg *config.Config, opts Options) (*Gateway, error) {
	if opts.Store == nil {
		return nil, errors.New("proxy: Options.Store is required")
	}
	g := &Gateway{
		log:        opts.Logger,
		rnd:        opts.Rand,
		store:      opts.Store,
		obs:        opts.Observer,
		tr:         tracing{tracer: opts.Tracer, prop: opts.Propagator},
		met:        opts.Metrics,
		aggMet:     opts.AggregateMetrics,
		access:     opts.AccessLog,
		transports: make(map[string]*transportEntry),
		states:     make(map[string]map[string]*endpointState),
		services:   make(map[string]*serviceState),
		instRes:    make(map[string]*instanceRes),
	}
	if g.log == nil {
		g.log = slog.Default()
	}
	if g.tr.tracer != nil && g.tr.prop == nil {
		g.tr.prop = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	}
	if g.rnd == nil {
		g.rnd = balancer.DefaultRand{}
	}
	if err := g.rebuild(cfg); err != nil {
		return nil, err
	}
	return g, nil
}

// Config returns the configuration in force.
func (g *Gateway) Config() *config.Config { return g.table.Load().cfg }

// Reload swaps in cfg as a whole: the new table is compiled and validated
// first, and on any error the last good configuration stays in force. The
// outcome is counted and shown on /admin/config.
func (g *Gateway) Reload(cfg *config.Config) error {
	g.reloads.Add(1)
	if err := g.rebuild(cfg); err != nil {
		g.reloadFailures.Add(1)
		msg := err.Error()
		g.lastReloadErr.Store(&msg)
		return err
	}
	g.lastReloadErr.Store(nil)
	return nil
}

// ReloadStats returns the reloads tried and those that failed.
func (g *Gateway) ReloadStats() (total, failed uint64) {
	return g.reloads.Load(), g.reloadFailures.Load()
}

// RecordReloadFailure counts a reload that failed before reaching the
// gateway (the file did not parse or validate), so /admin/config shows it.
func (g *Gateway) RecordReloadFailure(err error) {
	g.reloads.Add(1)
	g.reloadFailures.Add(1)
	msg := err.Error()
	g.lastReloadErr.Store(&msg)
}

// Watch rebuilds the table whenever discovery publishes a snapshot, until
// ctx is done.
func (g *Gateway) Watch(ctx context.Context) {
	prune := time.NewTicker(15 * time.Second)
	defer prune.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-prune.C:
			g.pruneIdle(now)
		case <-g.store.Updates():
			if err := g.rebuild(nil); err != nil {
				g.log.Error("applying discovery snapshot", "error", err)
			}
		}
	}
}

// Ready reports whether the gateway can serve: a snapshot has arrived and
// it is not draining.
func (g *Gateway) Ready() bool {
	return !g.draining.Load() && g.table.Load().snap != nil
}

// Drain makes Ready false for good: /readyz fails so that load balancers
// stop sending new traffic before the listeners close.
func (g *Gateway) Drain() { g.draining.Store(true) }

// Close releases pooled upstream connections; those still in use close
// when their requests end.
func (g *Gateway) Close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, te := range g.transports {
		te.t.CloseIdleConnections()
	}
	for _, byID := range g.states {
		for _, st := range byID {
			st.pool.closeIdle(true)
		}
	}
}

// rebuild compiles cfg, or the configuration in force when cfg is nil,
// with the latest snapshot, and swaps the table in. Both are read under
// g.mu, so a rebuild always starts from the newest of each: a discovery
// update cannot bring back a configuration a concurrent Reload replaced,
// nor a Reload install a snapshot older than the one in force.
func (g *Gateway) rebuild(cfg *config.Config) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if cfg == nil {
		cfg = g.cfg
	}
	return g.apply(cfg, g.store.Load())
}

// apply compiles cfg with snap into a table and swaps it in. Called with
// g.mu held.
func (g *Gateway) apply(cfg *config.Config, snap *discovery.Snapshot) error {
	if errs := cfg.Validate(); len(errs) > 0 {
		return fmt.Errorf("invalid configuration: %w", errs)
	}

	t := &table{
		cfg:         cfg,
		upstreams:   make(map[string]*upstream, len(cfg.Services)),
		snap:        snap,
		maxBody:     int64(cfg.Server.MaxBodyBytes),
		trusted:     cfg.Server.TrustedHops,
		ignoreTrace: cfg.Server.IgnoreIncomingTraceContext,

		escapedSlashes: cfg.Server.PathNormalization.EscapedSlashes,
		mergeSlashes:   !cfg.Server.PathNormalization.KeepRepeatedSlashes,
	}
	newTransports := make(map[string]*transportEntry, len(cfg.Services))
	g.nextServices = make(map[string]*serviceState, len(cfg.Services))
	g.nextInstRes = make(map[string]*instanceRes, len(g.instRes))
	newStates := make(map[string]map[string]*endpointState, len(cfg.Services))
	for name, sc := range cfg.Services {
		up, err := g.buildUpstream(name, sc, snap, newTransports, newStates)
		if err != nil {
			return fmt.Errorf("building service %q: %w", name, err)
		}
		t.upstreams[name] = up
	}
	routes := make([]*Route, 0, len(cfg.Routes))
	for i, rc := range cfg.Routes {
		if rc.Aggregate != nil {
			agg, err := compileAggregate(rc.Aggregate)
			if err != nil {
				return fmt.Errorf("route %q: %w", rc.Name, err)
			}
			rte := compileRoute(i, rc, &upstream{})
			rte.agg = agg
			routes = append(routes, rte)
			continue
		}
		up := t.upstreams[rc.Service]
		if up == nil {
			return fmt.Errorf("route %q: unknown service %q", rc.Name, rc.Service)
		}
		routes = append(routes, compileRoute(i, rc, up))
	}
	found, err := g.discoveredRoutes(cfg, t, len(routes), newTransports, newStates)
	if err != nil {
		return err
	}
	routes = append(routes, found...)
	g.linkPolicies(t, routes)
	t.router = newRouter(routes)

	old, oldStates := g.transports, g.states
	g.table.Store(t)
	// Instances whose ejection record is gone must not keep counting
	// against their service's max_ejection_percent.
	for key, ir := range g.instRes {
		if nir := g.nextInstRes[key]; nir == nil || nir.outlier != ir.outlier {
			if svc := g.services[strings.SplitN(key, "\x00", 2)[0]]; svc != nil {
				svc.outliers.Remove(ir.outlier)
			}
		}
	}
	g.commitResilience()
	g.services, g.instRes = g.nextServices, g.nextInstRes
	g.cfg, g.transports, g.states = cfg, newTransports, newStates
	now := time.Now()
	g.loadedAt.Store(&now)
	// Transports no table uses any more lose their idle connections; busy
	// ones finish their requests and are collected afterwards.
	for name, te := range old {
		if ne, ok := newTransports[name]; !ok || ne.t != te.t {
			te.t.CloseIdleConnections()
		}
	}
	// Instances that left: their pooled connections close, and connections
	// still in use close when their requests end.
	for name, byID := range oldStates {
		for id, st := range byID {
			if newStates[name][id] != st {
				st.pool.closeIdle(true)
			}
		}
	}
	return nil
}

// pruneIdle closes pooled connections idle past their service's idle_conn
// timeout, so instances that get no traffic do not hold file descriptors.
func (g *Gateway) pruneIdle(now time.Time) {
	t := g.table.Load()
	for _, up := range t.upstreams {
		for _, ep := range up.endpoints {
			ep.state.pool.prune(now, up.h1.idleConn)
		}
		for _, ep := range up.excluded {
			ep.state.pool.prune(now, up.h1.idleConn)
		}
	}
}

// buildUpstream assembles one service for a new table, reusing the
// transport and the per-instance state of the previous one where they
// still apply. Called with g.mu held.
func (g *Gateway) buildUpstream(name string, sc config.Service, snap *discovery.Snapshot,
	transports map[string]*transportEntry, states map[string]map[string]*endpointState) (*upstream, error) {
	key := keyOf(sc)
	te := g.transports[name]
	if te == nil || te.key != key {
		te = &transportEntry{key: key, t: newTransport(key), h1: newH1Settings(key)}
	}
	transports[name] = te

	up := &upstream{name: name, cfg: sc, transport: te.t, h1: te.h1, res: g.serviceResilience(name, sc)}
	prev := g.states[name]
	cur := make(map[string]*endpointState)
	if svc := snap.Service(name); svc != nil {
		for _, inst := range svc.Instances {
			// State is carried over by instance ID and address: an instance
			// that moved starts afresh, so that no request goes over a
			// connection pooled to its old address (apply closes them).
			st := prev[inst.ID]
			if st == nil || st.hostPort != inst.HostPort {
				st = &endpointState{hostPort: inst.HostPort}
			}
			cur[inst.ID] = st
			ep := &endpoint{inst: inst, state: st, res: g.instanceResilience(up.res, name, inst.ID)}
			if inst.Health == discovery.Critical {
				// Not balanced to, but its state stays: counters survive
				// health flaps.
				up.excluded = append(up.excluded, ep)
				continue
			}
			up.endpoints = append(up.endpoints, ep)
		}
	}
	states[name] = cur
	eps := make([]balancer.Endpoint, len(up.endpoints))
	for i, ep := range up.endpoints {
		eps[i] = balancer.Endpoint{ID: ep.inst.ID, Weight: ep.inst.Weight, InFlight: &ep.state.inFlight}
	}
	b, err := balancer.New(sc.LoadBalancer, eps, g.rnd)
	if err != nil {
		return nil, err
	}
	up.balancer = b
	return up, nil
}
