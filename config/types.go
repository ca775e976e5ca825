// Package config defines meshgate's configuration file: its Go types (the
// single source of the JSON Schema shipped for editors), strict YAML loading
// with line numbers, defaults and validation.
//
// [Load] and [Parse] read a file in three steps: strict decoding (unknown
// keys, duplicate keys and values of the wrong kind are errors), defaults
// for what the file leaves out, then validation. They report every problem
// at once, each naming the place it comes from as
// `file:line: dotted.field: message`; see [Errors]. A Config built in Go
// gets the same treatment from [Config.SetDefaults] and [Config.Validate].
//
// [Schema] returns the JSON Schema of the file for editors; it is also
// committed as meshgate.schema.json next to this package.
package config

// Config is the whole meshgate configuration file.
type Config struct {
	// Listeners accept client traffic. At least one is required.
	Listeners []Listener `yaml:"listeners" json:"listeners" jsonschema:"required,minItems=1"`
	// Admin is the admin listener (health, readiness, JSON views). It is
	// separate from traffic and binds to loopback by default.
	Admin Admin `yaml:"admin,omitempty" json:"admin,omitempty"`
	// Server holds hardening limits shared by every traffic listener.
	Server Server `yaml:"server,omitempty" json:"server,omitempty"`
	// Services is the static catalog, by service name: each service with
	// its instances and how to balance and time out calls to it. Names are
	// letters, digits, '.', '_' and '-', starting with a letter or digit.
	// Instances are used as is when no dynamic discovery source is
	// configured; a service may list none and leave them to discovery.
	Services map[string]Service `yaml:"services" json:"services"`
	// Routes map client requests to services. Precedence: an exact path
	// beats a prefix, a longer prefix beats a shorter one, a route with a
	// host beats one without; among equals, the first declared wins. With
	// no routes every request gets 404.
	Routes []Route `yaml:"routes" json:"routes"`
	// Discovery configures dynamic service discovery. Without it the static
	// catalog of services is all meshgate knows.
	Discovery Discovery `yaml:"discovery,omitempty" json:"discovery,omitempty"`
	// Register makes meshgate register a local service in Consul (sidecar
	// mode) and deregister it on shutdown. Needs discovery.consul.
	Register *Register `yaml:"register,omitempty" json:"register,omitempty"`
	// Telemetry overrides the standard OTEL_* environment variables for
	// traces. Changes take effect on restart.
	Telemetry Telemetry `yaml:"telemetry,omitempty" json:"telemetry,omitempty"`
	// Policies says where policy files (authentication, authorization,
	// rate limits, transforms) come from. Without it no policy applies.
	Policies *Policies `yaml:"policies,omitempty" json:"policies,omitempty"`
}

// Policies locates the policy files. Their own format is described by
// the policy JSON Schema (policies/policy.schema.json).
type Policies struct {
	// Dir is a directory of policy files (*.yaml, *.yml), relative to the
	// config file. Watched: a change reloads the policies.
	Dir string `yaml:"dir,omitempty" json:"dir,omitempty"`
	// ConsulKVPrefix also reads policy documents from Consul KV, every key
	// under this prefix, watched with a blocking query. Needs
	// discovery.consul.
	ConsulKVPrefix string `yaml:"consul_kv_prefix,omitempty" json:"consul_kv_prefix,omitempty"`
	// Redis stores the counts of global rate limits, shared by every
	// meshgate that uses it. Changes take effect on restart.
	Redis *Redis `yaml:"redis,omitempty" json:"redis,omitempty"`
}

// Redis is a connection to a Redis server.
type Redis struct {
	// Address is host:port. Required.
	Address string `yaml:"address" json:"address" jsonschema:"required"`
	// Username for Redis ACLs; empty for the default user.
	Username string `yaml:"username,omitempty" json:"username,omitempty"`
	// PasswordEnv names the environment variable holding the password, so
	// that it stays out of the file.
	PasswordEnv string `yaml:"password_env,omitempty" json:"password_env,omitempty"`
	// DB is the database number. Default 0.
	DB int `yaml:"db,omitempty" json:"db,omitempty" jsonschema:"minimum=0"`
	// TLS connects with TLS, verifying the server against the system roots.
	TLS bool `yaml:"tls,omitempty" json:"tls,omitempty"`
	// Timeout bounds each rate-limit check; past it the limit's
	// failure_mode applies. Default 100ms.
	Timeout Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
}

// Telemetry overrides OpenTelemetry's environment for meshgate's traces;
// an empty field leaves the variable's value (or its default) in force.
type Telemetry struct {
	// ServiceName is service.name (OTEL_SERVICE_NAME). Default "meshgate".
	ServiceName string `yaml:"service_name,omitempty" json:"service_name,omitempty"`
	// OTLPEndpoint is where spans are sent (OTEL_EXPORTER_OTLP_ENDPOINT): a
	// URL such as "http://jaeger:4318/v1/traces" for HTTP, host:port for
	// gRPC. Setting it turns tracing on.
	OTLPEndpoint string `yaml:"otlp_endpoint,omitempty" json:"otlp_endpoint,omitempty"`
	// OTLPProtocol is "http/protobuf" (the default), "http/json" or "grpc"
	// (OTEL_EXPORTER_OTLP_PROTOCOL).
	OTLPProtocol string `yaml:"otlp_protocol,omitempty" json:"otlp_protocol,omitempty" jsonschema:"enum=http/protobuf,enum=http/json,enum=grpc"`
	// TracesDisabled turns tracing off whatever the environment says.
	TracesDisabled bool `yaml:"traces_disabled,omitempty" json:"traces_disabled,omitempty"`
}

// Discovery configures dynamic discovery sources.
type Discovery struct {
	// Consul, when set, discovers the instances of every service a route
	// names through blocking queries on Consul's health endpoint, and can
	// create routes from tagged services.
	Consul *Consul `yaml:"consul,omitempty" json:"consul,omitempty"`
}

// Consul is the Consul agent connection and how services are watched.
// Unset connection fields come from the standard environment variables
// (CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN, CONSUL_HTTP_SSL, CONSUL_CACERT, ...).
type Consul struct {
	// Address of the agent's HTTP API: host:port, or an http or https URL
	// (which may end in a path, for an agent behind a reverse proxy).
	// Default: the CONSUL_HTTP_ADDR variable, else 127.0.0.1:8500.
	Address string `yaml:"address,omitempty" json:"address,omitempty" jsonschema:"minLength=1"`
	// Token is the ACL token. Default: CONSUL_HTTP_TOKEN. Shown redacted.
	Token string `yaml:"token,omitempty" json:"token,omitempty"`
	// Datacenter to query: letters, digits, '.', '_' and '-'. Default: the
	// agent's own.
	Datacenter string `yaml:"datacenter,omitempty" json:"datacenter,omitempty" jsonschema:"pattern=^[A-Za-z0-9_.-]+$"`
	// Stale allows any Consul server to answer, spreading reads off the
	// leader at the cost of slightly older data.
	Stale bool `yaml:"stale,omitempty" json:"stale,omitempty"`
	// AllowWarning also routes to instances whose checks are in warning;
	// by default only passing instances receive traffic.
	AllowWarning bool `yaml:"allow_warning,omitempty" json:"allow_warning,omitempty"`
	// Tags, when set, keep only instances that carry every one of them.
	// Each is non-empty and listed once.
	Tags []string `yaml:"tags,omitempty" json:"tags,omitempty" jsonschema:"uniqueItems=true,minLength=1"`
	// Wait is the blocking query's wait time, 1s-10m. Default 5m.
	Wait Duration `yaml:"wait,omitempty" json:"wait,omitempty"`
	// MinInterval is the least time between two queries of one watch; a
	// random jitter of up to the same amount is added. 0-1m; 0 turns the
	// pause off. Default 100ms.
	MinInterval Duration `yaml:"min_interval,omitempty" json:"min_interval,omitempty"`
	// MaxBackoff caps the exponential back-off after errors (which starts
	// at 250ms and has full jitter), 250ms-10m. Default 30s.
	MaxBackoff Duration `yaml:"max_backoff,omitempty" json:"max_backoff,omitempty"`
	// Routes configures routes created from the catalog.
	Routes ConsulRoutes `yaml:"routes,omitempty" json:"routes,omitempty"`
}

// ConsulRoutes configures routes created from Consul's catalog, as fabio's
// urlprefix- tags and Traefik's Consul provider do: a service tagged
// "meshgate.route=/products" gets a route for the path prefix /products.
type ConsulRoutes struct {
	// Enabled turns catalog routes on. Default false.
	Enabled bool `yaml:"enabled,omitempty" json:"enabled,omitempty"`
	// TagPrefix marks route tags; the rest of the tag is the path prefix,
	// optionally preceded by a host ("shop.example.com/products"). Not
	// empty, without spaces. Default "meshgate.route=".
	TagPrefix string `yaml:"tag_prefix,omitempty" json:"tag_prefix,omitempty" jsonschema:"minLength=1,pattern=^\\S+$"`
	// MetaKey is a service meta key whose value is a route, in the same
	// form as a tag's. Consul meta keys allow letters, digits, "_" and "-",
	// at most 128 bytes, not starting with "consul-". Default
	// "meshgate-route".
	MetaKey string `yaml:"meta_key,omitempty" json:"meta_key,omitempty" jsonschema:"maxLength=128,pattern=^[A-Za-z0-9_-]+$"`
	// StripPrefix strips the route's prefix before forwarding.
	StripPrefix bool `yaml:"strip_prefix,omitempty" json:"strip_prefix,omitempty"`
}

// Register is the local service meshgate registers in Consul as its
// sidecar, with an HTTP check on the service and a TTL check that meshgate
// itself keeps passing. The registration is repaired when the agent
// forgets it and removed on shutdown before draining.
type Register struct {
	// Name of the service in Consul, required: at most 64 letters,
	// digits, '.', '_' and '-', starting with a letter or digit (the rule
	// for names under services).
	Name string `yaml:"name" json:"name" jsonschema:"required,minLength=1,maxLength=64,pattern=^[a-zA-Z0-9][a-zA-Z0-9._-]*$"`
	// ID of the instance, unique on the agent; no spaces or "/". Default
	// "name-address-port", with the colons of an IPv6 address replaced by
	// "-" ("web-fd00--1-8080").
	ID string `yaml:"id,omitempty" json:"id,omitempty" jsonschema:"minLength=1"`
	// Address other services use to reach the instance, required: an IP
	// address (IPv6 without brackets or zone; not 0.0.0.0 or ::) or a
	// host name.
	Address string `yaml:"address" json:"address" jsonschema:"required,minLength=1"`
	// Port other services use to reach the instance, 1-65535. Required.
	Port int `yaml:"port" json:"port" jsonschema:"required,minimum=1,maximum=65535"`
	// Tags are registered as given; each is non-empty and listed once.
	Tags []string `yaml:"tags,omitempty" json:"tags,omitempty" jsonschema:"uniqueItems=true,minLength=1"`
	// Meta is registered as given, within Consul's rules: at most 64
	// entries; keys of letters, digits, "_" and "-", at most 128 bytes,
	// not starting with "consul-"; values of at most 512 bytes.
	Meta map[string]string `yaml:"meta,omitempty" json:"meta,omitempty"`
	// Weight is Consul's Weights.Passing, 1-10000. Default 1.
	Weight int `yaml:"weight,omitempty" json:"weight,omitempty" jsonschema:"minimum=1,maximum=10000"`
	// Check is the HTTP health check the agent runs against the service.
	Check RegisterCheck `yaml:"check,omitempty" json:"check,omitempty"`
	// TTL of the sidecar's own check, at least 1s; meshgate reports
	// passing every TTL/3. Default 10s.
	TTL Duration `yaml:"ttl,omitempty" json:"ttl,omitempty"`
	// DeregisterCriticalAfter lets the agent remove the service when its
	// checks stay critical this long (a crashed sidecar). At least 1m,
	// Consul's minimum. Default 1m.
	DeregisterCriticalAfter Duration `yaml:"deregister_critical_after,omitempty" json:"deregister_critical_after,omitempty"`
}

// RegisterCheck is the agent's HTTP check of the local service.
type RegisterCheck struct {
	// Path probed on address:port, for example "/healthz"; starts with
	// "/" and may have a query. Default "/healthz". Ignored when URL is
	// set.
	Path string `yaml:"path,omitempty" json:"path,omitempty" jsonschema:"pattern=^/\\S*$"`
	// URL probed instead of address:port+path, when the agent reaches the
	// service another way: an absolute http or https URL.
	URL string `yaml:"url,omitempty" json:"url,omitempty" jsonschema:"pattern=^https?://[^/?#\\s]+\\S*$"`
	// Interval between probes, at least 1s. Default 10s.
	Interval Duration `yaml:"interval,omitempty" json:"interval,omitempty"`
	// Timeout of one probe, greater than 0 and shorter than the interval.
	// Default 2s.
	Timeout Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
}

// Listener is one traffic listener.
type Listener struct {
	// Name identifies the listener in logs and admin views. Defaults to
	// the address. Must be unique.
	Name string `yaml:"name,omitempty" json:"name,omitempty"`
	// Address is host:port to listen on, for example ":8080" (all
	// interfaces) or "127.0.0.1:8080". The port is a number; 0 picks a
	// free one. Must be unique among the listeners.
	Address string `yaml:"address" json:"address" jsonschema:"required"`
	// TLS, when set, serves HTTPS with HTTP/2 and HTTP/1.1 (ALPN).
	// Exclusive with h2c.
	TLS *TLS `yaml:"tls,omitempty" json:"tls,omitempty"`
	// MaxConcurrentRequests bounds the requests in flight on this
	// listener; beyond it requests are shed with 503 and Retry-After
	// rather than queued. 0 (the default) means no limit; not negative.
	MaxConcurrentRequests int `yaml:"max_concurrent_requests,omitempty" json:"max_concurrent_requests,omitempty" jsonschema:"minimum=0"`
	// H2C also accepts cleartext HTTP/2 (prior knowledge) on a plain listener,
	// for gRPC clients inside the mesh.
	H2C bool `yaml:"h2c,omitempty" json:"h2c,omitempty"`
}

// TLS names a certificate and key in PEM files. Relative paths are
// relative to the directory of the configuration file. Both files must be
// readable and belong together.
type TLS struct {
	// CertFile is the PEM certificate chain, leaf first.
	CertFile string `yaml:"cert_file" json:"cert_file" jsonschema:"required"`
	// KeyFile is the PEM private key. Shown redacted in /admin/config.
	KeyFile string `yaml:"key_file" json:"key_file" jsonschema:"required"`
}

// Admin is the admin listener.
type Admin struct {
	// Address is host:port. Default "127.0.0.1:9901" (loopback only).
	// Set "off" to disable the admin listener; an empty string is not
	// allowed. Must differ from the traffic listeners' addresses.
	Address string `yaml:"address,omitempty" json:"address,omitempty"`
}

// Server holds limits and lifecycle timings for the traffic listeners.
type Server struct {
	// ReadHeaderTimeout bounds reading a request's headers. Default 10s;
	// must be greater than 0.
	ReadHeaderTimeout Duration `yaml:"read_header_timeout,omitempty" json:"read_header_timeout,omitempty"`
	// IdleTimeout closes idle client keep-alive connections. Default 120s;
	// must be greater than 0.
	IdleTimeout Duration `yaml:"idle_timeout,omitempty" json:"idle_timeout,omitempty"`
	// MaxHeaderBytes bounds the request line and headers; larger requests get
	// 431. Default 64KiB; 1KiB to 1MiB.
	MaxHeaderBytes Size `yaml:"max_header_bytes,omitempty" json:"max_header_bytes,omitempty"`
	// MaxBodyBytes bounds request bodies; larger ones get 413. Default 10MiB;
	// "0" after defaults is not allowed, use a large size to relax it.
	MaxBodyBytes Size `yaml:"max_body_bytes,omitempty" json:"max_body_bytes,omitempty"`
	// TrustedHops is how many proxies in front of meshgate are trusted to
	// have set X-Forwarded-For correctly. 0 (the default) trusts none: the
	// client's X-Forwarded-* headers are replaced by what meshgate sees.
	// At most 16.
	TrustedHops int `yaml:"trusted_hops,omitempty" json:"trusted_hops,omitempty" jsonschema:"minimum=0,maximum=16"`
	// IgnoreIncomingTraceContext makes meshgate start a new trace for every
	// request instead of continuing the caller's, linking the new root span
	// to the caller's span: for an edge gateway that does not trust its
	// clients' trace context. Default false (continue it).
	IgnoreIncomingTraceContext bool `yaml:"ignore_incoming_trace_context,omitempty" json:"ignore_incoming_trace_context,omitempty"`
	// DrainDelay is how long after SIGTERM listeners keep accepting while
	// /readyz already fails, so load balancers in front notice. Default 0s.
	DrainDelay Duration `yaml:"drain_delay,omitempty" json:"drain_delay,omitempty"`
	// GracePeriod is how long in-flight requests (downloads and WebSockets
	// included) may run after listeners stop accepting. Default 30s; must
	// be greater than 0.
	GracePeriod Duration `yaml:"grace_period,omitempty" json:"grace_period,omitempty"`
	// PathNormalization is how request paths are normalised, once, before
	// routing, policies and forwarding: dot segments are always removed
	// and percent-encoded unreserved characters decoded.
	PathNormalization PathNormalization `yaml:"path_normalization,omitempty" json:"path_normalization,omitempty"`
}

// PathNormalization chooses the path rules that are a matter of policy.
type PathNormalization struct {
	// EscapedSlashes is what an encoded slash or backslash (%2F, %5C) in
	// a path gets: "reject" (the default: 400) or "decode" (it becomes a
	// "/" and the path is normalised with it).
	EscapedSlashes string `yaml:"escaped_slashes,omitempty" json:"escaped_slashes,omitempty" jsonschema:"enum=reject,enum=decode"`
	// KeepRepeatedSlashes leaves "//" in paths. Default false: repeated
	// slashes are merged into one.
	KeepRepeatedSlashes bool `yaml:"keep_repeated_slashes,omitempty" json:"keep_repeated_slashes,omitempty"`
}

// Service is one upstream service in the static catalog, with the policy
// for calling it.
type Service struct {
	// Instances is the static list of the service's instances. It may be
	// empty when a discovery source provides them.
	Instances []Instance `yaml:"instances,omitempty" json:"instances,omitempty"`
	// LoadBalancer chooses an instance per request. Default policy
	// round_robin.
	LoadBalancer LoadBalancer `yaml:"load_balancer,omitempty" json:"load_balancer,omitempty"`
	// Protocol spoken to the instances: "http1" (default) or "h2c"
	// (cleartext HTTP/2, for gRPC).
	Protocol string `yaml:"protocol,omitempty" json:"protocol,omitempty" jsonschema:"enum=http1,enum=h2c"`
	// Timeouts for calls to this service. Each must be greater than 0.
	Timeouts Timeouts `yaml:"timeouts,omitempty" json:"timeouts,omitempty"`
	// Retry decides when a failed attempt is tried again on another
	// instance.
	Retry Retry `yaml:"retry,omitempty" json:"retry,omitempty"`
	// CircuitBreaker trips per instance after failures and skips the
	// instance until half-open probes succeed.
	CircuitBreaker CircuitBreaker `yaml:"circuit_breaker,omitempty" json:"circuit_breaker,omitempty"`
	// OutlierDetection ejects instances that fail in a row, passively.
	OutlierDetection OutlierDetection `yaml:"outlier_detection,omitempty" json:"outlier_detection,omitempty"`
	// MaxConcurrentRequests bounds the requests in flight to the service
	// (a bulkhead); beyond it requests are shed with 503 and Retry-After.
	// 0 (the default) means no limit; not negative.
	MaxConcurrentRequests int `yaml:"max_concurrent_requests,omitempty" json:"max_concurrent_requests,omitempty" jsonschema:"minimum=0"`
	// MaxIdleConnsPerInstance bounds the keep-alive pool to each instance.
	// Default 256; at least 1.
	MaxIdleConnsPerInstance int `yaml:"max_idle_conns_per_instance,omitempty" json:"max_idle_conns_per_instance,omitempty" jsonschema:"minimum=1"`
}

// Retry is a service's retry policy. Only idempotent requests (GET, HEAD,
// OPTIONS, TRACE, PUT, DELETE), requests with an Idempotency-Key header
// and requests of routes with retry_non_idempotent are retried, and never
// once a response byte has reached the client.
type Retry struct {
	// Attempts is the total number of tries, first included, 1-10.
	// Default 3. 1 disables retries.
	Attempts int `yaml:"attempts,omitempty" json:"attempts,omitempty" jsonschema:"minimum=1,maximum=10"`
	// Statuses are the upstream statuses that are retried: each 408, 429
	// or 500-599, listed once. Default [502, 503, 504]; an empty list
	// retries no status. Connect failures, resets before any response
	// byte and per-try timeouts are always retried.
	Statuses []int `yaml:"statuses,omitempty" json:"statuses,omitempty" jsonschema:"uniqueItems=true,minimum=408,maximum=599"`
	// PerTryTimeout bounds one attempt up to the response headers; past
	// it the attempt counts as failed and is retried. Greater than 0, at
	// most 10m. Default: the service's timeouts.response_header.
	PerTryTimeout Duration `yaml:"per_try_timeout,omitempty" json:"per_try_timeout,omitempty"`
	// BackoffBase is the first back-off between tries; it doubles per
	// retry up to backoff_max, with full jitter. Greater than 0, at most
	// 1m. Default 25ms.
	BackoffBase Duration `yaml:"backoff_base,omitempty" json:"backoff_base,omitempty"`
	// BackoffMax caps the back-off: at least backoff_base, at most 1m.
	// Default 250ms.
	BackoffMax Duration `yaml:"backoff_max,omitempty" json:"backoff_max,omitempty"`
	// RetryAfterMax caps how long a Retry-After header of a retried
	// response is honoured; a longer one is not retried. 0-1m; 0 retries
	// no response that asks to wait. Default 1s.
	RetryAfterMax Duration `yaml:"retry_after_max,omitempty" json:"retry_after_max,omitempty"`
	// ReplayLimit is the largest request body buffered so that it can be
	// sent again; larger bodies are streamed and not retried. 0-16MiB; 0
	// retries only requests without a body. Default 64KiB.
	ReplayLimit Size `yaml:"replay_limit,omitempty" json:"replay_limit,omitempty"`
	// Budget bounds retries so that they can never multiply the load on a
	// failing service.
	Budget RetryBudget `yaml:"budget,omitempty" json:"budget,omitempty"`
}

// RetryBudget allows retries up to ratio of the requests of the last
// window, plus min_per_second, as Linkerd and Finagle do. A request denied a
// retry gets the upstream's answer.
type RetryBudget struct {
	// Ratio of retries to requests, 0-1. Default 0.2.
	Ratio float64 `yaml:"ratio,omitempty" json:"ratio,omitempty" jsonschema:"minimum=0,maximum=1"`
	// MinPerSecond retries are always allowed, so that a quiet service can
	// still retry. 0-10000. Default 10.
	MinPerSecond int `yaml:"min_per_second,omitempty" json:"min_per_second,omitempty" jsonschema:"minimum=0,maximum=10000"`
	// Window over which requests and retries are counted, 1s-5m.
	// Default 10s.
	Window Duration `yaml:"window,omitempty" json:"window,omitempty"`
}

// CircuitBreaker configures the per-instance breakers (sony/gobreaker).
// An open breaker's instance gets no traffic; when every instance's
// breaker is open the gateway answers 503 at once, with Retry-After.
type CircuitBreaker struct {
	// Disabled turns breakers off for the service.
	Disabled bool `yaml:"disabled,omitempty" json:"disabled,omitempty"`
	// ConsecutiveFailures trips the breaker, 1-1000. Default 5.
	ConsecutiveFailures int `yaml:"consecutive_failures,omitempty" json:"consecutive_failures,omitempty" jsonschema:"minimum=1,maximum=1000"`
	// FailureRatio trips the breaker once at least min_requests were seen
	// in the window: greater than 0, at most 1. Default 0.5.
	FailureRatio float64 `yaml:"failure_ratio,omitempty" json:"failure_ratio,omitempty" jsonschema:"exclusiveMinimum=0,maximum=1"`
	// MinRequests before failure_ratio applies, 1-100000. Default 20.
	MinRequests int `yaml:"min_requests,omitempty" json:"min_requests,omitempty" jsonschema:"minimum=1,maximum=100000"`
	// Window after which a closed breaker's counts start over, 100ms-1h.
	// Default 10s.
	Window Duration `yaml:"window,omitempty" json:"window,omitempty"`
	// OpenTime is how long a tripped breaker stays open before half-open
	// probes, 100ms-1h. Default 10s.
	OpenTime Duration `yaml:"open_time,omitempty" json:"open_time,omitempty"`
	// HalfOpenRequests are the probes let through half-open; all must
	// succeed to close the breaker. 1-100. Default 1.
	HalfOpenRequests int `yaml:"half_open_requests,omitempty" json:"half_open_requests,omitempty" jsonschema:"minimum=1,maximum=100"`
}

// OutlierDetection ejects, passively, instances whose requests fail in a
// row (5xx answers, connect failures, timeouts).
type OutlierDetection struct {
	// Disabled turns ejection off for the service.
	Disabled bool `yaml:"disabled,omitempty" json:"disabled,omitempty"`
	// ConsecutiveFailures ejects the instance, 1-1000. Default 5.
	ConsecutiveFailures int `yaml:"consecutive_failures,omitempty" json:"consecutive_failures,omitempty" jsonschema:"minimum=1,maximum=1000"`
	// BaseEjectionTime is the first ejection's length; each further
	// ejection of the same instance lasts one base time longer, up to
	// max_ejection_time. 100ms-1h. Default 30s.
	BaseEjectionTime Duration `yaml:"base_ejection_time,omitempty" json:"base_ejection_time,omitempty"`
	// MaxEjectionTime caps an ejection: at least base_ejection_time, at
	// most 24h. Default 5m.
	MaxEjectionTime Duration `yaml:"max_ejection_time,omitempty" json:"max_ejection_time,omitempty"`
	// MaxEjectionPercent is the largest share of the service's instances
	// ejected at once, 0-100. Default 50.
	MaxEjectionPercent int `yaml:"max_ejection_percent,omitempty" json:"max_ejection_percent,omitempty" jsonschema:"minimum=0,maximum=100"`
}

// Instance is one address of a service.
type Instance struct {
	// ID is unique within the service. Default "address:port" (IPv6
	// addresses in brackets: "[::1]:8080").
	ID string `yaml:"id,omitempty" json:"id,omitempty"`
	// Address is an IP address (IPv6 without brackets) or a host name,
	// without the port.
	Address string `yaml:"address" json:"address" jsonschema:"required,minLength=1"`
	// Port is the TCP port, 1-65535.
	Port int `yaml:"port" json:"port" jsonschema:"required,minimum=1,maximum=65535"`
	// Weight for weighted balancing, 1-10000. Default 1; 0 also means 1
	// (to take an instance out of rotation, set its health to critical).
	Weight int `yaml:"weight,omitempty" json:"weight,omitempty" jsonschema:"minimum=0,maximum=10000"`
	// Tags are free-form labels.
	Tags []string `yaml:"tags,omitempty" json:"tags,omitempty"`
	// Meta is free-form key/value metadata.
	Meta map[string]string `yaml:"meta,omitempty" json:"meta,omitempty"`
	// Health is "passing" (default), "warning" or "critical". Critical
	// instances receive no traffic.
	Health string `yaml:"health,omitempty" json:"health,omitempty" jsonschema:"enum=passing,enum=warning,enum=critical"`
}

// LoadBalancer selects the balancing policy of a service.
type LoadBalancer struct {
	// Policy is one of round_robin (the default), weighted_round_robin,
	// least_request (power of two random choices) or consistent_hash.
	Policy string `yaml:"policy,omitempty" json:"policy,omitempty" jsonschema:"enum=round_robin,enum=weighted_round_robin,enum=least_request,enum=consistent_hash"`
	// HashOn says what consistent_hash hashes; required for that policy
	// and not allowed with the others.
	HashOn *HashOn `yaml:"hash_on,omitempty" json:"hash_on,omitempty"`
}

// HashOn names the request value consistent hashing keys on. Exactly one of
// header and cookie is set. Requests without the value are spread round
// robin.
type HashOn struct {
	// Header is a request header name, such as X-User-ID.
	Header string `yaml:"header,omitempty" json:"header,omitempty"`
	// Cookie is a cookie name, such as session_id.
	Cookie string `yaml:"cookie,omitempty" json:"cookie,omitempty"`
}

// Timeouts bound calls to a service's instances.
type Timeouts struct {
	// Connect bounds establishing a TCP connection. Default 2s.
	Connect Duration `yaml:"connect,omitempty" json:"connect,omitempty"`
	// ResponseHeader bounds the wait for the response headers after the
	// request was sent; past it the client gets 504. Default 30s.
	ResponseHeader Duration `yaml:"response_header,omitempty" json:"response_header,omitempty"`
	// IdleConn closes pooled connections idle this long. Default 90s.
	IdleConn Duration `yaml:"idle_conn,omitempty" json:"idle_conn,omitempty"`
}

// Route maps matching requests to a service.
type Route struct {
	// Name identifies the route in logs, metrics and admin views. Default
	// "route-N", N its index from 0. Must be unique.
	Name string `yaml:"name,omitempty" json:"name,omitempty"`
	// Match says which requests the route takes. Without it the route
	// takes every request.
	Match Match `yaml:"match" json:"match"`
	// StripPrefix removes the matched path_prefix before forwarding: with
	// path_prefix "/api", "/api/x" is forwarded as "/x" and "/api" as "/".
	// Needs match.path_prefix (not match.path); exclusive with
	// rewrite_prefix.
	StripPrefix bool `yaml:"strip_prefix,omitempty" json:"strip_prefix,omitempty"`
	// RewritePrefix replaces the matched path_prefix with this value before
	// forwarding (implies strip). Must start with "/". Needs
	// match.path_prefix (not match.path).
	RewritePrefix string `yaml:"rewrite_prefix,omitempty" json:"rewrite_prefix,omitempty" jsonschema:"pattern=^/[^?#]*$"`
	// Service is the name of the target service, which must be declared
	// under services (possibly without instances, for discovery to fill).
	// A route has exactly one of service and aggregate.
	Service string `yaml:"service,omitempty" json:"service,omitempty" jsonschema:"minLength=1"`
	// Aggregate answers the route's requests by calling other routes and
	// merging their JSON answers into one object, instead of forwarding to
	// a service. Exclusive with service, strip_prefix, rewrite_prefix and
	// retry_non_idempotent; only GET and HEAD are accepted.
	Aggregate *Aggregate `yaml:"aggregate,omitempty" json:"aggregate,omitempty"`
	// Timeout bounds the whole request, retries and back-off included, up
	// to the response headers; past it the client gets 504. 0-1h; 0 (the
	// default): only the per-try timeouts apply.
	Timeout Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	// RetryNonIdempotent lets the service's retry policy retry requests of
	// any method on this route (the upstream must be safe to call twice).
	RetryNonIdempotent bool `yaml:"retry_non_idempotent,omitempty" json:"retry_non_idempotent,omitempty"`
}

// Match is the request predicate of a route. All given conditions must hold.
type Match struct {
	// Host matches the request host (port ignored, case-insensitive; it is
	// stored lower-cased). A leading "*." matches any subdomain:
	// "*.example.com" matches "a.example.com" and "a.b.example.com" but
	// not "example.com". Write the host without a port.
	Host string `yaml:"host,omitempty" json:"host,omitempty"`
	// Path matches the path exactly. Exclusive with path_prefix. Paths
	// start with "/" and have no query ("?"), fragment ("#"), empty, "."
	// or ".." segments.
	Path string `yaml:"path,omitempty" json:"path,omitempty" jsonschema:"pattern=^/[^?#]*$"`
	// PathPrefix matches a path prefix on segment boundaries: "/api"
	// matches "/api" and "/api/x" but not "/apix"; "/api/" matches
	// "/api/" and "/api/x" but not "/api". Default "/" (every path) when
	// neither path nor path_prefix is set.
	PathPrefix string `yaml:"path_prefix,omitempty" json:"path_prefix,omitempty" jsonschema:"pattern=^/[^?#]*$"`
	// Methods restricts the HTTP methods, upper case, such as GET or POST.
	Methods []string `yaml:"methods,omitempty" json:"methods,omitempty" jsonschema:"uniqueItems=true"`
	// Headers must all be present with exactly these values. Header names
	// are case-insensitive.
	Headers map[string]string `yaml:"headers,omitempty" json:"headers,omitempty"`
}

// Aggregate composes one JSON answer from several calls. Each part is a
// GET sub-request routed by the same routes as a client request (with
// their policies, retries and breakers), carrying the client's headers.
// Parts without needs run at once, in parallel; a part runs once every
// part it needs has succeeded. The answer is an object with each part's
// JSON under its name.
type Aggregate struct {
	// Timeout bounds the whole aggregation; parts still running when it
	// fires fail. Greater than 0, at most 1h. Default 10s.
	Timeout Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	// Parts are the calls, at least one.
	Parts []AggregatePart `yaml:"parts" json:"parts" jsonschema:"required,minItems=1"`
}

// AggregatePart is one call of an aggregate (or one call per path, when
// its path expression gives a list).
type AggregatePart struct {
	// Name is the part's field in the answer and in .parts of later
	// parts' expressions: a lower-case letter or "_", then lower-case
	// letters, digits and "_". Unique in the route.
	Name string `yaml:"name" json:"name" jsonschema:"required,pattern=^[a-z_][a-z0-9_]*$"`
	// Path is a jq expression (gojq) giving the path, with an optional
	// query, to call: one string starting with "/", or a list of them (at
	// most 64; one call each, the part's value is the list of answers in
	// order). Its input is {"request": {"method", "path", "segments",
	// "query", "headers"}, "parts": {name: value of each needed part}}.
	Path string `yaml:"path" json:"path" jsonschema:"required,minLength=1"`
	// Needs are parts that must succeed before this one runs; their
	// values are in .parts. If one fails, this part is skipped.
	Needs []string `yaml:"needs,omitempty" json:"needs,omitempty" jsonschema:"uniqueItems=true"`
	// Timeout bounds the part, all its calls together: greater than 0, at most the
	// aggregate's timeout. Default: the aggregate's timeout.
	Timeout Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	// Optional parts may fail: the answer then has null for the part, its
	// name in "_partial" and in the Meshgate-Partial header. A required
	// part (the default) that fails makes the request fail with 502.
	Optional bool `yaml:"optional,omitempty" json:"optional,omitempty"`
}
