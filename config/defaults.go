package config

import (
	"net"
	"strconv"
	"strings"
	"time"
)

// Values of Admin.Address.
const (
	// DefaultAdminAddress is where the admin listener binds unless
	// admin.address says otherwise: loopback only.
	DefaultAdminAddress = "127.0.0.1:9901"
	// AdminOff as admin.address disables the admin listener.
	AdminOff = "off"
)

// Defaults of Server, applied to the fields a file leaves out.
const (
	// DefaultReadHeaderTimeout is server.read_header_timeout: 10s.
	DefaultReadHeaderTimeout = Duration(10 * time.Second)
	// DefaultIdleTimeout is server.idle_timeout: 120s.
	DefaultIdleTimeout = Duration(120 * time.Second)
	// DefaultMaxHeaderBytes is server.max_header_bytes: 64KiB.
	DefaultMaxHeaderBytes = Size(64 << 10)
	// DefaultMaxBodyBytes is server.max_body_bytes: 10MiB.
	DefaultMaxBodyBytes = Size(10 << 20)
	// DefaultGracePeriod is server.grace_period: 30s.
	DefaultGracePeriod = Duration(30 * time.Second)
	// DefaultDrainDelay is server.drain_delay: none.
	DefaultDrainDelay = Duration(0)
)

// Limits of Server that validation enforces.
const (
	// MinMaxHeaderBytes is the smallest server.max_header_bytes: 1KiB.
	MinMaxHeaderBytes = Size(1 << 10)
	// MaxMaxHeaderBytes is the largest server.max_header_bytes: 1MiB.
	MaxMaxHeaderBytes = Size(1 << 20)
	// MaxTrustedHops is the largest server.trusted_hops.
	MaxTrustedHops = 16
)

// Values of Service.Protocol.
const (
	// ProtocolHTTP1 is HTTP/1.1 to the instances, the default.
	ProtocolHTTP1 = "http1"
	// ProtocolH2C is cleartext HTTP/2 with prior knowledge, for gRPC.
	ProtocolH2C = "h2c"
)

// Values of LoadBalancer.Policy.
const (
	// PolicyRoundRobin takes the instances in turn, the default.
	PolicyRoundRobin = "round_robin"
	// PolicyWeightedRoundRobin takes the instances in turn, in proportion
	// to their weights.
	PolicyWeightedRoundRobin = "weighted_round_robin"
	// PolicyLeastRequest picks the less loaded of two random instances.
	PolicyLeastRequest = "least_request"
	// PolicyConsistentHash keeps requests with the same hash_on value on
	// the same instance.
	PolicyConsistentHash = "consistent_hash"
)

// Values of Instance.Health.
const (
	// HealthPassing instances take traffic, the default.
	HealthPassing = "passing"
	// HealthWarning marks a degraded instance; it still takes traffic.
	HealthWarning = "warning"
	// HealthCritical instances take no traffic.
	HealthCritical = "critical"
)

// Defaults and limits of Service and Instance.
const (
	// DefaultProtocol is a service's protocol: http1.
	DefaultProtocol = ProtocolHTTP1
	// DefaultPolicy is a service's load_balancer.policy: round_robin.
	DefaultPolicy = PolicyRoundRobin
	// DefaultConnectTimeout is a service's timeouts.connect: 2s.
	DefaultConnectTimeout = Duration(2 * time.Second)
	// DefaultResponseHeaderTimeout is a service's timeouts.response_header: 30s.
	DefaultResponseHeaderTimeout = Duration(30 * time.Second)
	// DefaultIdleConnTimeout is a service's timeouts.idle_conn: 90s.
	DefaultIdleConnTimeout = Duration(90 * time.Second)
	// DefaultMaxIdleConnsPerInstance is a service's
	// max_idle_conns_per_instance: 256.
	DefaultMaxIdleConnsPerInstance = 256
	// DefaultWeight is an instance's weight when unset or 0.
	DefaultWeight = 1
	// MaxWeight is the largest instance weight.
	MaxWeight = 10000
	// DefaultHealth is an instance's health: passing.
	DefaultHealth = HealthPassing
)

// DefaultPathPrefix is a route's match.path_prefix when it sets neither
// path nor path_prefix: the route takes every path.
const DefaultPathPrefix = "/"

// SetDefaults fills every field that has a default and is still the zero
// value, as documented on the fields, and normalises values (route hosts
// are lower-cased). Use it on a Config built in Go before [Config.Validate];
// [Load] and [Parse] apply the defaults themselves, and only to fields the
// file leaves out, so that an explicit zero in a file is validated as such.
//
// An Instance weight of 0 always becomes 1, in files too: 0 is not a way
// to drain an instance (set its health to critical for that).
func (c *Config) SetDefaults() {
	applyDefaults(c, func(_ fpath, zero bool) bool { return !zero })
}

// applyDefaults fills the fields for which isSet is false. isSet gets the
// field's path and whether it holds the zero value.
func applyDefaults(c *Config, isSet func(p fpath, zero bool) bool) {
	var root fpath
	if p := root.field("admin").field("address"); !isSet(p, c.Admin.Address == "") {
		c.Admin.Address = DefaultAdminAddress
	}

	sp := root.field("server")
	duration(isSet, sp.field("read_header_timeout"), &c.Server.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	duration(isSet, sp.field("idle_timeout"), &c.Server.IdleTimeout, DefaultIdleTimeout)
	duration(isSet, sp.field("grace_period"), &c.Server.GracePeriod, DefaultGracePeriod)
	duration(isSet, sp.field("drain_delay"), &c.Server.DrainDelay, DefaultDrainDelay)
	if p := sp.field("max_header_bytes"); !isSet(p, c.Server.MaxHeaderBytes == 0) {
		c.Server.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if p := sp.field("max_body_bytes"); !isSet(p, c.Server.MaxBodyBytes == 0) {
		c.Server.MaxBodyBytes = DefaultMaxBodyBytes
	}

	lp := root.field("listeners")
	for i := range c.Listeners {
		l := &c.Listeners[i]
		if p := lp.index(i).field("name"); !isSet(p, l.Name == "") {
			l.Name = l.Address
		}
	}

	svp := root.field("services")
	for name, s := range c.Services {
		p := svp.key(name)
		lb := p.field("load_balancer")
		if !isSet(lb.field("policy"), s.LoadBalancer.Policy == "") {
			s.LoadBalancer.Policy = DefaultPolicy
		}
		if !isSet(p.field("protocol"), s.Protocol == "") {
			s.Protocol = DefaultProtocol
		}
		tp := p.field("timeouts")
		duration(isSet, tp.field("connect"), &s.Timeouts.Connect, DefaultConnectTimeout)
		duration(isSet, tp.field("response_header"), &s.Timeouts.ResponseHeader, DefaultResponseHeaderTimeout)
		duration(isSet, tp.field("idle_conn"), &s.Timeouts.IdleConn, DefaultIdleConnTimeout)
		if !isSet(p.field("max_idle_conns_per_instance"), s.MaxIdleConnsPerInstance == 0) {
			s.MaxIdleConnsPerInstance = DefaultMaxIdleConnsPerInstance
		}
		ip := p.field("instances")
		for i := range s.Instances {
			in := &s.Instances[i]
			p := ip.index(i)
			if !isSet(p.field("id"), in.ID == "") {
				in.ID = net.JoinHostPort(in.Address, strconv.Itoa(in.Port))
			}
			if in.Weight == 0 {
				in.Weight = DefaultWeight
			}
			if !isSet(p.field("health"), in.Health == "") {
				in.Health = DefaultHealth
			}
		}
		c.Services[name] = s
	}

	rp := root.field("routes")
	for i := range c.Routes {
		r := &c.Routes[i]
		p := rp.index(i)
		if !isSet(p.field("name"), r.Name == "") {
			r.Name = DefaultRouteName(i)
		}
		mp := p.field("match")
		if !isSet(mp.field("path"), r.Match.Path == "") && !isSet(mp.field("path_prefix"), r.Match.PathPrefix == "") {
			r.Match.PathPrefix = DefaultPathPrefix
		}
		r.Match.Host = strings.ToLower(r.Match.Host)
	}
}

func duration(isSet func(fpath, bool) bool, p fpath, d *Duration, def Duration) {
	if !isSet(p, *d == 0) {
		*d = def
	}
}

// DefaultRouteName is the name of the route at index i (0-based) of
// Config.Routes when it has none: "route-0", "route-1", ...
func DefaultRouteName(i int) string {
	return "route-" + strconv.Itoa(i)
}
