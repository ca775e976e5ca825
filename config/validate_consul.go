package config

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

// This file validates discovery.consul and register: the Consul agent
// connection, how services are watched, and the sidecar's own registration.

func (v *validator) discovery(c *Config, p fpath) {
	if c.Discovery.Consul != nil {
		v.consul(c.Discovery.Consul, p.field("consul"))
	}
}

const wantConsulAddress = `want host:port such as "127.0.0.1:8500" or an http or https URL such as "https://consul.example.com:8501"`

func (v *validator) consul(cc *Consul, p fpath) {
	if ap := p.field("address"); cc.Address != "" || v.explicit(ap) {
		if msg := checkConsulAddress(cc.Address); msg != "" {
			v.addf(ap, "%s", msg)
		}
	}
	// The token is a secret: messages about it never quote it.
	if !validSecret(cc.Token) {
		v.addf(p.field("token"), "must not contain spaces or control characters (the value is not shown); check for a stray newline")
	}
	if dp := p.field("datacenter"); cc.Datacenter != "" || v.explicit(dp) {
		switch {
		case cc.Datacenter == "":
			v.addf(dp, "must not be empty; remove it to query the agent's own datacenter")
		case !validDatacenter(cc.Datacenter):
			v.addf(dp, "invalid datacenter %q; want letters, digits, '.', '_' and '-', such as dc1", cc.Datacenter)
		}
	}
	v.tags(cc.Tags, p.field("tags"))

	v.durationRange(p.field("wait"), cc.Wait, MinConsulWait, MaxConsulWait)
	v.durationRange(p.field("min_interval"), cc.MinInterval, 0, MaxConsulMinInterval)
	v.durationRange(p.field("max_backoff"), cc.MaxBackoff, MinConsulMaxBackoff, MaxConsulMaxBackoff)

	rp := p.field("routes")
	tp := rp.field("tag_prefix")
	switch tag := cc.Routes.TagPrefix; {
	case tag == "":
		v.addf(tp, "must not be empty; remove it to default to %q", DefaultConsulRouteTagPrefix)
	case strings.IndexFunc(tag, isSpaceOrControl) >= 0:
		v.addf(tp, "invalid tag prefix %q; it must not contain spaces or control characters", tag)
	}
	if msg := checkMetaKey(cc.Routes.MetaKey); msg != "" {
		if cc.Routes.MetaKey == "" {
			msg += fmt.Sprintf("; remove it to default to %q", DefaultConsulRouteMetaKey)
		}
		v.addf(rp.field("meta_key"), "%s", msg)
	}
}

// checkConsulAddress returns what is wrong with discovery.consul.address,
// or "". A URL may carry a path: the Consul client reaches the API below
// it, as behind a reverse proxy.
func checkConsulAddress(a string) string {
	if a == "" {
		return "must not be empty; remove it to use CONSUL_HTTP_ADDR or 127.0.0.1:8500"
	}
	if scheme, rest, ok := strings.Cut(a, "://"); ok {
		if scheme != "http" && scheme != "https" {
			return fmt.Sprintf("unsupported scheme %q; %s", scheme, wantConsulAddress)
		}
		authority := rest
		if i := strings.IndexAny(rest, "/?#"); i >= 0 {
			authority = rest[:i]
		}
		if strings.Contains(authority, "@") {
			// Not quoted: the user information may hold a password.
			return "the URL must not contain a user name or password; set the ACL token in token"
		}
		u, err := url.Parse(a)
		if err != nil {
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err
			}
			return fmt.Sprintf("invalid URL %q: %v; %s", a, err, wantConsulAddress)
		}
		switch {
		case u.Host == "":
			return fmt.Sprintf("URL %q has no host; %s", a, wantConsulAddress)
		case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
			return fmt.Sprintf("URL %q must not have a query or fragment; %s", a, wantConsulAddress)
		}
		if port := u.Port(); port != "" && !validPort(port) {
			return fmt.Sprintf("invalid port %q in URL %q; want a number 1-65535", port, a)
		}
		if h := u.Hostname(); !validIP(h) && !validHostname(h, true) {
			return fmt.Sprintf("invalid host %q in URL %q; want an IP address or host name", h, a)
		}
		return ""
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		reason := err.Error()
		var ae *net.AddrError
		if errors.As(err, &ae) {
			reason = ae.Err
		}
		return fmt.Sprintf("invalid address %q: %s; %s", a, reason, wantConsulAddress)
	}
	if !validPort(port) {
		return fmt.Sprintf("invalid port %q in address %q; want a number 1-65535", port, a)
	}
	if host == "" {
		return fmt.Sprintf("address %q has no host; %s", a, wantConsulAddress)
	}
	if !validIP(host) && !validHostname(host, true) {
		return fmt.Sprintf("invalid host %q in address %q; want an IP address or host name", host, a)
	}
	return ""
}

// validPort reports whether s is a port number 1-65535.
func validPort(s string) bool {
	n, err := strconv.ParseUint(s, 10, 16)
	return err == nil && allDigits(s) && n > 0
}

// validSecret reports whether s, a token, has no white space or control
// characters; an empty token is valid (none).
func validSecret(s string) bool {
	return strings.IndexFunc(s, isSpaceOrControl) < 0
}

func isSpaceOrControl(r rune) bool {
	return unicode.IsSpace(r) || unicode.IsControl(r)
}

// validDatacenter reports whether s matches [A-Za-z0-9_.-]+.
func validDatacenter(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '_' && c != '.' && c != '-' {
			return false
		}
	}
	return true
}

// checkMetaKey returns what is wrong with a Consul service meta key, or
// "": Consul accepts ^[A-Za-z0-9_-]+$, at most 128 bytes, not starting
// with "consul-".
func checkMetaKey(k string) string {
	switch {
	case k == "":
		return "must not be empty; want a Consul meta key of letters, digits, '_' and '-'"
	case !validMetaKeyChars(k):
		return fmt.Sprintf("invalid meta key %q; Consul meta keys are letters, digits, '_' and '-'", k)
	case len(k) > MaxMetaKeyLength:
		return fmt.Sprintf("meta key %q is %d bytes long; Consul allows at most %d", shorten(k), len(k), MaxMetaKeyLength)
	case strings.HasPrefix(k, ReservedMetaPrefix):
		return fmt.Sprintf("meta key %q starts with %q, which Consul reserves for itself", k, ReservedMetaPrefix)
	}
	return ""
}

func validMetaKeyChars(k string) bool {
	for i := 0; i < len(k); i++ {
		if c := k[i]; !isAlnum(c) && c != '_' && c != '-' {
			return false
		}
	}
	return k != ""
}

// tags checks a list of Consul tags: non-empty and without duplicates.
func (v *validator) tags(tags []string, p fpath) {
	first := make(map[string]int, len(tags))
	for i, tag := range tags {
		tp := p.index(i)
		if tag == "" {
			v.addf(tp, "must not be empty; want a tag such as v2")
			continue
		}
		if j, dup := first[tag]; dup {
			v.addf(tp, "duplicate tag %q, already at %s; list each tag once", tag, p.index(j))
			continue
		}
		first[tag] = i
	}
}

// durationRange reports a duration outside min..max.
func (v *validator) durationRange(p fpath, d, lo, hi Duration) {
	if d < lo || d > hi {
		v.addf(p, "%s is out of range; want %s to %s", durText(d), durText(lo), durText(hi))
	}
}

// durText writes d as a person would: "10m" rather than Go's "10m0s".
func durText(d Duration) string {
	s := d.String()
	if t, ok := strings.CutSuffix(s, "m0s"); ok {
		s = t + "m"
	}
	if t, ok := strings.CutSuffix(s, "h0m"); ok {
		s = t + "h"
	}
	return s
}

func (v *validator) register(c *Config, p fpath) {
	r := c.Register
	if r == nil {
		return
	}
	if c.Discovery.Consul == nil && !v.discoveryUnknown {
		v.addf(p, "register needs discovery.consul, the agent to register with; add discovery: {consul: {}} for the local agent")
	}

	np := p.field("name")
	switch {
	case r.Name == "":
		v.missing(np, "the service name to register, such as web")
	case !validServiceName(r.Name):
		v.addf(np, "invalid service name %q; want letters, digits, '.', '_' and '-', starting with a letter or digit", r.Name)
	case len(r.Name) > MaxRegisterNameLength:
		v.addf(np, "service name %q is %d characters long; want at most %d", shorten(r.Name), len(r.Name), MaxRegisterNameLength)
	}

	ap := p.field("address")
	if a := r.Address; validIP(a) {
		ip := netip.MustParseAddr(a)
		switch {
		case ip.Zone() != "":
			v.addf(ap, "invalid address %q; a zone (%%%s) means something only on this host, and other services need to reach the address", a, ip.Zone())
		case ip.IsUnspecified():
			v.addf(ap, "address %q cannot be reached by other services; want this instance's own IP address or host name", a)
		}
	}
	v.hostAddress(ap, r.Address, "the IP address or host name other services reach this instance at")
	v.port(p.field("port"), r.Port)

	idp := p.field("id")
	switch {
	case r.ID == "":
		// Without a name, address or port there is no default to
		// suggest, and those fields are reported already.
		if v.explicit(idp) || r.Name != "" && r.Address != "" && r.Port != 0 {
			v.addf(idp, `must not be empty; remove it to default to "name-address-port"`)
		}
	case v.defaulted(idp) != "":
		// Made from name, address and port, which are checked above.
	case strings.IndexFunc(r.ID, isSpaceOrControl) >= 0 || strings.Contains(r.ID, "/"):
		v.addf(idp, `invalid id %q; it must not contain spaces, control characters or "/" (it is part of Consul's API paths)`, r.ID)
	}

	if r.Weight < 1 || r.Weight > MaxRegisterWeight {
		v.addf(p.field("weight"), "%d is out of range; want 1 to %d", r.Weight, MaxRegisterWeight)
	}
	v.tags(r.Tags, p.field("tags"))
	v.meta(r.Meta, p.field("meta"))
	v.registerCheck(&r.Check, p.field("check"))

	if r.TTL < MinRegisterTTL {
		v.addf(p.field("ttl"), "must be at least %s, got %s", durText(MinRegisterTTL), durText(r.TTL))
	}
	if r.DeregisterCriticalAfter < MinDeregisterCriticalAfter {
		v.addf(p.field("deregister_critical_after"), "must be at least %s (Consul's minimum), got %s", durText(MinDeregisterCriticalAfter), durText(r.DeregisterCriticalAfter))
	}
}

// meta checks service meta against Consul's rules.
func (v *validator) meta(meta map[string]string, p fpath) {
	if len(meta) > MaxMetaPairs {
		v.addf(p, "has %d entries; Consul allows at most %d", len(meta), MaxMetaPairs)
	}
	for _, k := range slices.Sorted(maps.Keys(meta)) {
		kp := p.key(k)
		if msg := checkMetaKey(k); msg != "" {
			v.addf(kp, "%s", msg)
		}
		if n := len(meta[k]); n > MaxMetaValueLength {
			v.addf(kp, "the value is %d bytes long; Consul allows at most %d", n, MaxMetaValueLength)
		}
	}
}

func (v *validator) registerCheck(ck *RegisterCheck, p fpath) {
	pathp, urlp := p.field("path"), p.field("url")
	// The path matters only without url; a Go config that sets neither
	// has skipped SetDefaults.
	if ck.Path != "" || v.explicit(pathp) || ck.URL == "" && !v.explicit(urlp) {
		switch {
		case !strings.HasPrefix(ck.Path, "/"):
			v.addf(pathp, "%q must start with \"/\", such as %q", ck.Path, DefaultRegisterCheckPath)
		case strings.IndexFunc(ck.Path, isSpaceOrControl) >= 0:
			v.addf(pathp, "%q must not contain spaces or control characters; percent-encode them", ck.Path)
		}
	}
	if ck.URL != "" || v.explicit(urlp) {
		if msg := checkCheckURL(ck.URL); msg != "" {
			v.addf(urlp, "%s", msg)
		}
	}

	ip := p.field("interval")
	if ck.Interval < MinRegisterCheckInterval {
		v.addf(ip, "must be at least %s, got %s", durText(MinRegisterCheckInterval), durText(ck.Interval))
	}
	tp := p.field("timeout")
	switch {
	case ck.Timeout <= 0:
		v.addf(tp, "must be greater than 0, got %s; want a duration such as 2s", durText(ck.Timeout))
	case ck.Interval >= MinRegisterCheckInterval && ck.Timeout >= ck.Interval:
		v.addf(tp, "%s%s must be shorter than %s, which is %s%s, so that a probe ends before the next one starts",
			durText(ck.Timeout), v.defaulted(tp), ip, durText(ck.Interval), v.defaulted(ip))
	}
}

// checkCheckURL returns what is wrong with register.check.url, or "".
func checkCheckURL(s string) string {
	const want = "want an absolute http or https URL such as http://10.0.0.5:8080/healthz"
	if s == "" {
		return "must not be empty; remove it to probe address:port and path"
	}
	if strings.IndexFunc(s, isSpaceOrControl) >= 0 {
		return fmt.Sprintf("invalid URL %q: it contains spaces or control characters; %s", s, want)
	}
	u, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Sprintf("invalid URL %q: %v; %s", s, err, want)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Sprintf("invalid URL %q; %s", s, want)
	case u.Host == "" || u.Hostname() == "":
		return fmt.Sprintf("URL %q has no host; %s", s, want)
	case u.Port() != "" && !validPort(u.Port()):
		return fmt.Sprintf("invalid port %q in URL %q; want a number 1-65535", u.Port(), s)
	}
	return ""
}
