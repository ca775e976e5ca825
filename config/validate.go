package config

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Validate checks c and returns every problem it finds, or nil. It is
// meant for a Config built in Go, after [Config.SetDefaults]: fields that
// have a default are reported when they are still zero. The returned
// problems have Field and Msg set but no File and Line; [Load] and [Parse]
// run the same checks and place each problem in the file.
//
// Validate reads the TLS certificate and key files to check that they
// form a usable pair. Relative paths are relative to the working
// directory here; [Load] resolves them against the config file's directory.
func (c *Config) Validate() Errors {
	var v validator
	v.config(c)
	if len(v.issues) == 0 {
		return nil
	}
	errs := make(Errors, len(v.issues))
	for i, is := range v.issues {
		errs[i] = &FieldError{Field: is.path.String(), Msg: oneLine(is.msg)}
	}
	return errs
}

// validator collects the problems of one Config.
type validator struct {
	issues []issue
	// has reports whether the config file has the key at a path, null or
	// not. nil for a Config built in Go, where absent and zero are the same.
	has func(fpath) bool
	// servicesUnknown is set when the file's services could not be
	// decoded, so that routes are not reported for naming them.
	servicesUnknown bool
	// discoveryUnknown is set when the file's discovery.consul could not
	// be decoded, so that register is not reported for missing it.
	discoveryUnknown bool
}

func (v *validator) addf(p fpath, format string, args ...any) {
	v.issues = append(v.issues, issue{path: p, msg: fmt.Sprintf(format, args...)})
}

// missing reports the empty required field at p; want says what to set.
func (v *validator) missing(p fpath, want string) {
	if v.has != nil && v.has(p) {
		v.addf(p, "must not be empty; want %s", want)
		return
	}
	v.addf(p, "is required; want %s", want)
}

// defaulted returns " (its default)" when the file leaves the field at p
// out, so that a message about a value the user never wrote says where it
// comes from.
func (v *validator) defaulted(p fpath) string {
	if v.has != nil && !v.has(p) {
		return " (its default)"
	}
	return ""
}

// explicit reports whether the config file sets the field at p, even to
// an empty value. Always false for a Config built in Go.
func (v *validator) explicit(p fpath) bool {
	return v.has != nil && v.has(p)
}

func (v *validator) config(c *Config) {
	var root fpath
	if c == nil {
		v.addf(root, "no configuration")
		return
	}
	v.listeners(c, root.field("listeners"))
	v.admin(c, root.field("admin"))
	v.server(&c.Server, root.field("server"))
	v.services(c.Services, root.field("services"))
	v.routes(c, root.field("routes"))
	v.discovery(c, root.field("discovery"))
	v.register(c, root.field("register"))
	v.telemetry(&c.Telemetry, root.field("telemetry"))
	v.policies(c, root.field("policies"))
}

// policies checks where policy files come from; the files themselves are
// checked by the policies package.
func (v *validator) policies(c *Config, p fpath) {
	switch c.Server.PathNormalization.EscapedSlashes {
	case "reject", "decode":
	default:
		v.addf(fpath{"server"}.field("path_normalization").field("escaped_slashes"), "unknown policy %q; want reject or decode", c.Server.PathNormalization.EscapedSlashes)
	}
	pc := c.Policies
	if pc == nil {
		return
	}
	if pc.Dir == "" && pc.ConsulKVPrefix == "" {
		v.addf(p, "want dir, consul_kv_prefix or both")
	}
	if pc.ConsulKVPrefix != "" && c.Discovery.Consul == nil && !v.discoveryUnknown {
		v.addf(p.field("consul_kv_prefix"), "needs discovery.consul, the agent to read it from")
	}
	if strings.HasPrefix(pc.ConsulKVPrefix, "/") {
		v.addf(p.field("consul_kv_prefix"), "%q must not start with /; Consul KV keys are relative", pc.ConsulKVPrefix)
	}
	if r := pc.Redis; r != nil {
		rp := p.field("redis")
		if r.Address == "" {
			v.missing(rp.field("address"), "the Redis server's host:port")
		} else if host, port, err := net.SplitHostPort(r.Address); err != nil || host == "" || port == "" {
			v.addf(rp.field("address"), "invalid address %q; want host:port", r.Address)
		}
		if r.DB < 0 {
			v.addf(rp.field("db"), "must not be negative, got %d", r.DB)
		}
		if r.Timeout <= 0 {
			v.addf(rp.field("timeout"), "must be greater than 0, got %s", r.Timeout)
		}
		if r.PasswordEnv != "" && !envName.MatchString(r.PasswordEnv) {
			v.addf(rp.field("password_env"), "%q is not an environment variable name", r.PasswordEnv)
		}
	}
}

// envName is the syntax of environment variable names.
var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// telemetry checks the overrides of OpenTelemetry's environment.
func (v *validator) telemetry(t *Telemetry, p fpath) {
	switch t.OTLPProtocol {
	case "", "http/protobuf", "http/json", "grpc":
	default:
		v.addf(p.field("otlp_protocol"), "unknown protocol %q; want http/protobuf, http/json or grpc", t.OTLPProtocol)
	}
	if e := t.OTLPEndpoint; e != "" {
		if u, err := url.Parse(e); err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" {
			return
		}
		if _, port, err := net.SplitHostPort(e); err == nil && port != "" {
			return
		}
		v.addf(p.field("otlp_endpoint"), "invalid endpoint %q; want a URL such as http://jaeger:4318/v1/traces, or host:port for grpc", e)
	}
	if strings.ContainsAny(t.ServiceName, "\r\n") {
		v.addf(p.field("service_name"), "must be a single line")
	}
}

const wantListenAddress = `host:port such as ":8080" or "127.0.0.1:8080"`

func (v *validator) listeners(c *Config, lp fpath) {
	if len(c.Listeners) == 0 {
		v.addf(lp, `at least one listener is required, such as {address: ":8080"}`)
		return
	}
	names := make(map[string]fpath, len(c.Listeners))
	addrs := make(map[string]fpath, len(c.Listeners))
	for i, l := range c.Listeners {
		p := lp.index(i)
		ap := p.field("address")
		switch {
		case l.Address == "":
			v.missing(ap, wantListenAddress)
		case checkListenAddress(l.Address) != "":
			v.addf(ap, "%s", checkListenAddress(l.Address))
		case !randomPort(l.Address):
			// Port 0 picks a free port per listener, so only fixed
			// ports can collide.
			if first, dup := addrs[l.Address]; dup {
				v.addf(ap, "address %q is already used by %s; each listener needs its own", l.Address, first)
			} else {
				addrs[l.Address] = ap
			}
		}
		np := p.field("name")
		switch first, dup := names[l.Name]; {
		case l.Name == "":
			if l.Address != "" {
				v.addf(np, "must not be empty; remove it to default to the address")
			}
		case dup:
			v.addf(np, "duplicate listener name %q%s, already used by %s%s; names must be unique", l.Name, v.defaulted(np), first, v.defaulted(first))
		default:
			names[l.Name] = np
		}
		v.notNegative(p.field("max_concurrent_requests"), l.MaxConcurrentRequests)
		if l.TLS != nil {
			v.tls(l.TLS, p.field("tls"))
			if l.H2C {
				v.addf(p.field("h2c"), "applies to plain listeners only; TLS listeners offer HTTP/2 through ALPN, so remove h2c or tls")
			}
		}
	}
}

// checkListenAddress returns what is wrong with a listen address, or "".
func checkListenAddress(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		reason := err.Error()
		var ae *net.AddrError
		if errors.As(err, &ae) {
			reason = ae.Err
		}
		return fmt.Sprintf("invalid address %q: %s; want %s", addr, reason, wantListenAddress)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil || !allDigits(port) {
		return fmt.Sprintf("invalid port %q in address %q; want a number 0-65535", port, addr)
	}
	if host != "" && !validIP(host) && !validHostname(host, false) {
		return fmt.Sprintf("invalid host %q in address %q; want an IP address, a host name, or nothing for all interfaces", host, addr)
	}
	return ""
}

// randomPort reports whether a valid listen address asks for port 0.
func randomPort(addr string) bool {
	_, port, err := net.SplitHostPort(addr)
	return err == nil && strings.TrimLeft(port, "0") == ""
}

func (v *validator) admin(c *Config, p fpath) {
	ap := p.field("address")
	switch a := c.Admin.Address; {
	case a == AdminOff:
	case a == "":
		v.addf(ap, `must not be empty; want host:port such as %q, or %q to disable the admin listener`, DefaultAdminAddress, AdminOff)
	case checkListenAddress(a) != "":
		v.addf(ap, "%s, or %q to disable the admin listener", checkListenAddress(a), AdminOff)
	case !randomPort(a):
		for i, l := range c.Listeners {
			if l.Address == a {
				v.addf(ap, "address %q is also used by listeners[%d]; the admin listener needs its own address", a, i)
			}
		}
	}
}

func (v *validator) server(s *Server, p fpath) {
	v.positive(p.field("read_header_timeout"), s.ReadHeaderTimeout)
	v.positive(p.field("idle_timeout"), s.IdleTimeout)
	v.positive(p.field("grace_period"), s.GracePeriod)
	if s.DrainDelay < 0 {
		v.addf(p.field("drain_delay"), "must not be negative, got %s", s.DrainDelay)
	}
	if s.MaxHeaderBytes < MinMaxHeaderBytes || s.MaxHeaderBytes > MaxMaxHeaderBytes {
		v.addf(p.field("max_header_bytes"), "%s is out of range; want %s to %s", sizeText(s.MaxHeaderBytes), MinMaxHeaderBytes, MaxMaxHeaderBytes)
	}
	if s.MaxBodyBytes <= 0 {
		v.addf(p.field("max_body_bytes"), "must be greater than 0; to relax the limit use a large size such as 1GiB")
	}
	if s.TrustedHops < 0 || s.TrustedHops > MaxTrustedHops {
		v.addf(p.field("trusted_hops"), "%d is out of range; want 0 to %d", s.TrustedHops, MaxTrustedHops)
	}
}

// sizeText writes s with a unit, also when it is a plain number of bytes.
func sizeText(s Size) string {
	t := s.String()
	if allDigits(t) {
		return t + "B"
	}
	return t
}

// positive reports a duration that must be greater than zero and is not.
func (v *validator) positive(p fpath, d Duration) {
	if d <= 0 {
		v.addf(p, "must be greater than 0, got %s; want a duration such as 10s", d)
	}
}

func (v *validator) services(svcs map[string]Service, svp fpath) {
	for _, name := range slices.Sorted(maps.Keys(svcs)) {
		s := svcs[name]
		p := svp.key(name)
		if !validServiceName(name) {
			v.addf(p, "invalid service name %q; want letters, digits, '.', '_' and '-', starting with a letter or digit", name)
		}
		if s.Protocol != ProtocolHTTP1 && s.Protocol != ProtocolH2C {
			v.addf(p.field("protocol"), "unknown protocol %q; want one of: %s, %s", s.Protocol, ProtocolHTTP1, ProtocolH2C)
		}
		v.loadBalancer(&s.LoadBalancer, p.field("load_balancer"))
		tp := p.field("timeouts")
		v.positive(tp.field("connect"), s.Timeouts.Connect)
		v.positive(tp.field("response_header"), s.Timeouts.ResponseHeader)
		v.positive(tp.field("idle_conn"), s.Timeouts.IdleConn)
		v.resilience(&s, p)
		if s.MaxIdleConnsPerInstance < 1 {
			v.addf(p.field("max_idle_conns_per_instance"), "must be at least 1, got %d", s.MaxIdleConnsPerInstance)
		}
		ids := make(map[string]fpath, len(s.Instances))
		for i, in := range s.Instances {
			ip := p.field("instances").index(i)
			v.instance(&in, ip)
			if v.defaulted(ip.field("id")) != "" && (in.Address == "" || in.Port < 1 || in.Port > 65535) {
				continue // a default id from a bad address or port says nothing new
			}
			switch first, dup := ids[in.ID]; {
			case in.ID == "":
				v.addf(ip.field("id"), `must not be empty; remove it to default to "address:port"`)
			case dup:
				v.addf(ip.field("id"), "duplicate instance id %q%s, already used by %s%s; ids must be unique within a service", in.ID, v.defaulted(ip.field("id")), first, v.defaulted(first))
			default:
				ids[in.ID] = ip.field("id")
			}
		}
	}
}

func (v *validator) loadBalancer(lb *LoadBalancer, p fpath) {
	policies := []string{PolicyRoundRobin, PolicyWeightedRoundRobin, PolicyLeastRequest, PolicyConsistentHash}
	known := slices.Contains(policies, lb.Policy)
	if !known {
		v.addf(p.field("policy"), "unknown policy %q; want one of: %s", lb.Policy, strings.Join(policies, ", "))
	}
	hp := p.field("hash_on")
	switch {
	case lb.Policy == PolicyConsistentHash && lb.HashOn == nil:
		v.addf(hp, "is required for policy %s; want hash_on with header or cookie", PolicyConsistentHash)
	case lb.Policy == PolicyConsistentHash:
		h := lb.HashOn
		switch {
		case h.Header != "" && h.Cookie != "":
			v.addf(hp, "set exactly one of header and cookie, not both")
		case h.Header != "":
			if !validToken(h.Header) {
				v.addf(hp.field("header"), "invalid header name %q; want an HTTP header name such as X-User-ID", h.Header)
			}
		case h.Cookie != "":
			if !validToken(h.Cookie) {
				v.addf(hp.field("cookie"), "invalid cookie name %q; want a cookie name such as session_id", h.Cookie)
			}
		default:
			v.addf(hp, "set exactly one of header and cookie")
		}
	case lb.HashOn != nil && known:
		v.addf(hp, "applies only to policy %s, not %s; remove hash_on or change the policy", PolicyConsistentHash, lb.Policy)
	}
}

// hostAddress checks an address written without a port: an IP address or
// a host name. want says what is expected when it is missing.
func (v *validator) hostAddress(ap fpath, a, want string) {
	switch {
	case a == "":
		v.missing(ap, want)
	case validIP(a) || validHostname(a, true):
	case strings.HasPrefix(a, "[") && strings.HasSuffix(a, "]") && validIP(a[1:len(a)-1]):
		v.addf(ap, "invalid address %q; write IPv6 addresses without brackets", a)
	case hasPort(a):
		v.addf(ap, "invalid address %q; want an IP address or host name without a port (set the port in port)", a)
	default:
		v.addf(ap, "invalid address %q; want an IP address or host name", a)
	}
}

// port checks a TCP port that must be set.
func (v *validator) port(pp fpath, port int) {
	switch {
	case port == 0 && !v.explicit(pp):
		v.addf(pp, "is required; want a TCP port 1-65535")
	case port < 1 || port > 65535:
		v.addf(pp, "%d is out of range; want a TCP port 1-65535", port)
	}
}

func (v *validator) instance(in *Instance, p fpath) {
	v.hostAddress(p.field("address"), in.Address, "an IP address or host name")
	v.port(p.field("port"), in.Port)
	if in.Weight < 0 || in.Weight > MaxWeight {
		v.addf(p.field("weight"), "%d is out of range; want 1 to %d (0 or unset means %d)", in.Weight, MaxWeight, DefaultWeight)
	}
	if healths := []string{HealthPassing, HealthWarning, HealthCritical}; !slices.Contains(healths, in.Health) {
		v.addf(p.field("health"), "unknown health %q; want one of: %s", in.Health, strings.Join(healths, ", "))
	}
}

// hasPort reports whether a looks like host:port.
func hasPort(a string) bool {
	_, port, err := net.SplitHostPort(a)
	return err == nil && allDigits(port)
}

func (v *validator) routes(c *Config, rp fpath) {
	names := make(map[string]fpath, len(c.Routes))
	for i, r := range c.Routes {
		p := rp.index(i)
		np := p.field("name")
		switch first, dup := names[r.Name]; {
		case r.Name == "":
			v.addf(np, "must not be empty; remove it to default to %q", DefaultRouteName(i))
		case dup:
			v.addf(np, "duplicate route name %q%s, already used by %s%s; names must be unique", r.Name, v.defaulted(np), first, v.defaulted(first))
		default:
			names[r.Name] = np
		}

		sp := p.field("service")
		if r.Aggregate != nil {
			v.aggregateRoute(&r, p)
		} else if r.Service == "" {
			v.missing(sp, "the name of a service declared under services")
		} else if _, ok := c.Services[r.Service]; !ok && !v.servicesUnknown {
			v.addf(sp, "unknown service %q; %s", r.Service, declared(c.Services))
		}

		v.match(&r.Match, p.field("match"))

		rwp := p.field("rewrite_prefix")
		if r.RewritePrefix != "" || v.explicit(rwp) {
			if msg := checkPath(r.RewritePrefix); msg != "" {
				v.addf(rwp, "%s", msg)
			}
		}
		switch {
		case r.StripPrefix && r.RewritePrefix != "":
			v.addf(rwp, "strip_prefix and rewrite_prefix are mutually exclusive; rewrite_prefix already replaces the matched prefix")
		case r.Match.Path != "" && r.StripPrefix:
			v.addf(p.field("strip_prefix"), "needs match.path_prefix; it does not apply to an exact match.path")
		case r.Match.Path != "" && r.RewritePrefix != "":
			v.addf(rwp, "needs match.path_prefix; it does not apply to an exact match.path")
		}
		if r.Timeout < 0 || r.Timeout > MaxRouteTimeout {
			v.addf(p.field("timeout"), "%s is out of range; want 0s (no overall limit) to %s", durText(r.Timeout), durText(MaxRouteTimeout))
		}
	}
}

// declared lists the declared services for an "unknown service" message.
func declared(svcs map[string]Service) string {
	if len(svcs) == 0 {
		return "no services are declared under services"
	}
	names := slices.Sorted(maps.Keys(svcs))
	const maxNames = 10
	if len(names) > maxNames {
		return fmt.Sprintf("declared services: %s and %d more", strings.Join(names[:maxNames], ", "), len(names)-maxNames)
	}
	return "declared services: " + strings.Join(names, ", ")
}

func (v *validator) match(m *Match, p fpath) {
	pathp, prefixp := p.field("path"), p.field("path_prefix")
	if m.Path != "" || v.explicit(pathp) {
		if msg := checkPath(m.Path); msg != "" {
			v.addf(pathp, "%s", msg)
		}
	}
	if m.PathPrefix != "" || v.explicit(prefixp) {
		if msg := checkPath(m.PathPrefix); msg != "" {
			v.addf(prefixp, "%s", msg)
		}
	}
	if (m.Path != "" || v.explicit(pathp)) && (m.PathPrefix != "" || v.explicit(prefixp)) {
		v.addf(prefixp, "path and path_prefix are mutually exclusive; use path for one exact path or path_prefix for a subtree")
	}

	if m.Host != "" || v.explicit(p.field("host")) {
		if msg := checkRouteHost(m.Host); msg != "" {
			v.addf(p.field("host"), "%s", msg)
		}
	}

	seen := make(map[string]bool, len(m.Methods))
	for i, method := range m.Methods {
		mp := p.field("methods").index(i)
		switch {
		case !validToken(method):
			v.addf(mp, "invalid method %q; want an HTTP method such as GET or POST", method)
		case strings.ToUpper(method) != method:
			v.addf(mp, "method %q must be upper case: %q", method, strings.ToUpper(method))
		case seen[method]:
			v.addf(mp, "duplicate method %q", method)
		}
		seen[method] = true
	}

	hp := p.field("headers")
	lower := make(map[string]string, len(m.Headers))
	for _, name := range slices.Sorted(maps.Keys(m.Headers)) {
		kp := hp.key(name)
		if !validToken(name) {
			v.addf(kp, "invalid header name %q; want an HTTP header name such as X-Env", name)
			continue
		}
		if first, dup := lower[strings.ToLower(name)]; dup {
			v.addf(kp, "header %q is the same as %q; header names are case-insensitive", name, first)
		}
		lower[strings.ToLower(name)] = name
		if !validHeaderValue(m.Headers[name]) {
			v.addf(kp, "invalid value %q; header values must not contain control characters", m.Headers[name])
		}
	}
}

// checkPath returns what is wrong with a route path, path prefix or
// rewrite prefix, or "".
func checkPath(s string) string {
	if !strings.HasPrefix(s, "/") {
		return fmt.Sprintf("%q must start with \"/\"", s)
	}
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		return fmt.Sprintf("%q must not contain %q; queries and fragments are not part of the path", s, s[i:i+1])
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] == 0x7f {
			return fmt.Sprintf("%q must not contain spaces or control characters; percent-encode them", s)
		}
	}
	segs := strings.Split(s[1:], "/")
	for i, seg := range segs {
		switch {
		case seg == "" && i < len(segs)-1:
			return fmt.Sprintf(`%q has an empty segment ("//"), which a normalised request path never has`, s)
		case seg == "." || seg == "..":
			return fmt.Sprintf(`%q has a %q segment, which a normalised request path never has`, s, seg)
		}
	}
	return ""
}

// checkRouteHost returns what is wrong with match.host, or "".
func checkRouteHost(h string) string {
	const want = `want a host name such as "api.example.com", or "*.example.com" for its subdomains`
	if h == "" {
		return "must not be empty; remove it to match every host"
	}
	if hasPort(h) || strings.Contains(h, ":") {
		return fmt.Sprintf("invalid host %q; the port is ignored when matching, so leave it out; %s", h, want)
	}
	name := strings.TrimPrefix(h, "*.")
	if strings.Contains(name, "*") {
		return fmt.Sprintf(`invalid host %q; a wildcard is only allowed as a leading "*."; %s`, h, want)
	}
	if !validHostname(name, false) {
		return fmt.Sprintf("invalid host %q; %s", h, want)
	}
	return ""
}

func (v *validator) tls(t *TLS, p fpath) {
	certp, keyp := p.field("cert_file"), p.field("key_file")
	var cert, key []byte
	if t.CertFile == "" {
		v.missing(certp, "the path of a PEM certificate chain")
	} else if b, err := readSmallFile(t.CertFile, maxPEMSize); err != nil {
		v.addf(certp, "cannot read the certificate: %v", err)
	} else {
		cert = b
	}
	if t.KeyFile == "" {
		v.missing(keyp, "the path of a PEM private key")
	} else if b, err := readSmallFile(t.KeyFile, maxPEMSize); err != nil {
		v.addf(keyp, "cannot read the private key: %v", err)
	} else {
		key = b
	}
	if cert != nil && key != nil {
		if _, err := tls.X509KeyPair(cert, key); err != nil {
			v.addf(p, "cert_file and key_file are not a usable certificate and key: %v", err)
		}
	}
}

// maxPEMSize bounds the certificate and key files read for validation.
const maxPEMSize = 1 << 20

// readSmallFile reads a regular file of at most limit bytes.
func readSmallFile(name string, limit int64) ([]byte, error) {
	fi, err := os.Stat(name)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", name)
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %s", name, Size(limit))
	}
	return b, nil
}

// validIP reports whether s is an IPv4 or IPv6 address (with an optional
// IPv6 zone), without brackets.
func validIP(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}

// validHostname reports whether s is a host name: dot-separated labels of
// 1-63 letters, digits, '-' and '_' that do not start or end with '-', at
// most 253 characters. The underscore, outside RFC 1123, is accepted
// because container runtimes hand out such names. trailingDot allows a
// fully qualified "name.".
func validHostname(s string, trailingDot bool) bool {
	if trailingDot {
		s = strings.TrimSuffix(s, ".")
	}
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// validServiceName reports whether s matches [a-zA-Z0-9][a-zA-Z0-9._-]*.
func validServiceName(s string) bool {
	if s == "" || !isAlnum(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '.' && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// validToken reports whether s is an HTTP token (RFC 9110, section 5.6.2),
// the syntax of header names, methods and cookie names.
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isAlnum(c) {
			continue
		}
		if !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(c)) {
			return false
		}
	}
	return true
}

// validHeaderValue reports whether s can be a header field value: no
// control characters other than horizontal tab (RFC 9110, section 5.5).
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// oneLine keeps a message on one line, whatever an underlying error says.
func oneLine(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return strings.Join(strings.Fields(s), " ")
}
