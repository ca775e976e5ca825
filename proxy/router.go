package proxy

import (
	"net/http"
	"net/url"
	"sort"
	"strings"

	"github.com/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/policies"
)

// Route is a compiled route: its predicate and where matching requests go.
// Routes are immutable and shared by every request of one table.
type Route struct {
	// Name is the route's configured name.
	Name string
	// Config is the route as configured.
	Config config.Route

	host       string // lower case; "" matches any host
	hostSuffix string // for "*.example.com": ".example.com"
	exact      string
	prefix     string
	methods    []string
	headers    [][2]string // canonical name, value
	rewrite    bool        // strip or rewrite the prefix
	newPrefix  string      // replacement for the prefix when rewriting
	rawPrefix  string      // prefix and newPrefix as a URL path escapes them
	rawNew     string
	upstream   *upstream
	order      int
	// chain runs the policies that apply to the route, ending in the
	// upstream call; nil when none does.
	chain http.Handler
	// agg is the route's aggregate, nil for a route to a service. An
	// aggregate route's upstream is empty (no name, no instances) and
	// nothing sends to it; it keeps the logs and metrics that name a
	// route's service free of a special case.
	agg *aggregate
}

// router finds the route of a request. Exact paths are looked up in a map;
// prefixes are scanned longest first. Matching allocates nothing.
type router struct {
	exact    map[string][]*Route
	prefixes []*Route // sorted by precedence
	all      []*Route // in declaration order, for admin views
}

func newRouter(routes []*Route) *router {
	rt := &router{exact: make(map[string][]*Route), all: routes}
	for _, r := range routes {
		if r.exact != "" {
			rt.exact[r.exact] = append(rt.exact[r.exact], r)
		} else {
			rt.prefixes = append(rt.prefixes, r)
		}
	}
	byHost := func(rs []*Route) {
		sort.SliceStable(rs, func(i, j int) bool {
			hi, hj := rs[i].host != "" || rs[i].hostSuffix != "", rs[j].host != "" || rs[j].hostSuffix != ""
			if hi != hj {
				return hi
			}
			return rs[i].order < rs[j].order
		})
	}
	for _, rs := range rt.exact {
		byHost(rs)
	}
	sort.SliceStable(rt.prefixes, func(i, j int) bool {
		a, b := rt.prefixes[i], rt.prefixes[j]
		if len(a.prefix) != len(b.prefix) {
			return len(a.prefix) > len(b.prefix)
		}
		ha, hb := a.host != "" || a.hostSuffix != "", b.host != "" || b.hostSuffix != ""
		if ha != hb {
			return ha
		}
		return a.order < b.order
	})
	return rt
}

// match returns the route for r, or nil. Precedence: exact path, then the
// longest prefix; at equal paths a route with a host wins; then the first
// declared.
func (rt *router) match(r *http.Request) *Route {
	path := r.URL.Path
	if path == "" {
		path = "/"
	}
	host := stripPort(r.Host)
	for _, rte := range rt.exact[path] {
		if rte.matchRest(r, host) {
			return rte
		}
	}
	for _, rte := range rt.prefixes {
		if policies.HasPathPrefix(path, rte.prefix) && rte.matchRest(r, host) {
			return rte
		}
	}
	return nil
}

func (rte *Route) matchRest(r *http.Request, host string) bool {
	if rte.host != "" && !strings.EqualFold(host, rte.host) {
		return false
	}
	if rte.hostSuffix != "" && !hasSuffixFold(host, rte.hostSuffix) {
		return false
	}
	if len(rte.methods) > 0 {
		ok := false
		for _, m := range rte.methods {
			if m == r.Method {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	for _, kv := range rte.headers {
		vs := r.Header[kv[0]]
		ok := false
		for _, v := range vs {
			if v == kv[1] {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// rewriteURL applies the route's prefix strip or rewrite to u, which is a
// copy of the request's URL: both paths to the upstream use it.
//
// The route matched the decoded path, so that is what is rewritten. The
// escaped form the client sent (RawPath, e.g. "/api/a%2Fb") is kept only
// when it still starts with the prefix as a URL escapes it; otherwise
// ("/%61pi/x" matched "/api") it is dropped and the path escaped afresh.
// u.EscapedPath() is what goes on the wire; it also drops a RawPath that
// is no encoding of Path.
func (rte *Route) rewriteURL(u *url.URL) {
	if !rte.rewrite {
		return
	}
	raw := u.RawPath
	u.Path = replacePrefix(u.Path, rte.prefix, rte.newPrefix)
	u.RawPath = ""
	if raw != "" && strings.HasPrefix(raw, rte.rawPrefix) {
		u.RawPath = replacePrefix(raw, rte.rawPrefix, rte.rawNew)
	}
}

// upstreamPath returns the escaped path to send upstream for a request to
// in, rewritten by the route.
func (rte *Route) upstreamPath(in *url.URL) string {
	var p string
	if rte.rewrite {
		u := *in
		rte.rewriteURL(&u)
		p = u.EscapedPath()
	} else {
		p = in.EscapedPath()
	}
	if p == "" {
		return "/"
	}
	return p
}

// replacePrefix replaces prefix at the start of path with np, keeping one
// "/" between np and the rest; a path without the prefix is returned as
// it is.
func replacePrefix(path, prefix, np string) string {
	if !strings.HasPrefix(path, prefix) {
		return path
	}
	rest := path[len(prefix):]
	switch {
	case np == "" || np == "/":
		if rest == "" || rest[0] != '/' {
			return "/" + rest
		}
		return rest
	case rest == "":
		return np
	case np[len(np)-1] == '/' && rest[0] == '/':
		return np + rest[1:]
	case np[len(np)-1] != '/' && rest[0] != '/':
		return np + "/" + rest
	default:
		return np + rest
	}
}

func stripPort(host string) string {
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.HasSuffix(host, "]") {
		host = host[:i]
	}
	if len(host) > 1 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1]
	}
	return host
}

func hasSuffixFold(s, suffix string) bool {
	return len(s) > len(suffix) && strings.EqualFold(s[len(s)-len(suffix):], suffix)
}

// compileRoute turns a configured route into a Route bound to up.
func compileRoute(i int, rc config.Route, up *upstream) *Route {
	rte := &Route{
		Name:     rc.Name,
		Config:   rc,
		exact:    rc.Match.Path,
		prefix:   rc.Match.PathPrefix,
		methods:  rc.Match.Methods,
		upstream: up,
		order:    i,
	}
	if rte.exact == "" && rte.prefix == "" {
		rte.prefix = "/"
	}
	if h := strings.ToLower(rc.Match.Host); strings.HasPrefix(h, "*.") {
		rte.hostSuffix = h[1:]
	} else {
		rte.host = h
	}
	names := make([]string, 0, len(rc.Match.Headers))
	for k := range rc.Match.Headers {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		rte.headers = append(rte.headers, [2]string{http.CanonicalHeaderKey(k), rc.Match.Headers[k]})
	}
	if rc.RewritePrefix != "" {
		rte.rewrite, rte.newPrefix = true, rc.RewritePrefix
	} else if rc.StripPrefix {
		rte.rewrite = true
	}
	rte.rawPrefix = (&url.URL{Path: rte.prefix}).EscapedPath()
	rte.rawNew = (&url.URL{Path: rte.newPrefix}).EscapedPath()
	return rte
}
