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
	// DefaultEscapedSlashes is server.path_normalization.escaped_slashes.
	DefaultEscapedSlashes = "reject"
	// DefaultRedisTimeout is policies.redis.timeout.
	DefaultRedisTimeout = Duration(100 * time.Millisecond)
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

// Defaults and limits of Retry (a service's retry). per_try_timeout has no
// constant: it defaults to the service's timeouts.response_header.
const (
	// DefaultRetryAttempts is retry.attempts, the tries per request with
	// the first included: 3.
	DefaultRetryAttempts = 3
	// MaxRetryAttempts is the largest retry.attempts: 10.
	MaxRetryAttempts = 10
	// MaxPerTryTimeout is the longest retry.per_try_timeout: 10m.
	MaxPerTryTimeout = Duration(10 * time.Minute)
	// DefaultRetryBackoffBase is retry.backoff_base: 25ms.
	DefaultRetryBackoffBase = Duration(25 * time.Millisecond)
	// DefaultRetryBackoffMax is retry.backoff_max: 250ms.
	DefaultRetryBackoffMax = Duration(250 * time.Millisecond)
	// MaxRetryBackoff is the longest retry.backoff_base and
	// retry.backoff_max: 1m.
	MaxRetryBackoff = Duration(time.Minute)
	// DefaultRetryAfterMax is retry.retry_after_max: 1s.
	DefaultRetryAfterMax = Duration(time.Second)
	// MaxRetryAfterMax is the largest retry.retry_after_max: 1m.
	MaxRetryAfterMax = Duration(time.Minute)
	// DefaultReplayLimit is retry.replay_limit: 64KiB.
	DefaultReplayLimit = Size(64 << 10)
	// MaxReplayLimit is the largest retry.replay_limit: 16MiB.
	MaxReplayLimit = Size(16 << 20)
	// DefaultRetryBudgetRatio is retry.budget.ratio: 0.2, a fifth of the
	// requests.
	DefaultRetryBudgetRatio = 0.2
	// DefaultRetryBudgetMinPerSecond is retry.budget.min_per_second: 10.
	DefaultRetryBudgetMinPerSecond = 10
	// MaxRetryBudgetMinPerSecond is the largest
	// retry.budget.min_per_second: 10000.
	MaxRetryBudgetMinPerSecond = 10000
	// DefaultRetryBudgetWindow is retry.budget.window: 10s.
	DefaultRetryBudgetWindow = Duration(10 * time.Second)
	// MinRetryBudgetWindow is the shortest retry.budget.window: 1s.
	MinRetryBudgetWindow = Duration(time.Second)
	// MaxRetryBudgetWindow is the longest retry.budget.window: 5m.
	MaxRetryBudgetWindow = Duration(5 * time.Minute)
)

// DefaultRetryStatuses returns retry.statuses when the file leaves it out:
// 502, 503 and 504, the statuses of a gateway that could not get an
// answer. Each call returns a new slice.
func DefaultRetryStatuses() []int {
	return []int{502, 503, 504}
}

// Defaults and limits of CircuitBreaker (a service's circuit_breaker).
const (
	// DefaultBreakerConsecutiveFailures is
	// circuit_breaker.consecutive_failures: 5.
	DefaultBreakerConsecutiveFailures = 5
	// MaxBreakerConsecutiveFailures is the largest
	// circuit_breaker.consecutive_failures: 1000.
	MaxBreakerConsecutiveFailures = 1000
	// DefaultBreakerFailureRatio is circuit_breaker.failure_ratio: 0.5.
	DefaultBreakerFailureRatio = 0.5
	// DefaultBreakerMinRequests is circuit_breaker.min_requests: 20.
	DefaultBreakerMinRequests = 20
	// MaxBreakerMinRequests is the largest circuit_breaker.min_requests:
	// 100000.
	MaxBreakerMinRequests = 100000
	// DefaultBreakerWindow is circuit_breaker.window: 10s.
	DefaultBreakerWindow = Duration(10 * time.Second)
	// DefaultBreakerOpenTime is circuit_breaker.open_time: 10s.
	DefaultBreakerOpenTime = Duration(10 * time.Second)
	// MinBreakerTime is the shortest circuit_breaker.window and
	// circuit_breaker.open_time: 100ms.
	MinBreakerTime = Duration(100 * time.Millisecond)
	// MaxBreakerTime is the longest circuit_breaker.window and
	// circuit_breaker.open_time: 1h.
	MaxBreakerTime = Duration(time.Hour)
	// DefaultBreakerHalfOpenRequests is circuit_breaker.half_open_requests: 1.
	DefaultBreakerHalfOpenRequests = 1
	// MaxBreakerHalfOpenRequests is the largest
	// circuit_breaker.half_open_requests: 100.
	MaxBreakerHalfOpenRequests = 100
)

// Defaults and limits of OutlierDetection (a service's outlier_detection).
const (
	// DefaultOutlierConsecutiveFailures is
	// outlier_detection.consecutive_failures: 5.
	DefaultOutlierConsecutiveFailures = 5
	// MaxOutlierConsecutiveFailures is the largest
	// outlier_detection.consecutive_failures: 1000.
	MaxOutlierConsecutiveFailures = 1000
	// DefaultBaseEjectionTime is outlier_detection.base_ejection_time: 30s.
	DefaultBaseEjectionTime = Duration(30 * time.Second)
	// MinBaseEjectionTime is the shortest
	// outlier_detection.base_ejection_time: 100ms.
	MinBaseEjectionTime = Duration(100 * time.Millisecond)
	// MaxBaseEjectionTime is the longest
	// outlier_detection.base_ejection_time: 1h.
	MaxBaseEjectionTime = Duration(time.Hour)
	// DefaultMaxEjectionTime is outlier_detection.max_ejection_time: 5m.
	DefaultMaxEjectionTime = Duration(5 * time.Minute)
	// MaxMaxEjectionTime is the longest outlier_detection.max_ejection_time:
	// 24h.
	MaxMaxEjectionTime = Duration(24 * time.Hour)
	// DefaultMaxEjectionPercent is outlier_detection.max_ejection_percent: 50.
	DefaultMaxEjectionPercent = 50
)

// MaxRouteTimeout is the longest route timeout: 1h. A route's timeout and
// max_concurrent_requests of services and listeners have no default: 0
// means no limit.
const MaxRouteTimeout = Duration(time.Hour)

// Defaults and limits of Consul (discovery.consul).
const (
	// DefaultConsulWait is discovery.consul.wait, the blocking query's
	// wait time: 5m.
	DefaultConsulWait = Duration(5 * time.Minute)
	// MinConsulWait is the shortest discovery.consul.wait: 1s.
	MinConsulWait = Duration(time.Second)
	// MaxConsulWait is the longest discovery.consul.wait: 10m, the most
	// Consul waits whatever a query asks for.
	MaxConsulWait = Duration(10 * time.Minute)
	// DefaultConsulMinInterval is discovery.consul.min_interval: 100ms.
	DefaultConsulMinInterval = Duration(100 * time.Millisecond)
	// MaxConsulMinInterval is the largest discovery.consul.min_interval: 1m.
	MaxConsulMinInterval = Duration(time.Minute)
	// DefaultConsulMaxBackoff is discovery.consul.max_backoff: 30s.
	DefaultConsulMaxBackoff = Duration(30 * time.Second)
	// MinConsulMaxBackoff is the smallest discovery.consul.max_backoff:
	// 250ms, where the back-off starts.
	MinConsulMaxBackoff = Duration(250 * time.Millisecond)
	// MaxConsulMaxBackoff is the largest discovery.consul.max_backoff: 10m.
	MaxConsulMaxBackoff = Duration(10 * time.Minute)
	// DefaultConsulRouteTagPrefix is discovery.consul.routes.tag_prefix:
	// a service tagged "meshgate.route=/products" gets a route for /products.
	DefaultConsulRouteTagPrefix = "meshgate.route="
	// DefaultConsulRouteMetaKey is discovery.consul.routes.meta_key.
	DefaultConsulRouteMetaKey = "meshgate-route"
)

// Consul's rules for service meta, which apply to register.meta and to
// discovery.consul.routes.meta_key. Keys are letters, digits, '_' and '-'.
const (
	// MaxMetaKeyLength is the longest meta key Consul accepts, in bytes.
	MaxMetaKeyLength = 128
	// MaxMetaValueLength is the longest meta value Consul accepts, in bytes.
	MaxMetaValueLength = 512
	// MaxMetaPairs is the most meta entries Consul accepts on a service.
	MaxMetaPairs = 64
	// ReservedMetaPrefix starts the meta keys Consul keeps for itself.
	ReservedMetaPrefix = "consul-"
)

// Defaults and limits of Register.
const (
	// MaxRegisterNameLength is the longest register.name: 64 characters.
	MaxRegisterNameLength = 64
	// DefaultRegisterWeight is register.weight: 1.
	DefaultRegisterWeight = 1
	// MaxRegisterWeight is the largest register.weight: 10000.
	MaxRegisterWeight = 10000
	// DefaultRegisterCheckPath is register.check.path when check.url is
	// not set: "/healthz".
	DefaultRegisterCheckPath = "/healthz"
	// DefaultRegisterCheckInterval is register.check.interval: 10s.
	DefaultRegisterCheckInterval = Duration(10 * time.Second)
	// MinRegisterCheckInterval is the shortest register.check.interval: 1s.
	MinRegisterCheckInterval = Duration(time.Second)
	// DefaultRegisterCheckTimeout is register.check.timeout: 2s.
	DefaultRegisterCheckTimeout = Duration(2 * time.Second)
	// DefaultRegisterTTL is register.ttl: 10s.
	DefaultRegisterTTL = Duration(10 * time.Second)
	// MinRegisterTTL is the shortest register.ttl: 1s.
	MinRegisterTTL = Duration(time.Second)
	// DefaultDeregisterCriticalAfter is register.deregister_critical_after: 1m.
	DefaultDeregisterCriticalAfter = Duration(time.Minute)
	// MinDeregisterCriticalAfter is the shortest
	// register.deregister_critical_after: 1m, Consul's own minimum (its
	// reaper runs every 30s, so removal may take a little longer).
	MinDeregisterCriticalAfter = Duration(time.Minute)
)

// DefaultRegisterID is register.id when the file leaves it out:
// "name-address-port", with the colons of an IPv6 address replaced by
// '-' so that the ID keeps to letters, digits, '.', '_' and '-':
// ("web", "10.0.0.5", 8080) gives "web-10.0.0.5-8080" and
// ("web", "fd00::1", 8080) gives "web-fd00--1-8080".
func DefaultRegisterID(name, address string, port int) string {
	return name + "-" + strings.ReplaceAll(address, ":", "-") + "-" + strconv.Itoa(port)
}

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
//
// In Go a zero value cannot say "explicitly zero": fields that may be 0
// in a file get their default here when they are 0. They are
// discovery.consul's min_interval and, in services, retry's
// retry_after_max and replay_limit, retry.budget's ratio and
// min_per_second and outlier_detection's max_ejection_percent. Set them
// to 0 after SetDefaults to mean 0. A nil retry.statuses gets the
// default statuses; an empty, non-nil one is kept (retry no status).
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
	if c.Server.PathNormalization.EscapedSlashes == "" {
		c.Server.PathNormalization.EscapedSlashes = DefaultEscapedSlashes
	}
	if c.Policies != nil && c.Policies.Redis != nil {
		duration(isSet, root.field("policies").field("redis").field("timeout"), &c.Policies.Redis.Timeout, DefaultRedisTimeout)
	}
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
		// After the timeouts: the per-try timeout defaults to response_header.
		resilienceDefaults(&s, p, isSet)
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
		if r.Aggregate != nil {
			aggregateDefaults(r.Aggregate, p.field("aggregate"), isSet)
		}
	}

	if c.Discovery.Consul != nil {
		consulDefaults(c.Discovery.Consul, root.field("discovery").field("consul"), isSet)
	}
	if c.Register != nil {
		registerDefaults(c.Register, root.field("register"), isSet)
	}
}

// resilienceDefaults fills a service's retry, circuit_breaker and
// outlier_detection; s.Timeouts must be filled already.
func resilienceDefaults(s *Service, p fpath, isSet func(fpath, bool) bool) {
	rp := p.field("retry")
	r := &s.Retry
	integer(isSet, rp.field("attempts"), &r.Attempts, DefaultRetryAttempts)
	if !isSet(rp.field("statuses"), r.Statuses == nil) {
		r.Statuses = DefaultRetryStatuses()
	}
	duration(isSet, rp.field("per_try_timeout"), &r.PerTryTimeout, s.Timeouts.ResponseHeader)
	duration(isSet, rp.field("backoff_base"), &r.BackoffBase, DefaultRetryBackoffBase)
	duration(isSet, rp.field("backoff_max"), &r.BackoffMax, DefaultRetryBackoffMax)
	duration(isSet, rp.field("retry_after_max"), &r.RetryAfterMax, DefaultRetryAfterMax)
	if !isSet(rp.field("replay_limit"), r.ReplayLimit == 0) {
		r.ReplayLimit = DefaultReplayLimit
	}
	bp := rp.field("budget")
	if !isSet(bp.field("ratio"), r.Budget.Ratio == 0) {
		r.Budget.Ratio = DefaultRetryBudgetRatio
	}
	integer(isSet, bp.field("min_per_second"), &r.Budget.MinPerSecond, DefaultRetryBudgetMinPerSecond)
	duration(isSet, bp.field("window"), &r.Budget.Window, DefaultRetryBudgetWindow)

	cp := p.field("circuit_breaker")
	cb := &s.CircuitBreaker
	integer(isSet, cp.field("consecutive_failures"), &cb.ConsecutiveFailures, DefaultBreakerConsecutiveFailures)
	if !isSet(cp.field("failure_ratio"), cb.FailureRatio == 0) {
		cb.FailureRatio = DefaultBreakerFailureRatio
	}
	integer(isSet, cp.field("min_requests"), &cb.MinRequests, DefaultBreakerMinRequests)
	duration(isSet, cp.field("window"), &cb.Window, DefaultBreakerWindow)
	duration(isSet, cp.field("open_time"), &cb.OpenTime, DefaultBreakerOpenTime)
	integer(isSet, cp.field("half_open_requests"), &cb.HalfOpenRequests, DefaultBreakerHalfOpenRequests)

	op := p.field("outlier_detection")
	od := &s.OutlierDetection
	integer(isSet, op.field("consecutive_failures"), &od.ConsecutiveFailures, DefaultOutlierConsecutiveFailures)
	duration(isSet, op.field("base_ejection_time"), &od.BaseEjectionTime, DefaultBaseEjectionTime)
	duration(isSet, op.field("max_ejection_time"), &od.MaxEjectionTime, DefaultMaxEjectionTime)
	integer(isSet, op.field("max_ejection_percent"), &od.MaxEjectionPercent, DefaultMaxEjectionPercent)
}

// consulDefaults fills discovery.consul. The connection (address, token,
// datacenter) has no default here: left empty, it comes from the
// CONSUL_HTTP_* variables when discovery connects, so that the loaded
// config says only what the file says.
func consulDefaults(cc *Consul, p fpath, isSet func(fpath, bool) bool) {
	duration(isSet, p.field("wait"), &cc.Wait, DefaultConsulWait)
	duration(isSet, p.field("min_interval"), &cc.MinInterval, DefaultConsulMinInterval)
	duration(isSet, p.field("max_backoff"), &cc.MaxBackoff, DefaultConsulMaxBackoff)
	rp := p.field("routes")
	if !isSet(rp.field("tag_prefix"), cc.Routes.TagPrefix == "") {
		cc.Routes.TagPrefix = DefaultConsulRouteTagPrefix
	}
	if !isSet(rp.field("meta_key"), cc.Routes.MetaKey == "") {
		cc.Routes.MetaKey = DefaultConsulRouteMetaKey
	}
}

func registerDefaults(r *Register, p fpath, isSet func(fpath, bool) bool) {
	// The ID is derived only from a complete identity: an ID such as
	// "web--0" would outlive the fields it was made from being filled in.
	if !isSet(p.field("id"), r.ID == "") && r.Name != "" && r.Address != "" && r.Port != 0 {
		r.ID = DefaultRegisterID(r.Name, r.Address, r.Port)
	}
	if !isSet(p.field("weight"), r.Weight == 0) {
		r.Weight = DefaultRegisterWeight
	}
	cp := p.field("check")
	if !isSet(cp.field("path"), r.Check.Path == "") && !isSet(cp.field("url"), r.Check.URL == "") {
		r.Check.Path = DefaultRegisterCheckPath
	}
	duration(isSet, cp.field("interval"), &r.Check.Interval, DefaultRegisterCheckInterval)
	duration(isSet, cp.field("timeout"), &r.Check.Timeout, DefaultRegisterCheckTimeout)
	duration(isSet, p.field("ttl"), &r.TTL, DefaultRegisterTTL)
	duration(isSet, p.field("deregister_critical_after"), &r.DeregisterCriticalAfter, DefaultDeregisterCriticalAfter)
}

func duration(isSet func(fpath, bool) bool, p fpath, d *Duration, def Duration) {
	if !isSet(p, *d == 0) {
		*d = def
	}
}

func integer(isSet func(fpath, bool) bool, p fpath, n *int, def int) {
	if !isSet(p, *n == 0) {
		*n = def
	}
}

// DefaultRouteName is the name of the route at index i (0-based) of
// Config.Routes when it has none: "route-0", "route-1", ...
func DefaultRouteName(i int) string {
	return "route-" + strconv.Itoa(i)
}

// DefaultService returns a service with every default applied and no
// instances: the settings of services that discovery finds but the
// configuration does not declare (routes from Consul's catalog).
func DefaultService() Service {
	c := &Config{Services: map[string]Service{"default": {}}}
	c.SetDefaults()
	return c.Services["default"]
}

// Defaults and limits of Aggregate (a route's aggregate).
const (
	// DefaultAggregateTimeout is aggregate.timeout, the whole
	// aggregation's limit: 10s.
	DefaultAggregateTimeout = Duration(10 * time.Second)
	// MaxAggregateTimeout is the longest aggregate.timeout: 1h.
	MaxAggregateTimeout = Duration(time.Hour)
)

// aggregateDefaults fills an aggregate's timeout and its parts' timeouts
// (the aggregate's, when a part sets none).
func aggregateDefaults(a *Aggregate, p fpath, isSet func(fpath, bool) bool) {
	duration(isSet, p.field("timeout"), &a.Timeout, DefaultAggregateTimeout)
	pp := p.field("parts")
	for i := range a.Parts {
		duration(isSet, pp.index(i).field("timeout"), &a.Parts[i].Timeout, a.Timeout)
	}
}
