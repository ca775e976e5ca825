package policies

import (
	"net"
	"net/http"
	"slices"
	"strings"
)

// selector is a compiled applies_to.
type selector struct {
	all      bool
	routes   []string
	services []string
	req      requestSelector
}

// appliesToRoute reports whether the policy may apply to requests of the
// route: its route-level fields match (the request-level ones are checked
// per request).
func (s *selector) appliesToRoute(rt RouteInfo) bool {
	if s.all {
		return true
	}
	if len(s.routes) > 0 && !slices.Contains(s.routes, rt.Name) {
		return false
	}
	if len(s.services) > 0 && !slices.Contains(s.services, rt.Service) {
		return false
	}
	return true
}

// requestSelector is the part of a selector checked per request: hosts,
// path prefixes and methods. Authz rules use the same matching.
type requestSelector struct {
	hosts    hostMatcher
	prefixes []string // whole-segment prefixes, without a trailing "/"
	paths    []string // exact paths
	methods  []string
}

func (s *requestSelector) empty() bool {
	return len(s.hosts.exact) == 0 && len(s.hosts.suffixes) == 0 && len(s.prefixes) == 0 && len(s.paths) == 0 && len(s.methods) == 0
}

// match reports whether the request matches every field given.
func (s *requestSelector) match(r *http.Request) bool {
	if len(s.methods) > 0 && !slices.Contains(s.methods, r.Method) {
		return false
	}
	if !s.hosts.empty() && !s.hosts.match(r.Host) {
		return false
	}
	if len(s.prefixes) > 0 || len(s.paths) > 0 {
		p := r.URL.Path
		if !slices.Contains(s.paths, p) && !slices.ContainsFunc(s.prefixes, func(pre string) bool { return HasPathPrefix(p, pre) }) {
			return false
		}
	}
	return true
}

// HasPathPrefix reports whether path starts with the whole segments of
// prefix: "/admin" matches "/admin" and "/admin/x" but not
// "/administrator"; a prefix ending in "/" (and so "/") matches every path
// below it. Routes (proxy/router.go) and policies match prefixes with it,
// so that a route and a rule on the same prefix take the same requests.
func HasPathPrefix(path, prefix string) bool {
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	return len(path) == len(prefix) || prefix[len(prefix)-1] == '/' || path[len(prefix)] == '/'
}

// hostMatcher matches a request's host, without its port and case-
// insensitively, against exact names and "*.suffix" wildcards.
type hostMatcher struct {
	exact    []string // lower case
	suffixes []string // ".example.com", lower case
}

func (h *hostMatcher) empty() bool { return len(h.exact) == 0 && len(h.suffixes) == 0 }

func (h *hostMatcher) add(pattern string) {
	pattern = strings.ToLower(pattern)
	if rest, ok := strings.CutPrefix(pattern, "*"); ok {
		h.suffixes = append(h.suffixes, rest)
		return
	}
	h.exact = append(h.exact, pattern)
}

func (h *hostMatcher) match(host string) bool {
	host = hostWithoutPort(host)
	host = strings.TrimSuffix(host, ".")
	for _, e := range h.exact {
		if strings.EqualFold(host, e) {
			return true
		}
	}
	for _, s := range h.suffixes {
		if len(host) > len(s) && strings.EqualFold(host[len(host)-len(s):], s) {
			return true
		}
	}
	return false
}

// hostWithoutPort returns the host of a Host header without its port and
// without the brackets of an IPv6 literal, without allocating.
func hostWithoutPort(host string) string {
	if i := strings.LastIndexByte(host, ':'); i > strings.LastIndexByte(host, ']') {
		if h, _, err := net.SplitHostPort(host); err == nil {
			return h // strips brackets too
		}
		return host
	}
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		return host[1 : len(host)-1]
	}
	return host
}
