package proxy

import (
	"context"
	"net/http"
	"net/netip"

	"github.com/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/policies"
)

// Where requests meet policies. The path of every request is normalised
// once, before routing (normalizePath), so that the router, authorization
// and rate limits all see the same path and the upstream receives it. A
// route that policies apply to gets a chain (policies.Set.Chain) that ends
// in routeEnd, which sends the request upstream as a route without
// policies would.

// SetPolicies puts a policy set in force: every route's chain is relinked
// in a new table. nil removes every policy.
func (g *Gateway) SetPolicies(set *policies.Set) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.applyWith(g.cfg, set)
}

// ReloadWithPolicies is Reload with the policy set compiled and checked
// for cfg: both go into force in one table, so that no request sees the
// new routes with the old policies or the other way round. On error
// neither changes.
func (g *Gateway) ReloadWithPolicies(cfg *config.Config, set *policies.Set) error {
	g.reloads.Add(1)
	g.mu.Lock()
	err := g.applyWith(cfg, set)
	g.mu.Unlock()
	if err != nil {
		g.reloadFailures.Add(1)
		msg := err.Error()
		g.lastReloadErr.Store(&msg)
		return err
	}
	g.lastReloadErr.Store(nil)
	return nil
}

// applyWith builds a table of cfg with set; on error the policies in force
// stay. Called with g.mu held.
func (g *Gateway) applyWith(cfg *config.Config, set *policies.Set) error {
	old := g.policies
	g.policies = set
	if err := g.apply(cfg, g.store.Load()); err != nil {
		g.policies = old
		return err
	}
	return nil
}

// linkPolicies gives each route of t the chain of the policies that apply
// to it. Called while a table is built.
func (g *Gateway) linkPolicies(t *table, routes []*Route) {
	if g.policies == nil {
		return
	}
	for _, rte := range routes {
		end := &routeEnd{g: g, t: t, rte: rte}
		h := g.policies.Chain(policies.RouteInfo{Name: rte.Name, Service: rte.upstream.name}, end)
		if h != http.Handler(end) {
			rte.chain = h
		}
	}
}

// normalizePath puts the request's path in normal form (see
// policies.NormalizePath) in place. Paths that are not absolute ("*" of
// OPTIONS *, CONNECT's authority) are left alone.
func (t *table) normalizePath(r *http.Request) error {
	ep := r.URL.EscapedPath()
	if ep == "" || ep[0] != '/' {
		return nil
	}
	n, err := policies.NormalizePath(ep, t.escapedSlashes, t.mergeSlashes)
	if err != nil {
		return err
	}
	if n != ep {
		policies.SetNormalizedPath(r.URL, n)
	}
	return nil
}

// callKey carries a request's chainCall through its policy chain.
type callKey struct{}

// chainCall is what ServeHTTP needs back from a request that went through
// a policy chain: whether it reached the upstream, and its status.
type chainCall struct {
	info    *requestInfo
	reached bool
	status  int
}

// serveChain runs the route's policy chain. *status is set when it
// returns, and also when the response is aborted (routeEnd panics with
// http.ErrAbortHandler, which unwinds through here).
func (g *Gateway) serveChain(ctx context.Context, w http.ResponseWriter, r *http.Request, t *table, rte *Route, info *requestInfo, status *int) {
	call := &chainCall{info: info}
	sw := &statusWriter{ResponseWriter: w}
	defer func() {
		// What the client got: a step may have answered (401, 429), or
		// replaced the upstream's answer (a response transform's 502);
		// nothing was written to a client that went away (499).
		switch {
		case call.reached && (sw.code == 0 || call.status == StatusClientClosedRequest):
			*status = call.status
		case sw.code != 0:
			*status = sw.code
		default:
			*status = http.StatusOK // net/http's implicit answer
		}
	}()
	rte.chain.ServeHTTP(sw, r.WithContext(context.WithValue(ctx, callKey{}, call)))
}

// routeEnd is the last handler of a route's chain: the upstream call.
type routeEnd struct {
	g   *Gateway
	t   *table
	rte *Route
}

func (e *routeEnd) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	call, _ := r.Context().Value(callKey{}).(*chainCall)
	if call == nil {
		call = &chainCall{}
	}
	var status int
	var abort bool
	if e.rte.agg != nil {
		status, abort = e.g.serveAggregate(r.Context(), w, r, e.t, e.rte)
	} else {
		status, abort = e.g.serveRoute(r.Context(), w, r, e.t, e.rte, call.info)
	}
	call.reached, call.status = true, status
	if abort {
		panic(http.ErrAbortHandler) // see ServeHTTP
	}
}

// statusWriter records the status a policy step answered with.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.code == 0 && code >= 200 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(p []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(p)
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// ClientIP returns the address of the client as meshgate trusts it: with
// server.trusted_hops = N, the Nth address from the right of
// X-Forwarded-For (the proxies in front appended the ones to its right);
// otherwise, or when the header has fewer entries, the connection's peer.
func (g *Gateway) ClientIP(r *http.Request) netip.Addr {
	peer := policies.RemoteIP(r)
	n := g.table.Load().trusted
	if n == 0 {
		return peer
	}
	// Walk the X-Forwarded-For entries from the right, across repeated
	// header lines, without splitting into a slice.
	lines := r.Header["X-Forwarded-For"]
	seen := 0
	for i := len(lines) - 1; i >= 0; i-- {
		line := lines[i]
		end := len(line)
		for end > 0 {
			start := end - 1
			for start >= 0 && line[start] != ',' {
				start--
			}
			entry := trimOWS(line[start+1 : end])
			end = start
			if entry == "" {
				continue
			}
			seen++
			if seen == n {
				a, err := netip.ParseAddr(entry)
				if err != nil {
					if ap, err2 := netip.ParseAddrPort(entry); err2 == nil {
						return ap.Addr().Unmap()
					}
					return peer
				}
				return a.Unmap()
			}
		}
	}
	return peer
}

// trimOWS trims the optional white space of an HTTP list element.
func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}
