package policies

import (
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"strings"

	"github.com/meshgate/meshgate/config"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// Set is a compiled, immutable set of policies: what one load of the
// policy files produced. The gateway links its steps into per-route
// chains with [Set.Chain].
type Set struct {
	env      *Env
	policies []*compiledPolicy
	files    []string // the sources, in load order
}

// compiledPolicy is one policy ready to run.
type compiledPolicy struct {
	name  string
	file  string
	line  int
	sel   selector
	steps [numSteps]middleware // nil where the policy has no such step
	// refs are the route and service names applies_to gives, with their
	// places, to check them against the routing table.
	refs []ref
	// spec is the policy as written plus defaults, for /admin/policies.
	spec *Policy
	// owned are the request headers the policy sets upstream.
	owned []string
}

// ref is a route or service name a selector gives.
type ref struct {
	kind, name, file string
	line             int
	field            string
}

// Policies returns the names of the policies in the set, in load order.
func (s *Set) Policies() []string {
	out := make([]string, len(s.policies))
	for i, p := range s.policies {
		out[i] = p.name
	}
	return out
}

// compiler is the state of compiling one file of a set.
type compiler struct {
	doc  *config.Document
	file string
	dir  string // the file's directory, for relative key files; "" for Consul KV
	env  *Env
	res  *resources
	// validateOnly is set by meshgate validate: nothing is fetched or
	// connected and no background work starts.
	validateOnly bool
	// haveRedis says whether global rate limits have a store (the
	// config's policies.redis).
	haveRedis bool
	// cur is the policy being compiled.
	cur *compiledPolicy
}

// ownHeaders records request headers the policy sets upstream (forwarded
// claims, the API key's name): the chain removes whatever the client sent
// under these names from every request of a route the policy applies to.
func (c *compiler) ownHeaders(names ...string) {
	for _, n := range names {
		n = http.CanonicalHeaderKey(n)
		if !slices.Contains(c.cur.owned, n) {
			c.cur.owned = append(c.cur.owned, n)
		}
	}
}

// errorf records a problem with the field at path of the current file.
func (c *compiler) errorf(path, format string, args ...any) {
	c.doc.Addf(path, format, args...)
}

// errorAt records a problem found inside a field's value, on a line of
// its own (a multi-line CEL expression); 0 is the field's line.
func (c *compiler) errorAt(line int, path, msg string) {
	c.doc.AddAt(line, path, msg)
}

// line returns the line of the field at path.
func (c *compiler) line(path string) int { return c.doc.Line(path) }

// acquire returns the long-lived resource (a JWKS cache, a rate limiter's
// buckets) stored under key, creating it when the set in force has none.
// Resources outlive reloads while a policy still names them, so that
// buckets keep their counts and caches their keys; the manager closes
// those the new set no longer uses once it is in force.
func (c *compiler) acquire(key string, create func() (io.Closer, error)) (io.Closer, error) {
	return c.res.acquire(key, create)
}

// namePattern is the syntax of policy, rule and limit names.
var namePattern = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]*$`)

// compileFile compiles the policies of one decoded file.
func (c *compiler) compileFile(f *File, seen map[string]string) []*compiledPolicy {
	if len(f.Policies) == 0 && !c.doc.Bad("policies") {
		c.errorf("policies", "want at least one policy")
	}
	out := make([]*compiledPolicy, 0, len(f.Policies))
	for i := range f.Policies {
		pol := &f.Policies[i]
		path := config.Index("policies", i)
		p := c.compilePolicy(path, pol)
		if pol.Name != "" {
			if at, dup := seen[pol.Name]; dup {
				c.errorf(config.Field(path, "name"), "duplicate policy name %q; first defined at %s", pol.Name, at)
			} else {
				seen[pol.Name] = fmt.Sprintf("%s:%d", c.file, c.line(config.Field(path, "name")))
			}
		}
		out = append(out, p)
	}
	return out
}

// compilePolicy compiles one policy; problems go to the document.
func (c *compiler) compilePolicy(path string, pol *Policy) *compiledPolicy {
	p := &compiledPolicy{name: pol.Name, file: c.file, line: c.line(path), spec: pol}
	c.cur = p
	switch {
	case pol.Name == "":
		c.errorf(config.Field(path, "name"), "required")
	case !namePattern.MatchString(pol.Name):
		c.errorf(config.Field(path, "name"), "%q is not a valid name; want letters, digits, '.', '_' and '-', starting with a letter or digit", pol.Name)
	}
	p.sel = c.compileSelector(config.Field(path, "applies_to"), &pol.AppliesTo, p)

	p.steps[0] = c.ipStep(config.Field(path, "ip"), pol.Name, pol.IP)
	p.steps[1] = c.corsStep(config.Field(path, "cors"), pol.Name, pol.CORS)
	p.steps[2] = c.bodyLimitStep(config.Field(path, "max_body_size"), pol.Name, pol.MaxBodySize)
	p.steps[3] = c.authnStep(config.Field(path, "authn"), pol.Name, pol.Authn)
	p.steps[4] = c.authzStep(config.Field(path, "authz"), pol.Name, pol.Authz)
	p.steps[5] = c.rateLimitStep(config.Field(path, "rate_limits"), pol.Name, pol.RateLimits)
	p.steps[6] = c.transformStep(config.Field(path, "transforms"), pol.Name, pol.Transforms)

	if !c.doc.Bad(path) && !c.hasSteps(pol) {
		c.errorf(path, "policy %q has no steps; want at least one of ip, cors, max_body_size, authn, authz, rate_limits, transforms", pol.Name)
	}
	return p
}

// hasSteps reports whether the policy as written has any step, so that a
// step that failed to compile is not also reported as missing.
func (c *compiler) hasSteps(pol *Policy) bool {
	return pol.IP != nil || pol.CORS != nil || pol.MaxBodySize != 0 || pol.Authn != nil || pol.Authz != nil ||
		len(pol.RateLimits) > 0 || pol.Transforms != nil
}

// compileSelector checks applies_to and compiles it.
func (c *compiler) compileSelector(path string, s *Selector, p *compiledPolicy) selector {
	if c.doc.Bad(path) {
		return selector{}
	}
	sel := selector{all: s.All, routes: s.Routes, services: s.Services}
	given := len(s.Routes) + len(s.Services) + len(s.Hosts) + len(s.PathPrefixes) + len(s.Methods)
	switch {
	case s.All && given > 0:
		c.errorf(config.Field(path, "all"), "all: true applies to every request; remove the other fields or all")
	case !s.All && given == 0:
		c.errorf(path, "want at least one of routes, services, hosts, path_prefixes, methods, or all: true")
	}
	for i, name := range s.Routes {
		fp := config.Index(config.Field(path, "routes"), i)
		p.refs = append(p.refs, ref{kind: "route", name: name, file: c.file, line: c.line(fp), field: fp})
	}
	for i, name := range s.Services {
		fp := config.Index(config.Field(path, "services"), i)
		p.refs = append(p.refs, ref{kind: "service", name: name, file: c.file, line: c.line(fp), field: fp})
	}
	sel.req = c.requestSelector(path, s.Hosts, s.PathPrefixes, nil, s.Methods)
	return sel
}

// requestSelector checks and compiles hosts, path prefixes, exact paths
// and methods found at path (applies_to or an authz rule).
func (c *compiler) requestSelector(path string, hosts, prefixes, paths, methods []string) requestSelector {
	var rs requestSelector
	for i, h := range hosts {
		fp := config.Index(config.Field(path, "hosts"), i)
		if err := checkHostPattern(h); err != nil {
			c.errorf(fp, "%v", err)
			continue
		}
		rs.hosts.add(h)
	}
	for i, pre := range prefixes {
		fp := config.Index(config.Field(path, "path_prefixes"), i)
		if err := checkPath(pre); err != nil {
			c.errorf(fp, "%v", err)
			continue
		}
		if pre != "/" {
			pre = strings.TrimSuffix(pre, "/")
		}
		rs.prefixes = append(rs.prefixes, pre)
	}
	for i, p := range paths {
		fp := config.Index(config.Field(path, "paths"), i)
		if err := checkPath(p); err != nil {
			c.errorf(fp, "%v", err)
			continue
		}
		rs.paths = append(rs.paths, p)
	}
	for i, m := range methods {
		fp := config.Index(config.Field(path, "methods"), i)
		if !isToken(m) || strings.ToUpper(m) != m {
			c.errorf(fp, "%q is not a method; want an upper-case HTTP method such as GET", m)
			continue
		}
		rs.methods = append(rs.methods, m)
	}
	return rs
}

// checkPath checks a path given in a policy: absolute and already in the
// normal form requests are compared in, so that it can match at all.
func checkPath(p string) error {
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("%q must start with /", p)
	}
	if n, err := NormalizePath(p, EscapedSlashesReject, true); err != nil || n != p {
		return fmt.Errorf("%q is not a normalised path (no dot segments, repeated slashes or escaped slashes); requests are normalised before they are matched, so it would never match", p)
	}
	return nil
}

// checkHostPattern checks a host name or "*.suffix" pattern.
func checkHostPattern(h string) error {
	rest := strings.TrimPrefix(h, "*.")
	if h == "" || strings.ContainsAny(rest, "*:/ ") {
		return fmt.Errorf("%q is not a host name or *.domain pattern (no port)", h)
	}
	return nil
}

// isToken reports whether s is an RFC 9110 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// parsePrefix parses an address or CIDR prefix ("10.0.0.0/8", "::1").
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR prefix", s)
		}
		if p.Masked() != p {
			return netip.Prefix{}, fmt.Errorf("%q has bits set beyond its /%d; want %s", s, p.Bits(), p.Masked())
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR prefix", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// observe records a step's decision: counted by the observer, and an
// event on the request's span naming the policy, the step and the
// decision, so that every step of every policy leaves its own mark (the
// steps' own attributes, such as meshgate.authz.rule, go on the span).
func (st *requestState) observe(r *http.Request, policy, step, decision string) {
	if st.env != nil && st.env.Observer != nil {
		st.env.Observer.Decision(r.Context(), policy, step, decision)
	}
	if span := trace.SpanFromContext(r.Context()); span.IsRecording() {
		span.AddEvent("meshgate.policy.decision", trace.WithAttributes(
			attribute.String("meshgate.policy.name", policy),
			attribute.String("meshgate.policy.step", step),
			attribute.String("meshgate.policy.decision", decision),
		))
	}
}

// CheckRefs returns a problem for every route name in an applies_to that
// routes lacks, and every service name services lacks when
// servicesComplete (with Consul discovery, services may appear later).
func (s *Set) CheckRefs(routes, services []string, servicesComplete bool) error {
	var errs config.Errors
	for _, p := range s.policies {
		for _, r := range p.refs {
			switch {
			case r.kind == "route" && !slices.Contains(routes, r.name):
				errs = append(errs, &config.FieldError{File: r.file, Line: r.line, Field: r.field, Msg: fmt.Sprintf("no route named %q in the config", r.name)})
			case r.kind == "service" && servicesComplete && !slices.Contains(services, r.name):
				errs = append(errs, &config.FieldError{File: r.file, Line: r.line, Field: r.field, Msg: fmt.Sprintf("no service named %q in the config", r.name)})
			}
		}
	}
	return errs.Err()
}
