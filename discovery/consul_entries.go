package discovery

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/hashicorp/consul/api"
)

// This file holds the pure functions that turn Consul's API structs into
// instances and route hints. They take no client and are tested on api
// values, as fabio tests its registry code.

// WeightMetaKey is the service meta key whose value, a whole number from 1
// to 10000, overrides Consul's Weights as the instance's weight.
const WeightMetaKey = "weight"

// instancesFromEntries turns the entries of a health query into instances.
// Critical (and maintenance) instances are dropped; warning instances are
// kept only when allowWarning is set. The address is the service address,
// else the node's. The weight is the "weight" meta value when valid, else
// Weights.Passing (Weights.Warning for a warning instance), at least 1.
func instancesFromEntries(service string, entries []*api.ServiceEntry, allowWarning bool) []*Instance {
	out := make([]*Instance, 0, len(entries))
	for _, e := range entries {
		if e == nil || e.Service == nil {
			continue
		}
		status := e.Checks.AggregatedStatus()
		var health Health
		switch status {
		case api.HealthPassing:
			health = Passing
		case api.HealthWarning:
			if !allowWarning {
				continue
			}
			health = Warning
		default: // critical, maintenance
			continue
		}
		addr := e.Service.Address
		if addr == "" && e.Node != nil {
			addr = e.Node.Address
		}
		if addr == "" || e.Service.Port <= 0 {
			continue
		}
		weight := e.Service.Weights.Passing
		if health == Warning {
			weight = e.Service.Weights.Warning
		}
		if v, ok := e.Service.Meta[WeightMetaKey]; ok {
			if n, err := strconv.Atoi(v); err == nil && n >= 1 && n <= 10000 {
				weight = n
			}
		}
		if weight < 1 {
			weight = 1
		}
		id := e.Service.ID
		if e.Node != nil && e.Node.Node != "" {
			// Service IDs are unique per node only.
			id = e.Node.Node + "/" + id
		}
		out = append(out, NewInstance(Instance{
			ID:      id,
			Service: service,
			Address: addr,
			Port:    e.Service.Port,
			Weight:  weight,
			Tags:    e.Service.Tags,
			Meta:    e.Service.Meta,
			Health:  health,
			Source:  "consul",
		}))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// parseRouteSpec reads a route written in a tag or meta value:
// "/products" or "shop.example.com/products".
func parseRouteSpec(spec string) (host, prefix string, err error) {
	spec = strings.TrimSpace(spec)
	i := strings.IndexByte(spec, '/')
	if i < 0 {
		return "", "", fmt.Errorf("route %q: want a path such as /products, optionally after a host", spec)
	}
	host, prefix = strings.ToLower(spec[:i]), spec[i:]
	if strings.ContainsAny(prefix, "?# \t") || strings.Contains(prefix, "//") {
		return "", "", fmt.Errorf("route %q: the path must not contain ?, #, spaces or //", spec)
	}
	if strings.ContainsAny(host, " \t:") {
		return "", "", fmt.Errorf("route %q: invalid host %q", spec, host)
	}
	return host, prefix, nil
}

// routesFromTags returns the route hints of the catalog's services whose
// tags start with tagPrefix. Invalid route tags are returned as errors
// and skipped.
func routesFromTags(services map[string][]string, tagPrefix string) ([]RouteHint, []error) {
	var hints []RouteHint
	var errs []error
	for name, tags := range services {
		for _, tag := range tags {
			spec, ok := strings.CutPrefix(tag, tagPrefix)
			if !ok {
				continue
			}
			host, prefix, err := parseRouteSpec(spec)
			if err != nil {
				errs = append(errs, fmt.Errorf("service %q tag %q: %w", name, tag, err))
				continue
			}
			hints = append(hints, RouteHint{Service: name, Host: host, PathPrefix: prefix, Origin: "consul tag"})
		}
	}
	sortHints(hints)
	return dedupeHints(hints), errs
}

// routesFromMeta returns the route hints named by the metaKey meta value
// of a service's instances.
func routesFromMeta(service string, entries []*api.ServiceEntry, metaKey string) ([]RouteHint, []error) {
	var hints []RouteHint
	var errs []error
	for _, e := range entries {
		if e == nil || e.Service == nil {
			continue
		}
		spec, ok := e.Service.Meta[metaKey]
		if !ok || spec == "" {
			continue
		}
		host, prefix, err := parseRouteSpec(spec)
		if err != nil {
			errs = append(errs, fmt.Errorf("service %q meta %s: %w", service, metaKey, err))
			continue
		}
		hints = append(hints, RouteHint{Service: service, Host: host, PathPrefix: prefix, Origin: "consul meta"})
	}
	sortHints(hints)
	return dedupeHints(hints), errs
}

func sortHints(h []RouteHint) {
	sort.Slice(h, func(i, j int) bool {
		if h[i].Service != h[j].Service {
			return h[i].Service < h[j].Service
		}
		if h[i].Host != h[j].Host {
			return h[i].Host < h[j].Host
		}
		return h[i].PathPrefix < h[j].PathPrefix
	})
}

// dedupeHints drops repeats from a sorted slice.
func dedupeHints(h []RouteHint) []RouteHint {
	out := h[:0]
	for i, x := range h {
		if i > 0 && x.Service == h[i-1].Service && x.Host == h[i-1].Host && x.PathPrefix == h[i-1].PathPrefix {
			continue
		}
		out = append(out, x)
	}
	return out
}

// sameInstances reports whether two sorted instance lists are equal in
// every field routing depends on.
func sameInstances(a, b []*Instance) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.ID != y.ID || x.HostPort != y.HostPort || x.Weight != y.Weight || x.Health != y.Health ||
			!equalStrings(x.Tags, y.Tags) || !equalMaps(x.Meta, y.Meta) {
			return false
		}
	}
	return true
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
