package proxy

import (
	"fmt"
	"sync/atomic"

	"github.com/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/discovery"
)

// This file adds what discovery finds beyond the configuration: routes
// from Consul's catalog (tags or meta), and the services they lead to that
// the configuration does not declare, which get config.DefaultService's
// settings. Configured routes come first, so on equal matches they win.

// discoveredRoutes compiles the snapshot's route hints after the n
// configured routes, building upstreams for undeclared services. Called
// from apply with g.mu held.
func (g *Gateway) discoveredRoutes(cfg *config.Config, t *table, n int,
	transports map[string]*transportEntry, states map[string]map[string]*endpointState) ([]*Route, error) {
	if t.snap == nil || len(t.snap.Routes) == 0 {
		return nil, nil
	}
	strip := cfg.Discovery.Consul != nil && cfg.Discovery.Consul.Routes.StripPrefix
	routes := make([]*Route, 0, len(t.snap.Routes))
	for i, h := range t.snap.Routes {
		up := t.upstreams[h.Service]
		if up == nil {
			var err error
			up, err = g.buildUpstream(h.Service, config.DefaultService(), t.snap, transports, states)
			if err != nil {
				return nil, fmt.Errorf("building discovered service %q: %w", h.Service, err)
			}
			t.upstreams[h.Service] = up
		}
		rc := config.Route{
			Name:        routeHintName(h),
			Match:       config.Match{Host: h.Host, PathPrefix: h.PathPrefix},
			StripPrefix: strip,
			Service:     h.Service,
		}
		routes = append(routes, compileRoute(n+i, rc, up))
	}
	return routes, nil
}

func routeHintName(h discovery.RouteHint) string {
	return "discovered:" + h.Service + ":" + h.Host + h.PathPrefix
}

// discoveryStatus holds the function that reports the discovery source's
// health on /admin/instances.
type discoveryStatus = atomic.Pointer[func() any]

// SetDiscoveryStatus makes /admin/instances include what f reports about
// the discovery source (errors, staleness, indexes). f must be safe for
// concurrent use.
func (g *Gateway) SetDiscoveryStatus(f func() any) { g.discovery.Store(&f) }
