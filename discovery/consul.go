package discovery

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/meshgate/meshgate/config"
)

// ConsulOptions configure a Consul source.
type ConsulOptions struct {
	// Client talks to the Consul agent; see NewConsulClient.
	Client *api.Client
	// Requests, when set, counts the HTTP requests Client makes (shown in
	// the status).
	Requests *RequestCounter
	// Config is the discovery.consul section, defaults applied.
	Config config.Consul
	// Watch names the services to watch: those that routes name and the
	// static catalog lists without instances.
	Watch []string
	// Static is the static catalog; its services with instances are
	// merged into every snapshot unchanged.
	Static map[string]config.Service
	// Logger receives watch errors. Default slog.Default().
	Logger *slog.Logger
}

// Consul is the source that follows Consul's catalog: one blocking query
// per watched service on the health endpoint, and, when catalog routes are
// on, one on the service list. When Consul fails, the last snapshot stays
// published (last known good) and the failure is counted in Status.
type Consul struct {
	opts ConsulOptions
	log  *slog.Logger

	mu        sync.Mutex
	services  map[string]*consulService
	tagRoutes []RouteHint
	// catalogSynced is set once the service list has been read (only
	// waited for when catalog routes are on).
	catalogSynced bool
	changed       chan struct{}

	synced      atomic.Bool
	errors      atomic.Uint64
	lastContact atomic.Int64 // unix nanoseconds
	lastErr     atomic.Pointer[string]
}

// consulService is the state of one watched service.
type consulService struct {
	cancel     context.CancelFunc
	pinned     bool // named by the config: watched whatever the catalog says
	synced     bool
	index      uint64
	instances  []*Instance
	metaRoutes []RouteHint
}

var _ Source = (*Consul)(nil)

// RequestCounter is an http.RoundTripper that counts requests, to measure
// what meshgate costs Consul.
type RequestCounter struct {
	base http.RoundTripper
	n    atomic.Uint64
}

// RoundTrip implements http.RoundTripper.
func (c *RequestCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.base.RoundTrip(r)
}

// Count returns the number of requests so far.
func (c *RequestCounter) Count() uint64 { return c.n.Load() }

// NewConsulClient builds a Consul API client from the standard CONSUL_HTTP_*
// environment variables (address, token, TLS) with the config's fields
// taking precedence where set, and a counter of its requests.
func NewConsulClient(cc config.Consul) (*api.Client, *RequestCounter, error) {
	cfg := api.DefaultConfig()
	if cc.Address != "" {
		cfg.Address = cc.Address
	}
	if cc.Token != "" {
		cfg.Token = cc.Token
	}
	if cc.Datacenter != "" {
		cfg.Datacenter = cc.Datacenter
	}
	hc, err := api.NewHttpClient(cfg.Transport, cfg.TLSConfig)
	if err != nil {
		return nil, nil, fmt.Errorf("configuring the Consul client: %w", err)
	}
	counter := &RequestCounter{base: hc.Transport}
	hc.Transport = counter
	cfg.HttpClient = hc
	client, err := api.NewClient(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("configuring the Consul client: %w", err)
	}
	return client, counter, nil
}

// NewConsul returns a Consul source.
func NewConsul(opts ConsulOptions) *Consul {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Consul{
		opts:     opts,
		log:      log.With("source", "consul"),
		services: make(map[string]*consulService),
		changed:  make(chan struct{}, 1),
	}
}

func (c *Consul) watchOptions() watchOptions { return watchOptionsOf(c.opts.Config) }

// watchOptionsOf returns the watch timings discovery.consul sets.
func watchOptionsOf(cc config.Consul) watchOptions {
	return watchOptions{
		wait:        cc.Wait.D(),
		minInterval: cc.MinInterval.D(),
		minBackoff:  250 * time.Millisecond,
		maxBackoff:  max(cc.MaxBackoff.D(), 250*time.Millisecond),
	}
}

func (c *Consul) queryOptions() api.QueryOptions { return queryOptionsOf(c.opts.Config) }

// queryOptionsOf returns the query options discovery.consul sets.
func queryOptionsOf(cc config.Consul) api.QueryOptions {
	return api.QueryOptions{Datacenter: cc.Datacenter, AllowStale: cc.Stale}
}

// Run watches Consul and publishes a snapshot after every change, once
// every configured service has been read. It returns nil when ctx is done.
func (c *Consul) Run(ctx context.Context, publish func(*Snapshot)) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	c.mu.Lock()
	for _, name := range c.opts.Watch {
		c.startServiceLocked(ctx, &wg, name, true)
	}
	c.mu.Unlock()
	if c.opts.Config.Routes.Enabled {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.watchCatalog(ctx, &wg)
		}()
	}
	c.signal() // a config with nothing to watch is synced at once

	var last *Snapshot
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-c.changed:
		}
		snap, ready := c.build()
		if !ready {
			continue
		}
		c.synced.Store(true)
		if last != nil && sameSnapshot(last, snap) {
			continue
		}
		last = snap
		publish(snap)
	}
}

func (c *Consul) signal() {
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

// startServiceLocked starts the health watch of name. Called with c.mu held.
func (c *Consul) startServiceLocked(ctx context.Context, wg *sync.WaitGroup, name string, pinned bool) {
	if s, ok := c.services[name]; ok {
		s.pinned = s.pinned || pinned
		return
	}
	sctx, cancel := context.WithCancel(ctx)
	s := &consulService{cancel: cancel, pinned: pinned}
	c.services[name] = s
	cc := c.opts.Config
	health := c.opts.Client.Health()
	wg.Add(1)
	go func() {
		defer wg.Done()
		runWatch(sctx, c.watchOptions(), c.queryOptions(), watchHooks[[]*api.ServiceEntry]{
			query: func(q *api.QueryOptions) ([]*api.ServiceEntry, *api.QueryMeta, error) {
				return health.ServiceMultipleTags(name, cc.Tags, !cc.AllowWarning, q)
			},
			update: func(entries []*api.ServiceEntry, index uint64) {
				c.contact()
				insts := instancesFromEntries(name, entries, cc.AllowWarning)
				var routes []RouteHint
				if cc.Routes.Enabled {
					var errs []error
					routes, errs = routesFromMeta(name, entries, cc.Routes.MetaKey)
					for _, err := range errs {
						c.log.Warn("ignoring a route in service meta", "error", err)
					}
				}
				c.mu.Lock()
				defer c.mu.Unlock()
				if c.services[name] != s {
					return // stopped meanwhile
				}
				s.index = index
				if s.synced && sameInstances(s.instances, insts) && slices.Equal(s.metaRoutes, routes) {
					return
				}
				s.synced, s.instances, s.metaRoutes = true, insts, routes
				c.signal()
			},
			failed:    func(err error, first bool) { c.fail("watching service "+name, err, first) },
			recovered: func() { c.recovered("watching service " + name) },
		})
	}()
}

// watchCatalog follows the service list for route tags, and the services
// that carry the route meta key (whose values arrive with their health
// entries), and starts and stops the watches of the services they name.
func (c *Consul) watchCatalog(ctx context.Context, wg *sync.WaitGroup) {
	catalog := c.opts.Client.Catalog()
	rc := c.opts.Config.Routes
	query := func(filter string) func(q *api.QueryOptions) (map[string][]string, *api.QueryMeta, error) {
		return func(q *api.QueryOptions) (map[string][]string, *api.QueryMeta, error) {
			q.Filter = filter
			return catalog.Services(q)
		}
	}
	var metaSynced bool
	var metaServices map[string]bool
	var tagServices map[string]bool
	// reconcile runs with c.mu held after either list changed.
	reconcile := func() {
		for name := range tagServices {
			c.startServiceLocked(ctx, wg, name, false)
		}
		for name := range metaServices {
			c.startServiceLocked(ctx, wg, name, false)
		}
		for name, s := range c.services {
			if !s.pinned && !tagServices[name] && !metaServices[name] {
				s.cancel()
				delete(c.services, name)
			}
		}
		c.catalogSynced = tagServices != nil && metaSynced
		c.signal()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		runWatch(ctx, c.watchOptions(), c.queryOptions(), watchHooks[map[string][]string]{
			// The meta key is known to be a plain token (config validation).
			query: query(fmt.Sprintf("%q in ServiceMeta", rc.MetaKey)),
			update: func(services map[string][]string, _ uint64) {
				c.contact()
				set := make(map[string]bool, len(services))
				for name := range services {
					set[name] = true
				}
				c.mu.Lock()
				defer c.mu.Unlock()
				metaServices, metaSynced = set, true
				reconcile()
			},
			failed:    func(err error, first bool) { c.fail("watching the catalog for route meta", err, first) },
			recovered: func() { c.recovered("watching the catalog for route meta") },
		})
	}()
	runWatch(ctx, c.watchOptions(), c.queryOptions(), watchHooks[map[string][]string]{
		query: query(""),
		update: func(services map[string][]string, _ uint64) {
			c.contact()
			hints, errs := routesFromTags(services, rc.TagPrefix)
			for _, err := range errs {
				c.log.Warn("ignoring a route tag", "error", err)
			}
			set := make(map[string]bool, len(hints))
			for _, h := range hints {
				set[h.Service] = true
			}
			c.mu.Lock()
			defer c.mu.Unlock()
			tagServices, c.tagRoutes = set, hints
			reconcile()
		},
		failed:    func(err error, first bool) { c.fail("watching the service catalog", err, first) },
		recovered: func() { c.recovered("watching the service catalog") },
	})
}

func (c *Consul) contact() { c.lastContact.Store(time.Now().UnixNano()) }

// fail counts a failed query; the first failure of a run of them is logged
// as a warning, the rest at debug level.
func (c *Consul) fail(what string, err error, first bool) {
	c.errors.Add(1)
	msg := what + ": " + err.Error()
	c.lastErr.Store(&msg)
	level := slog.LevelDebug
	if first {
		level = slog.LevelWarn
	}
	c.log.Log(context.Background(), level, "consul query failed; serving the last known instances", "watch", what, "error", err)
}

func (c *Consul) recovered(what string) {
	c.log.Info("consul answers again", "watch", what)
}

// build assembles the current snapshot; ready is false until every pinned
// service (and the catalog, when routes are on) has been read once.
func (c *Consul) build() (snap *Snapshot, ready bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.opts.Config.Routes.Enabled && !c.catalogSynced {
		return nil, false
	}
	byName := make(map[string][]*Instance, len(c.services)+len(c.opts.Static))
	for name, svc := range c.opts.Static {
		if len(svc.Instances) > 0 {
			byName[name] = StaticSnapshot(map[string]config.Service{name: svc}, time.Time{}).Services[name].Instances
		}
	}
	var routes []RouteHint
	for name, s := range c.services {
		if !s.synced {
			if s.pinned {
				return nil, false
			}
			continue
		}
		byName[name] = s.instances
		routes = append(routes, s.metaRoutes...)
	}
	// A tag route joins once its service's instances are known, so that it
	// never answers "no instance" while the health watch starts.
	for _, h := range c.tagRoutes {
		if _, ok := byName[h.Service]; ok {
			routes = append(routes, h)
		}
	}
	sortHints(routes)
	snap = NewSnapshot("consul", byName, time.Now())
	snap.Routes = dedupeHints(routes)
	return snap, true
}

// sameSnapshot reports whether two snapshots route identically.
func sameSnapshot(a, b *Snapshot) bool {
	if len(a.Services) != len(b.Services) || !slices.Equal(a.Routes, b.Routes) {
		return false
	}
	for name, sa := range a.Services {
		sb, ok := b.Services[name]
		if !ok || !sameInstances(sa.Instances, sb.Instances) {
			return false
		}
	}
	return true
}

// ConsulStatus is the health of the Consul source, shown on
// /admin/instances.
type ConsulStatus struct {
	// Synced is true once every watched service has been read.
	Synced bool `json:"synced"`
	// LastContact is when Consul last answered.
	LastContact time.Time `json:"last_contact"`
	// StalenessSeconds is the time since LastContact: it grows while
	// Consul is unreachable and the last snapshot is served.
	StalenessSeconds float64 `json:"staleness_seconds"`
	// Errors counts failed queries; LastError is the latest.
	Errors    uint64 `json:"errors_total"`
	LastError string `json:"last_error,omitempty"`
	// Requests counts HTTP requests to Consul.
	Requests uint64 `json:"requests_total"`
	// Indexes is the Consul index each watched service is at.
	Indexes map[string]uint64 `json:"indexes"`
}

// Status reports the source's health.
func (c *Consul) Status() ConsulStatus {
	st := ConsulStatus{Synced: c.synced.Load(), Errors: c.errors.Load(), Indexes: map[string]uint64{}}
	if ns := c.lastContact.Load(); ns != 0 {
		st.LastContact = time.Unix(0, ns)
		st.StalenessSeconds = time.Since(st.LastContact).Seconds()
	}
	if e := c.lastErr.Load(); e != nil {
		st.LastError = *e
	}
	if c.opts.Requests != nil {
		st.Requests = c.opts.Requests.Count()
	}
	c.mu.Lock()
	for name, s := range c.services {
		st.Indexes[name] = s.index
	}
	c.mu.Unlock()
	return st
}
