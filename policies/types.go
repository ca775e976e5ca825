package policies

import "github.com/meshgate/meshgate/config"

// File is one policy file: a YAML document with a list of policies. A
// policy directory holds any number of them (*.yaml and *.yml, read in
// name order); policy names are unique across all of them.
type File struct {
	// Policies in this file, each attached to routes, services or
	// requests by its applies_to.
	Policies []Policy `yaml:"policies" json:"policies" jsonschema:"required"`
}

// Policy is a named set of steps attached to some requests. The steps of
// every policy that applies to a request run in one fixed order, whatever
// the files say: ip → cors → max_body_size → authn → authz → rate_limits →
// transforms. Within a step, policies run in file-name order, then in
// order within a file. A request must pass every applicable policy.
type Policy struct {
	// Name identifies the policy in logs, spans, metrics and
	// /admin/policies. Letters, digits, '.', '_' and '-'; unique.
	Name string `yaml:"name" json:"name" jsonschema:"required"`
	// AppliesTo selects the requests the policy applies to.
	AppliesTo Selector `yaml:"applies_to" json:"applies_to" jsonschema:"required"`
	// IP allows and denies client addresses (403). The client address is
	// the one meshgate trusts after server.trusted_hops.
	IP *IPList `yaml:"ip,omitempty" json:"ip,omitempty"`
	// CORS answers preflight requests at the gateway and adds the CORS
	// headers to actual requests.
	CORS *CORS `yaml:"cors,omitempty" json:"cors,omitempty"`
	// MaxBodySize bounds request bodies (413); the smallest applicable
	// bound and server.max_body_bytes all hold.
	MaxBodySize config.Size `yaml:"max_body_size,omitempty" json:"max_body_size,omitempty"`
	// Authn authenticates the request (401 with WWW-Authenticate).
	Authn *Authn `yaml:"authn,omitempty" json:"authn,omitempty"`
	// Authz authorizes the request with rules (403).
	Authz *Authz `yaml:"authz,omitempty" json:"authz,omitempty"`
	// RateLimits are token buckets; every one must have a token (429).
	RateLimits []RateLimit `yaml:"rate_limits,omitempty" json:"rate_limits,omitempty"`
	// Transforms change the request sent upstream and the response sent
	// back.
	Transforms *Transforms `yaml:"transforms,omitempty" json:"transforms,omitempty"`
}

// Selector says which requests a policy applies to. Route and service
// names are resolved when the routing table is built; hosts, path
// prefixes and methods are checked per request, on the normalised path.
// Every field given must match (AND); a list matches when any of its
// items does (OR).
type Selector struct {
	// All applies the policy to every request. It excludes the other
	// fields.
	All bool `yaml:"all,omitempty" json:"all,omitempty"`
	// Routes by name (routes[].name in the config).
	Routes []string `yaml:"routes,omitempty" json:"routes,omitempty"`
	// Services by name: every route to one of these services, including
	// routes found in the Consul catalog.
	Services []string `yaml:"services,omitempty" json:"services,omitempty"`
	// Hosts: the request's host without port, exactly (case-insensitive)
	// or "*.example.com" for any subdomain.
	Hosts []string `yaml:"hosts,omitempty" json:"hosts,omitempty"`
	// PathPrefixes match whole path segments: "/admin" matches "/admin"
	// and "/admin/x", not "/administrator". Paths are case-sensitive.
	PathPrefixes []string `yaml:"path_prefixes,omitempty" json:"path_prefixes,omitempty"`
	// Methods, upper case.
	Methods []string `yaml:"methods,omitempty" json:"methods,omitempty"`
}

// IPList allows and denies client addresses; deny wins. With an allow
// list, addresses outside it are denied.
type IPList struct {
	// Allow lists addresses or CIDR prefixes ("10.0.0.0/8", "::1").
	Allow []string `yaml:"allow,omitempty" json:"allow,omitempty"`
	// Deny lists addresses or CIDR prefixes.
	Deny []string `yaml:"deny,omitempty" json:"deny,omitempty"`
}

// CORS is the cross-origin resource sharing policy (the Fetch standard).
type CORS struct {
	// AllowedOrigins: exact origins ("https://shop.example.com"), "*", or
	// one wildcard ("https://*.example.com"). Required.
	AllowedOrigins []string `yaml:"allowed_origins" json:"allowed_origins" jsonschema:"required,minItems=1"`
	// AllowedMethods. Default GET, POST, HEAD.
	AllowedMethods []string `yaml:"allowed_methods,omitempty" json:"allowed_methods,omitempty"`
	// AllowedHeaders the client may send. Default: the CORS-safelisted ones.
	AllowedHeaders []string `yaml:"allowed_headers,omitempty" json:"allowed_headers,omitempty"`
	// ExposedHeaders the browser lets scripts read.
	ExposedHeaders []string `yaml:"exposed_headers,omitempty" json:"exposed_headers,omitempty"`
	// AllowCredentials allows cookies and Authorization. Not with origin "*".
	AllowCredentials bool `yaml:"allow_credentials,omitempty" json:"allow_credentials,omitempty"`
	// MaxAge is how long browsers cache a preflight answer. Default 0s
	// (the browser's default).
	MaxAge config.Duration `yaml:"max_age,omitempty" json:"max_age,omitempty"`
}

// Authn authenticates requests with a JWT, an API key or either. A
// request with valid credentials of any configured kind passes; one with
// invalid credentials gets 401 even when another kind is configured.
type Authn struct {
	// JWT bearer tokens.
	JWT *JWT `yaml:"jwt,omitempty" json:"jwt,omitempty"`
	// APIKeys, stored hashed.
	APIKeys *APIKeys `yaml:"api_keys,omitempty" json:"api_keys,omitempty"`
	// Optional lets requests without any credentials through as
	// anonymous (authz rules can then decide); invalid credentials still
	// get 401. Default false.
	Optional bool `yaml:"optional,omitempty" json:"optional,omitempty"`
	// ForwardCredentials keeps the token or key in the request sent
	// upstream. Default false: meshgate removes it.
	ForwardCredentials bool `yaml:"forward_credentials,omitempty" json:"forward_credentials,omitempty"`
}

// JWT verifies JSON Web Tokens (RFC 7519). Exactly one key source:
// jwks_url, jwks_file or hmac_secret_file.
type JWT struct {
	// Issuer is the required "iss" claim.
	Issuer string `yaml:"issuer" json:"issuer" jsonschema:"required"`
	// Audiences: the token's "aud" must contain one of them. Empty: not
	// checked.
	Audiences []string `yaml:"audiences,omitempty" json:"audiences,omitempty"`
	// JWKSURL is an http(s) URL of a JSON Web Key Set, fetched at load,
	// refreshed every refresh_interval and, at most every
	// min_refresh_interval, when a token names an unknown "kid".
	JWKSURL string `yaml:"jwks_url,omitempty" json:"jwks_url,omitempty"`
	// JWKSFile is a JSON Web Key Set file, relative to the policy file;
	// reread on reload.
	JWKSFile string `yaml:"jwks_file,omitempty" json:"jwks_file,omitempty"`
	// HMACSecretFile holds the shared secret for HS256/HS384/HS512,
	// relative to the policy file. At least 32 bytes.
	HMACSecretFile string `yaml:"hmac_secret_file,omitempty" json:"hmac_secret_file,omitempty"`
	// Algorithms accepted. Default RS256, ES256, EdDSA with keys, HS256
	// with a secret. "none" is never accepted.
	Algorithms []string `yaml:"algorithms,omitempty" json:"algorithms,omitempty"`
	// AllowMissingExp accepts tokens without an "exp" claim, which are
	// good for ever. Default false: such tokens get 401.
	AllowMissingExp bool `yaml:"allow_missing_exp,omitempty" json:"allow_missing_exp,omitempty"`
	// ClockSkew tolerated on exp, nbf and iat. Default 30s; at most 5m.
	ClockSkew config.Duration `yaml:"clock_skew,omitempty" json:"clock_skew,omitempty"`
	// RefreshInterval of the JWKS URL. Default 5m; at least 1s.
	RefreshInterval config.Duration `yaml:"refresh_interval,omitempty" json:"refresh_interval,omitempty"`
	// MinRefreshInterval bounds refetches for unknown key IDs: the JWKS
	// URL is fetched at most once per interval however many tokens with
	// unknown kids arrive. Default 10s; at least 1s.
	MinRefreshInterval config.Duration `yaml:"min_refresh_interval,omitempty" json:"min_refresh_interval,omitempty"`
	// Header carrying the token. Default "Authorization" with the
	// "Bearer" scheme; another header carries the bare token.
	Header string `yaml:"header,omitempty" json:"header,omitempty"`
	// Query parameter carrying the token, tried when the header is absent.
	Query string `yaml:"query,omitempty" json:"query,omitempty"`
	// ForwardClaims maps claim names to request headers set upstream
	// (for example sub: X-User-Id). Strings as they are, numbers and
	// booleans as JSON, lists joined with ","; a client's own header of
	// that name is always removed first.
	ForwardClaims map[string]string `yaml:"forward_claims,omitempty" json:"forward_claims,omitempty"`
}

// APIKeys authenticates with static keys, stored as SHA-256 hashes.
type APIKeys struct {
	// Header carrying the key. Default "X-API-Key".
	Header string `yaml:"header,omitempty" json:"header,omitempty"`
	// Query parameter carrying the key, tried when the header is absent.
	Query string `yaml:"query,omitempty" json:"query,omitempty"`
	// Keys accepted. At least one.
	Keys []APIKey `yaml:"keys" json:"keys" jsonschema:"required,minItems=1"`
	// ForwardNameHeader, when set, carries the matching key's name
	// upstream (the client's own header of that name is removed first).
	ForwardNameHeader string `yaml:"forward_name_header,omitempty" json:"forward_name_header,omitempty"`
}

// APIKey is one accepted key.
type APIKey struct {
	// Name is the key's principal in logs, spans and authz rules.
	Name string `yaml:"name" json:"name" jsonschema:"required"`
	// SHA256 is the hex SHA-256 of the key ("meshgate hash-key" prints it).
	SHA256 string `yaml:"sha256" json:"sha256" jsonschema:"required,pattern=^[0-9a-fA-F]{64}$"`
}

// Authz authorizes requests: the first rule that matches decides; when
// none does, Default does.
type Authz struct {
	// Default decision when no rule matches: "deny" (the default) or
	// "allow".
	Default string `yaml:"default,omitempty" json:"default,omitempty" jsonschema:"enum=deny,enum=allow"`
	// Rules, tried in order.
	Rules []Rule `yaml:"rules" json:"rules"`
}

// Rule matches requests; every field given must match.
type Rule struct {
	// Name identifies the rule in logs and spans. Required, unique within
	// the policy.
	Name string `yaml:"name" json:"name" jsonschema:"required"`
	// Action when the rule matches: "allow" (the default) or "deny".
	Action string `yaml:"action,omitempty" json:"action,omitempty" jsonschema:"enum=allow,enum=deny"`
	// Methods, upper case.
	Methods []string `yaml:"methods,omitempty" json:"methods,omitempty"`
	// Paths matched exactly on the normalised path.
	Paths []string `yaml:"paths,omitempty" json:"paths,omitempty"`
	// PathPrefixes match whole path segments ("/admin": "/admin",
	// "/admin/x", not "/administrator").
	PathPrefixes []string `yaml:"path_prefixes,omitempty" json:"path_prefixes,omitempty"`
	// Hosts as in applies_to.hosts.
	Hosts []string `yaml:"hosts,omitempty" json:"hosts,omitempty"`
	// Sources: client addresses or CIDR prefixes.
	Sources []string `yaml:"sources,omitempty" json:"sources,omitempty"`
	// When is a CEL expression of type bool over request, source, auth
	// and claims (see the README), compiled and type-checked at load.
	When string `yaml:"when,omitempty" json:"when,omitempty"`
}

// RateLimit is a token bucket per key: Requests per Per, with bursts up
// to Burst.
type RateLimit struct {
	// Name identifies the limit in headers, logs and metrics. Unique
	// within the policy.
	Name string `yaml:"name" json:"name" jsonschema:"required"`
	// Key partitions the buckets: "client_ip" (the default), "route",
	// "principal" (the authenticated subject or key name), "header:NAME"
	// or "claim:NAME". Requests without the header or claim share the
	// bucket of the empty key.
	Key string `yaml:"key,omitempty" json:"key,omitempty"`
	// Requests allowed per Per. At least 1.
	Requests int `yaml:"requests" json:"requests" jsonschema:"required,minimum=1"`
	// Per is the window of Requests. Default 1s.
	Per config.Duration `yaml:"per,omitempty" json:"per,omitempty"`
	// Burst is the bucket size. Default Requests.
	Burst int `yaml:"burst,omitempty" json:"burst,omitempty" jsonschema:"minimum=1"`
	// Scope is "local" (the default: each meshgate counts on its own) or
	// "global" (one count across all meshgate instances, in the Redis of
	// the config's policies.redis).
	Scope string `yaml:"scope,omitempty" json:"scope,omitempty" jsonschema:"enum=local,enum=global"`
	// FailureMode when Redis cannot answer: "open" (the default: allow)
	// or "closed" (503). Only for global limits.
	FailureMode string `yaml:"failure_mode,omitempty" json:"failure_mode,omitempty" jsonschema:"enum=open,enum=closed"`
	// MaxKeys bounds the buckets a local limit keeps; the least recently
	// used are dropped (a dropped key starts with a full bucket). Default
	// 100000.
	MaxKeys int `yaml:"max_keys,omitempty" json:"max_keys,omitempty" jsonschema:"minimum=1"`
}

// Transforms change requests and responses.
type Transforms struct {
	// Request sent upstream.
	Request *RequestTransform `yaml:"request,omitempty" json:"request,omitempty"`
	// Response sent to the client.
	Response *ResponseTransform `yaml:"response,omitempty" json:"response,omitempty"`
}

// HeaderOps change headers: remove, then set (replace), then add.
type HeaderOps struct {
	// Remove these headers.
	Remove []string `yaml:"remove,omitempty" json:"remove,omitempty"`
	// Set replaces a header's values.
	Set map[string]string `yaml:"set,omitempty" json:"set,omitempty"`
	// Add appends a value.
	Add map[string]string `yaml:"add,omitempty" json:"add,omitempty"`
}

// RequestTransform changes the request sent upstream. It runs after
// routing, authorization and rate limits (which saw the request as the
// client sent it, normalised) and before the route's strip_prefix and
// rewrite_prefix, which then apply to the rewritten path.
type RequestTransform struct {
	// Headers of the request.
	Headers *HeaderOps `yaml:"headers,omitempty" json:"headers,omitempty"`
	// Path rewrites the upstream path by a regular expression (RE2).
	Path *PathRewrite `yaml:"path,omitempty" json:"path,omitempty"`
	// Query parameters: remove, then set, then add.
	Query *HeaderOps `yaml:"query,omitempty" json:"query,omitempty"`
}

// PathRewrite replaces the first match of Pattern in the path.
type PathRewrite struct {
	// Pattern is an RE2 regular expression.
	Pattern string `yaml:"pattern" json:"pattern" jsonschema:"required"`
	// Replacement, with $1 or ${name} for groups. The result must start
	// with "/".
	Replacement string `yaml:"replacement" json:"replacement"`
}

// ResponseTransform changes the response sent to the client.
type ResponseTransform struct {
	// Headers of the response.
	Headers *HeaderOps `yaml:"headers,omitempty" json:"headers,omitempty"`
	// JSON changes the fields of JSON response bodies.
	JSON *JSONFields `yaml:"json,omitempty" json:"json,omitempty"`
}

// JSONFields filters and renames the fields of a JSON response body
// (Content-Type application/json or +json). Fields are dotted paths into
// objects ("user.email"); a path through an array applies to each element.
// Order: deny, then allow, then rename.
type JSONFields struct {
	// Allow keeps only these fields (and the objects leading to them).
	Allow []string `yaml:"allow,omitempty" json:"allow,omitempty"`
	// Deny removes these fields.
	Deny []string `yaml:"deny,omitempty" json:"deny,omitempty"`
	// Rename maps a field path to a new name in the same object.
	Rename map[string]string `yaml:"rename,omitempty" json:"rename,omitempty"`
	// MaxBodySize is the largest body transformed; a larger one gets 502
	// rather than leak denied fields. Default 1MiB.
	MaxBodySize config.Size `yaml:"max_body_size,omitempty" json:"max_body_size,omitempty"`
}
