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
	// DrainDelay is how long after SIGTERM listeners keep accepting while
	// /readyz already fails, so load balancers in front notice. Default 0s.
	DrainDelay Duration `yaml:"drain_delay,omitempty" json:"drain_delay,omitempty"`
	// GracePeriod is how long in-flight requests (downloads and WebSockets
	// included) may run after listeners stop accepting. Default 30s; must
	// be greater than 0.
	GracePeriod Duration `yaml:"grace_period,omitempty" json:"grace_period,omitempty"`
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
	// MaxIdleConnsPerInstance bounds the keep-alive pool to each instance.
	// Default 256; at least 1.
	MaxIdleConnsPerInstance int `yaml:"max_idle_conns_per_instance,omitempty" json:"max_idle_conns_per_instance,omitempty" jsonschema:"minimum=1"`
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
	Service string `yaml:"service" json:"service" jsonschema:"required,minLength=1"`
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
