package policies

import (
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/meshgate/meshgate/config"
)

// authnRealm is the realm of meshgate's challenges (RFC 9110 §11.5).
const authnRealm = "meshgate"

// Decisions of the authn step, as observed and put on spans.
const (
	authnAllow         = "allow"
	authnAnonymous     = "anonymous"
	authnMissing       = "unauthenticated"
	authnInvalidToken  = "invalid_token"
	authnInvalidAPIKey = "invalid_api_key"
)

// credPlace is where a request carried a credential.
type credPlace uint8

const (
	nowhere credPlace = iota
	inHeader
	inQuery
)

// authn is a compiled authn step.
type authn struct {
	policy   string
	jwt      *jwtVerifier
	keys     *apiKeyVerifier
	optional bool
	forward  bool // forward_credentials
	logger   *slog.Logger

	// clean are the headers meshgate sets upstream from the identity
	// (forward_claims, forward_name_header): a client's own are removed
	// from every request that passes, authenticated or not.
	clean []string

	// WWW-Authenticate values, built at load.
	missing    []string
	badToken   [numTokenErrors][]string
	badKey     []string
	multiToken []string
}

// authnStep compiles the authn step of a policy; nil when the policy has none.
func (c *compiler) authnStep(path, policy string, spec *Authn) middleware {
	if spec == nil || c.doc.Bad(path) {
		return nil
	}
	if spec.JWT == nil && spec.APIKeys == nil {
		c.errorf(path, "want jwt, api_keys or both")
		return nil
	}
	a := &authn{policy: policy, optional: spec.Optional, forward: spec.ForwardCredentials, logger: c.env.Logger}
	ok := true
	if spec.JWT != nil && !c.doc.Bad(config.Field(path, "jwt")) {
		a.jwt = c.compileJWT(config.Field(path, "jwt"), spec.JWT)
		ok = a.jwt != nil
	}
	if spec.APIKeys != nil && !c.doc.Bad(config.Field(path, "api_keys")) {
		a.keys = c.compileAPIKeys(config.Field(path, "api_keys"), spec.APIKeys)
		ok = ok && a.keys != nil
	}
	if !ok || a.jwt == nil && a.keys == nil {
		return nil
	}
	if a.jwt != nil && a.keys != nil {
		// One header or parameter cannot carry both kinds.
		if a.jwt.header == a.keys.header {
			c.errorf(config.Field(path, "jwt.header"), "%q is also api_keys.header; give each kind of credential its own header", spec.JWT.Header)
			return nil
		}
		if a.jwt.query != "" && a.jwt.query == a.keys.query {
			c.errorf(config.Field(path, "jwt.query"), "%q is also api_keys.query; give each kind of credential its own parameter", spec.JWT.Query)
			return nil
		}
		if a.keys.forwardName != "" && (a.keys.forwardName == a.jwt.header || hasClaimHeader(a.jwt.claims, a.keys.forwardName)) {
			c.errorf(config.Field(path, "api_keys.forward_name_header"), "%q is also used by jwt", spec.APIKeys.ForwardNameHeader)
			return nil
		}
		if hasClaimHeader(a.jwt.claims, a.keys.header) {
			c.errorf(config.Field(path, "jwt.forward_claims"), "sets %q, the header API keys come in", spec.APIKeys.Header)
			return nil
		}
	}
	a.challenges()
	// The chain's entry clears these on every request of the route, also
	// those this policy's selector lets past the step: a header the
	// upstream trusts as meshgate's must never come from the client.
	c.ownHeaders(a.clean...)
	return func(next http.Handler) http.Handler {
		return &authnHandler{a: a, next: next}
	}
}

func hasClaimHeader(claims []forwardClaim, h string) bool {
	for _, fc := range claims {
		if fc.header == h {
			return true
		}
	}
	return false
}

// challenges builds the WWW-Authenticate values: RFC 6750 §3 for bearer
// tokens, and an APIKey challenge naming where the key goes. With both
// kinds configured both are sent.
func (a *authn) challenges() {
	bearer := `Bearer realm="` + authnRealm + `"`
	var apiKey string
	if a.keys != nil {
		apiKey = `APIKey realm="` + authnRealm + `", header="` + a.keys.headerName + `"`
		if a.keys.query != "" {
			apiKey += `, query="` + a.keys.query + `"`
		}
	}
	with := func(jwtValue string) []string {
		var out []string
		if a.jwt != nil {
			out = append(out, jwtValue)
		}
		if a.keys != nil {
			out = append(out, apiKey)
		}
		return out
	}
	a.clean = append(a.clean, a.jwt.cleanHeaders()...)
	if a.keys != nil && a.keys.forwardName != "" {
		a.clean = append(a.clean, a.keys.forwardName)
	}
	a.missing = with(bearer)
	a.badKey = with(bearer)
	for e := tokMalformed; e < numTokenErrors; e++ {
		a.badToken[e] = with(bearer + `, error="invalid_token", error_description="` + e.Error() + `"`)
	}
	a.multiToken = with(bearer + `, error="invalid_request", error_description="more than one token"`)
}

// cleanHeaders are the headers a verifier sets from claims.
func (v *jwtVerifier) cleanHeaders() []string {
	if v == nil {
		return nil
	}
	out := make([]string, len(v.claims))
	for i, fc := range v.claims {
		out[i] = fc.header
	}
	return out
}

// authnHandler runs an authn step.
type authnHandler struct {
	a    *authn
	next http.Handler
}

func (h *authnHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a := h.a
	st := stateOf(r)
	var id Identity
	var keyWhere, tokWhere credPlace

	// The API key first: one hash, no parsing.
	if a.keys != nil {
		key, where, multiple := a.keys.credential(r)
		keyWhere = where
		if where != nowhere {
			if multiple {
				a.fail(w, r, st, authnInvalidAPIKey, "more than one API key", a.badKey)
				return
			}
			name, ok := a.keys.match(key)
			if !ok {
				a.fail(w, r, st, authnInvalidAPIKey, "invalid API key", a.badKey)
				return
			}
			id = Identity{Method: "api_key", Principal: name}
		}
	}
	if a.jwt != nil {
		tok, where, multiple := a.jwt.credential(r)
		tokWhere = where
		if where != nowhere {
			if multiple {
				a.fail(w, r, st, authnInvalidToken, "more than one token", a.multiToken)
				return
			}
			ident, terr := a.jwt.verify(r.Context(), tok)
			if terr != tokOK {
				a.fail(w, r, st, authnInvalidToken, terr.Error(), a.badToken[terr])
				return
			}
			// With both kinds valid, the token's identity is the richer.
			id = ident
		}
	}
	decision := authnAllow
	if keyWhere == nowhere && tokWhere == nowhere {
		if !a.optional {
			a.fail(w, r, st, authnMissing, "missing credentials", a.missing)
			return
		}
		decision = authnAnonymous
	}

	a.rewrite(r, &id, keyWhere, tokWhere)
	st.identity = id
	if span := trace.SpanFromContext(r.Context()); span.IsRecording() {
		span.SetAttributes(
			attribute.String("meshgate.authn.method", id.Method),
			attribute.String("meshgate.authn.principal", id.Principal),
		)
	}
	st.observe(r, a.policy, StepAuthn, decision)
	h.next.ServeHTTP(w, r)
}

// rewrite prepares the request for upstream: the headers set from the
// identity replace any the client sent, and the credentials are removed
// unless forward_credentials.
func (a *authn) rewrite(r *http.Request, id *Identity, keyWhere, tokWhere credPlace) {
	for _, name := range a.clean {
		delete(r.Header, name)
	}
	if !a.forward {
		if a.keys != nil {
			if keyWhere == inHeader {
				delete(r.Header, a.keys.header)
			}
			if a.keys.query != "" {
				r.URL.RawQuery = removeQueryParam(r.URL.RawQuery, a.keys.query)
			}
		}
		if a.jwt != nil {
			if tokWhere == inHeader {
				delete(r.Header, a.jwt.header)
			}
			if a.jwt.query != "" {
				r.URL.RawQuery = removeQueryParam(r.URL.RawQuery, a.jwt.query)
			}
		}
	}
	switch id.Method {
	case "jwt":
		a.jwt.forwardClaims(r.Header, id.Claims)
	case "api_key":
		if a.keys.forwardName != "" {
			r.Header[a.keys.forwardName] = []string{id.Principal}
		}
	}
}

// fail answers 401 with the challenges.
func (a *authn) fail(w http.ResponseWriter, r *http.Request, st *requestState, decision, msg string, challenges []string) {
	h := w.Header()
	for _, c := range challenges {
		h.Add("WWW-Authenticate", c)
	}
	if span := trace.SpanFromContext(r.Context()); span.IsRecording() {
		span.SetAttributes(
			attribute.String("meshgate.authn.error", msg),
		)
	}
	st.observe(r, a.policy, StepAuthn, decision)
	if a.logger != nil && a.logger.Enabled(r.Context(), slog.LevelDebug) {
		a.logger.DebugContext(r.Context(), "authentication failed", "policy", a.policy, "decision", decision, "reason", msg)
	}
	reject(w, r, http.StatusUnauthorized, msg)
}

// queryParam returns the first value of the parameter name in a raw
// query, unescaped, without parsing the whole query.
func queryParam(raw, name string) (string, bool) {
	for raw != "" {
		var kv string
		kv, raw, _ = strings.Cut(raw, "&")
		k, v, _ := strings.Cut(kv, "=")
		if !queryKeyIs(k, name) {
			continue
		}
		if u, err := url.QueryUnescape(v); err == nil {
			return u, true
		}
		return v, true
	}
	return "", false
}

// removeQueryParam removes every occurrence of the parameter name from a
// raw query, leaving the others as they were written.
func removeQueryParam(raw, name string) string {
	if raw == "" || !strings.Contains(raw, name) && !strings.Contains(raw, "%") {
		return raw
	}
	var b strings.Builder
	rest := raw
	removed := false
	for rest != "" {
		var kv string
		kv, rest, _ = strings.Cut(rest, "&")
		k, _, _ := strings.Cut(kv, "=")
		if queryKeyIs(k, name) {
			removed = true
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(kv)
	}
	if !removed {
		return raw
	}
	return b.String()
}

// queryKeyIs reports whether a raw query key is name once unescaped.
func queryKeyIs(k, name string) bool {
	if k == name {
		return true
	}
	if !strings.ContainsAny(k, "%+") {
		return false
	}
	u, err := url.QueryUnescape(k)
	return err == nil && u == name
}
