package policies

import (
	"context"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/meshgate/meshgate/internal/httperr"
)

// Env is what the policy steps need from the gateway. It is fixed for the
// life of a [Manager].
type Env struct {
	// Logger receives denials (with the policy and rule) and reload
	// results. Default: slog.Default().
	Logger *slog.Logger
	// ClientIP returns the client address meshgate trusts (after
	// server.trusted_hops). Default: the connection's remote address.
	ClientIP func(*http.Request) netip.Addr
	// Redis is the store of global rate limits; nil when the config has
	// no policies.redis (policies with global limits are then invalid).
	Redis redis.UniversalClient
	// HTTPClient fetches JWKS URLs. Default: a client with a 10s timeout.
	HTTPClient *http.Client
	// Observer counts decisions. Default: none.
	Observer Observer
	// Now is the clock of token expiry and rate limits. Default time.Now.
	Now func() time.Time
}

// Observer is told of every decision a policy step makes, for metrics.
// step is one of the Step* names; decision is "allow", "deny" or a more
// precise word ("unauthenticated", "limited", "store_error_open", ...).
type Observer interface {
	Decision(ctx context.Context, policy, step, decision string)
}

// Step names, as in metrics, logs and /admin/policies.
const (
	StepIP        = "ip"
	StepCORS      = "cors"
	StepBodyLimit = "max_body_size"
	StepAuthn     = "authn"
	StepAuthz     = "authz"
	StepRateLimit = "rate_limit"
	StepTransform = "transform"
)

// stepOrder is the fixed order of the chain: cheap guards first, then
// DESIGN.md's authn → authz → rate limit → transforms.
var stepOrder = [...]string{StepIP, StepCORS, StepBodyLimit, StepAuthn, StepAuthz, StepRateLimit, StepTransform}

const numSteps = len(stepOrder)

// middleware wraps the rest of the chain.
type middleware func(next http.Handler) http.Handler

// RouteInfo names the route a chain is built for.
type RouteInfo struct {
	// Name of the route (routes[].name, or the name given to a route
	// found in the Consul catalog).
	Name string
	// Service the route sends requests to.
	Service string
}

// Identity is who authentication found, for authz rules, rate-limit keys
// and forwarded headers.
type Identity struct {
	// Method is "jwt", "api_key", or "" for an anonymous request.
	Method string
	// Principal is the JWT's "sub" or the API key's name.
	Principal string
	// Claims of the JWT (nil otherwise), as decoded from JSON.
	Claims map[string]any
}

// requestState is what the steps of one request share: built by the
// chain's entry, reached through the request's context.
type requestState struct {
	route    RouteInfo
	identity Identity
	clientIP netip.Addr
	env      *Env
}

type stateKey struct{}

// stateOf returns the request's policy state. Every step runs inside a
// chain, whose entry sets it; a step used alone (in a test) gets a fresh
// one.
func stateOf(r *http.Request) *requestState {
	if st, ok := r.Context().Value(stateKey{}).(*requestState); ok {
		return st
	}
	return &requestState{}
}

// ClientIP returns the client address of a request inside a chain.
func (st *requestState) ClientIP() netip.Addr { return st.clientIP }

// reject answers a request a step refuses, with the JSON error body of
// the contract. Headers the step set on w (WWW-Authenticate, Retry-After,
// RateLimit) go out with it.
func reject(w http.ResponseWriter, r *http.Request, status int, msg string) {
	httperr.Write(w, r.Context(), status, msg)
}

// entry is the first handler of a chain: it clears the headers the
// route's policies set upstream and creates the request state.
type entry struct {
	route RouteInfo
	env   *Env
	owned []string
	next  http.Handler
}

func (e *entry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	for _, h := range e.owned {
		delete(r.Header, h)
	}
	st := &requestState{route: e.route, env: e.env, clientIP: e.env.ClientIP(r)}
	e.next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), stateKey{}, st)))
}

// guarded runs a policy's step only for the requests its selector
// matches; the others go straight on.
type guarded struct {
	sel  *requestSelector
	step http.Handler
	next http.Handler
}

func (g *guarded) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if g.sel.match(r) {
		g.step.ServeHTTP(w, r)
		return
	}
	g.next.ServeHTTP(w, r)
}

// Chain returns the handler that runs the steps of every policy that
// applies to the route, then next; next itself when none does. It is
// called for each route whenever the gateway builds its routing table; the
// steps were compiled when the set was loaded, so this only links them.
func (s *Set) Chain(route RouteInfo, next http.Handler) http.Handler {
	if s == nil {
		return next
	}
	var applicable []*compiledPolicy
	for _, p := range s.policies {
		if p.sel.appliesToRoute(route) {
			applicable = append(applicable, p)
		}
	}
	if len(applicable) == 0 {
		return next
	}
	h := next
	for k := numSteps - 1; k >= 0; k-- {
		for i := len(applicable) - 1; i >= 0; i-- {
			p := applicable[i]
			mw := p.steps[k]
			if mw == nil {
				continue
			}
			step := mw(h)
			if p.sel.req.empty() {
				h = step
			} else {
				h = &guarded{sel: &p.sel.req, step: step, next: h}
			}
		}
	}
	var owned []string
	for _, p := range applicable {
		for _, o := range p.owned {
			if !slices.Contains(owned, o) {
				owned = append(owned, o)
			}
		}
	}
	return &entry{route: route, env: s.env, owned: owned, next: h}
}
