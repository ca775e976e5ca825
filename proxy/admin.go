package proxy

import (
	"encoding/json"
	"net/http"
	"sort"
	"time"

	"github.com/meshgate/meshgate/proxy/adminui"
)

// AdminHandler serves the admin listener: /livez, /readyz, the JSON
// views under /admin/ and the admin page at /admin/ui, which shows them
// live in a browser. extra handlers (for example /metrics) are mounted as
// given.
func (g *Gateway) AdminHandler(extra map[string]http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		switch {
		case g.draining.Load():
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "draining"})
		case g.table.Load().snap == nil:
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "waiting for the first discovery snapshot"})
		default:
			writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
		}
	})
	mux.HandleFunc("GET /admin/config", g.adminConfig)
	mux.HandleFunc("GET /admin/routes", g.adminRoutes)
	mux.HandleFunc("GET /admin/instances", g.adminInstances)
	// The page answers on /admin/ui itself (no redirect to /admin/ui/) and
	// serves its assets under /admin/ui/; it answers other methods itself.
	ui := adminui.Handler()
	mux.Handle(adminui.Prefix, ui)
	mux.Handle(adminui.Prefix+"/", ui)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "unknown admin endpoint; see /admin/ui (the admin page), /admin/config, /admin/routes, /admin/instances, /livez, /readyz")
	})
	for p, h := range extra {
		mux.Handle(p, h)
	}
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

type reloadView struct {
	Reloads   uint64     `json:"reloads_total"`
	Failures  uint64     `json:"reload_failures_total"`
	LastError *string    `json:"last_error"`
	LoadedAt  *time.Time `json:"loaded_at"`
}

func (g *Gateway) adminConfig(w http.ResponseWriter, r *http.Request) {
	t := g.table.Load()
	writeJSON(w, http.StatusOK, struct {
		Config any        `json:"config"`
		Reload reloadView `json:"reload"`
	}{
		Config: t.cfg.Redacted(),
		Reload: reloadView{
			Reloads:   g.reloads.Load(),
			Failures:  g.reloadFailures.Load(),
			LastError: g.lastReloadErr.Load(),
			LoadedAt:  g.loadedAt.Load(),
		},
	})
}

type routeView struct {
	Name          string            `json:"name"`
	Host          string            `json:"host,omitempty"`
	Path          string            `json:"path,omitempty"`
	PathPrefix    string            `json:"path_prefix,omitempty"`
	Methods       []string          `json:"methods,omitempty"`
	Headers       map[string]string `json:"headers,omitempty"`
	StripPrefix   bool              `json:"strip_prefix,omitempty"`
	RewritePrefix string            `json:"rewrite_prefix,omitempty"`
	Service       string            `json:"service,omitempty"`
	Parts         []string          `json:"parts,omitempty"` // an aggregate route's parts
	Instances     int               `json:"instances"`
	Precedence    int               `json:"precedence"`
}

// adminRoutes lists the routes in the order the router tries them.
func (g *Gateway) adminRoutes(w http.ResponseWriter, r *http.Request) {
	t := g.table.Load()
	var ordered []*Route
	exact := make([]string, 0, len(t.router.exact))
	for p := range t.router.exact {
		exact = append(exact, p)
	}
	sort.Strings(exact)
	for _, p := range exact {
		ordered = append(ordered, t.router.exact[p]...)
	}
	ordered = append(ordered, t.router.prefixes...)
	views := make([]routeView, 0, len(ordered))
	for i, rte := range ordered {
		m := rte.Config.Match
		v := routeView{
			Name: rte.Name, Host: m.Host, Path: m.Path, PathPrefix: rte.prefix, Methods: m.Methods,
			Headers: m.Headers, StripPrefix: rte.Config.StripPrefix, RewritePrefix: rte.Config.RewritePrefix,
			Service: rte.upstream.name, Instances: len(rte.upstream.endpoints), Precedence: i + 1,
		}
		if rte.agg != nil {
			for _, p := range rte.agg.parts {
				v.Parts = append(v.Parts, p.name)
			}
		}
		views = append(views, v)
	}
	writeJSON(w, http.StatusOK, map[string]any{"routes": views})
}

type instanceView struct {
	ID       string            `json:"id"`
	Address  string            `json:"address"`
	Port     int               `json:"port"`
	Weight   int               `json:"weight"`
	Health   string            `json:"health"`
	Source   string            `json:"source"`
	Tags     []string          `json:"tags,omitempty"`
	Meta     map[string]string `json:"meta,omitempty"`
	InFlight int64             `json:"in_flight"`
	Requests uint64            `json:"requests_total"`
	Failures uint64            `json:"failures_total"`
	Breaker  *breakerView      `json:"circuit_breaker,omitempty"`
	Ejection *ejectionView     `json:"ejection,omitempty"`
}

type breakerView struct {
	State               string  `json:"state"`
	Requests            uint32  `json:"window_requests"`
	Failures            uint32  `json:"window_failures"`
	ConsecutiveFailures uint32  `json:"consecutive_failures"`
	RetryAfterSeconds   float64 `json:"open_for_seconds,omitempty"`
}

type ejectionView struct {
	Ejected             bool       `json:"ejected"`
	Until               *time.Time `json:"until,omitempty"`
	Ejections           int        `json:"ejections_total"`
	ConsecutiveFailures int        `json:"consecutive_failures"`
}

type serviceView struct {
	Name         string         `json:"name"`
	LoadBalancer string         `json:"load_balancer"`
	Protocol     string         `json:"protocol"`
	Instances    []instanceView `json:"instances"`
	Excluded     []instanceView `json:"excluded,omitempty"`
}

// adminInstances shows every service's instances as the current table
// uses them, with health and live counters. Critical instances are listed
// under "excluded".
func (g *Gateway) adminInstances(w http.ResponseWriter, r *http.Request) {
	t := g.table.Load()
	names := make([]string, 0, len(t.upstreams))
	for n := range t.upstreams {
		names = append(names, n)
	}
	sort.Strings(names)
	services := make([]serviceView, 0, len(names))
	for _, n := range names {
		up := t.upstreams[n]
		sv := serviceView{Name: n, LoadBalancer: up.cfg.LoadBalancer.Policy, Protocol: up.cfg.Protocol, Instances: []instanceView{}}
		for _, ep := range up.endpoints {
			iv := viewOf(ep)
			sv.Instances = append(sv.Instances, iv)
		}
		for _, ep := range up.excluded {
			sv.Excluded = append(sv.Excluded, viewOf(ep))
		}
		services = append(services, sv)
	}
	snapView := map[string]any{"available": t.snap != nil}
	if t.snap != nil {
		snapView["source"] = t.snap.Source
		snapView["version"] = t.snap.Version
		snapView["created"] = t.snap.Created
		snapView["age_seconds"] = time.Since(t.snap.Created).Seconds()
	}
	view := map[string]any{"snapshot": snapView, "services": services}
	if f := g.discovery.Load(); f != nil {
		view["discovery"] = (*f)()
	}
	writeJSON(w, http.StatusOK, view)
}

func viewOf(ep *endpoint) instanceView {
	in := ep.inst
	iv := instanceView{
		ID: in.ID, Address: in.Address, Port: in.Port, Weight: in.Weight, Health: string(in.Health),
		Source: in.Source, Tags: in.Tags, Meta: in.Meta,
		InFlight: ep.state.inFlight.Load(), Requests: ep.state.requests.Load(), Failures: ep.state.failures.Load(),
	}
	if ep.res != nil {
		req, fail, consec := ep.res.breaker.Counts()
		iv.Breaker = &breakerView{State: ep.res.breaker.State(), Requests: req, Failures: fail,
			ConsecutiveFailures: consec, RetryAfterSeconds: ep.res.breaker.RetryAfter().Seconds()}
		os := ep.res.outlier.Status(time.Now())
		iv.Ejection = &ejectionView{Ejected: os.Ejected, Ejections: os.Ejections, ConsecutiveFailures: os.ConsecutiveFailures}
		if os.Ejected {
			until := os.Until
			iv.Ejection.Until = &until
		}
	}
	return iv
}
