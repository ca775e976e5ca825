// Package discovery finds the instances of services and publishes them as
// immutable Snapshot values. Sources (the static catalog of the config file,
// Consul) publish whole snapshots; readers load the latest one through a
// Store without locks. discovery knows nothing about HTTP routing.
package discovery

import (
	"net"
	"sort"
	"strconv"
	"time"
)

// Health is an instance's health as its source reports it.
type Health string

// Health values, as Consul names them.
const (
	Passing  Health = "passing"
	Warning  Health = "warning"
	Critical Health = "critical"
)

// Instance is one reachable address of a service. Instances are immutable
// once published in a Snapshot.
type Instance struct {
	// ID is unique within the service.
	ID string `json:"id"`
	// Service is the name of the service the instance belongs to.
	Service string `json:"service"`
	// Address is an IP address or host name.
	Address string `json:"address"`
	// Port is the TCP port.
	Port int `json:"port"`
	// Weight is the relative share of traffic for weighted balancers (≥ 1).
	Weight int `json:"weight"`
	// Tags and Meta are free-form labels from the source.
	Tags []string          `json:"tags,omitempty"`
	Meta map[string]string `json:"meta,omitempty"`
	// Health is the source's view of the instance.
	Health Health `json:"health"`
	// Source names where the instance came from: "static" or "consul".
	Source string `json:"source"`
	// HostPort is Address and Port joined, computed once at publication.
	HostPort string `json:"-"`
}

// NewInstance returns an instance with HostPort filled in and an empty ID
// and zero weight defaulted.
func NewInstance(in Instance) *Instance {
	in.HostPort = net.JoinHostPort(in.Address, strconv.Itoa(in.Port))
	if in.ID == "" {
		in.ID = in.HostPort
	}
	if in.Weight <= 0 {
		in.Weight = 1
	}
	if in.Health == "" {
		in.Health = Passing
	}
	return &in
}

// Service is the set of instances of one service in a snapshot, sorted by ID.
type Service struct {
	Name      string      `json:"name"`
	Instances []*Instance `json:"instances"`
}

// Snapshot is an immutable view of every known service. It is never
// modified after it is published; a change publishes a new Snapshot.
type Snapshot struct {
	// Services by name.
	Services map[string]*Service
	// Source names the source that published the snapshot.
	Source string
	// Version increases with every publication from one Store.
	Version uint64
	// Created is when the snapshot was built.
	Created time.Time
	// Routes are routes the source found in its catalog (Consul services
	// tagged for meshgate), added after the configured ones.
	Routes []RouteHint
}

// RouteHint is a route a discovery source derived from its catalog: a
// path prefix, and optionally a host, that leads to a service.
type RouteHint struct {
	// Service the route leads to.
	Service string `json:"service"`
	// Host to match, "" for any.
	Host string `json:"host,omitempty"`
	// PathPrefix to match; starts with "/".
	PathPrefix string `json:"path_prefix"`
	// Origin says where the hint came from, e.g. "consul tag" or "consul meta".
	Origin string `json:"origin"`
}

// Service returns the named service, or nil.
func (s *Snapshot) Service(name string) *Service {
	if s == nil {
		return nil
	}
	return s.Services[name]
}

// NewSnapshot builds a snapshot from instances grouped by service name,
// sorting each service's instances by ID so equal inputs give equal
// snapshots.
func NewSnapshot(source string, services map[string][]*Instance, now time.Time) *Snapshot {
	snap := &Snapshot{Services: make(map[string]*Service, len(services)), Source: source, Created: now}
	for name, insts := range services {
		sorted := append([]*Instance(nil), insts...)
		sort.Slice(sorted, func(i, j int) bool { return sorted[i].ID < sorted[j].ID })
		snap.Services[name] = &Service{Name: name, Instances: sorted}
	}
	return snap
}
