package policies

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/rs/cors"

	"github.com/meshgate/meshgate/config"
)

// corsDefaultHeaders are the CORS-safelisted request headers of the Fetch
// standard, the default of allowed_headers.
var corsDefaultHeaders = []string{"Accept", "Accept-Language", "Content-Language", "Content-Type"}

// corsOwnHeaders are the response headers the CORS step owns: when a
// policy has a cors step, an upstream's own values never reach the client,
// so that a permissive backend cannot widen the gateway's policy.
var corsOwnHeaders = [...]string{
	"Access-Control-Allow-Origin",
	"Access-Control-Allow-Credentials",
	"Access-Control-Expose-Headers",
	"Access-Control-Allow-Methods",
	"Access-Control-Allow-Headers",
	"Access-Control-Max-Age",
}

// corsStep compiles the cors step of a policy; nil when the policy has none.
//
// Preflight requests (OPTIONS with Origin and Access-Control-Request-Method)
// are answered at the gateway with 204 and never reach the upstream, nor
// the later steps (authn would refuse them: browsers send no credentials
// with a preflight). A preflight from an origin, or for a method or
// headers, the policy does not allow gets 204 without CORS headers, which
// browsers treat as a refusal (github.com/rs/cors's behaviour). Actual
// requests go on; the Access-Control-* headers and "Vary: Origin" are
// applied as the response head is written, replacing any the upstream
// sent.
func (c *compiler) corsStep(path, policy string, spec *CORS) middleware {
	if spec == nil || c.doc.Bad(path) {
		return nil
	}
	ok := true
	bad := func(p, format string, args ...any) {
		c.errorf(p, format, args...)
		ok = false
	}
	originsPath := config.Field(path, "allowed_origins")
	if len(spec.AllowedOrigins) == 0 {
		bad(originsPath, `required; want origins such as "https://shop.example.com", "https://*.example.com" or "*"`)
	}
	for i, o := range spec.AllowedOrigins {
		fp := config.Index(originsPath, i)
		if o == "*" {
			if spec.AllowCredentials {
				bad(fp, `"*" cannot be used with allow_credentials: true (browsers refuse it); list the origins`)
			}
			continue
		}
		if err := corsCheckOrigin(o); err != nil {
			bad(fp, "%v", err)
		}
	}
	if len(spec.AllowedMethods) == 0 {
		spec.AllowedMethods = []string{http.MethodGet, http.MethodPost, http.MethodHead}
	}
	for i, m := range spec.AllowedMethods {
		if !isToken(m) || strings.ToUpper(m) != m {
			bad(config.Index(config.Field(path, "allowed_methods"), i), "%q is not a method; want an upper-case HTTP method such as GET", m)
		}
	}
	if len(spec.AllowedHeaders) == 0 {
		spec.AllowedHeaders = append([]string(nil), corsDefaultHeaders...)
	}
	for i, h := range spec.AllowedHeaders {
		if h != "*" && !isToken(h) {
			bad(config.Index(config.Field(path, "allowed_headers"), i), `%q is not a header name; want a name such as X-Request-Id, or "*"`, h)
		}
	}
	for i, h := range spec.ExposedHeaders {
		if h != "*" && !isToken(h) {
			bad(config.Index(config.Field(path, "exposed_headers"), i), `%q is not a header name; want a name such as X-Request-Id, or "*"`, h)
		}
	}
	if spec.MaxAge < 0 {
		bad(config.Field(path, "max_age"), "%s is negative; want 0s or more", spec.MaxAge)
	}
	if !ok {
		return nil
	}
	// Access-Control-Max-Age is in whole seconds; a positive age below
	// one second is one second rather than none.
	secs := int((spec.MaxAge.D() + time.Second/2) / time.Second)
	if secs == 0 && spec.MaxAge > 0 {
		secs = 1
	}
	spec.MaxAge = config.Duration(time.Duration(secs) * time.Second)

	cp := &corsPolicy{
		policy: policy,
		c: cors.New(cors.Options{
			AllowedOrigins:   spec.AllowedOrigins,
			AllowedMethods:   spec.AllowedMethods,
			AllowedHeaders:   spec.AllowedHeaders,
			ExposedHeaders:   spec.ExposedHeaders,
			AllowCredentials: spec.AllowCredentials,
			MaxAge:           secs,
			// Preflights end at the gateway, allowed or not.
			OptionsPassthrough: false,
		}),
	}
	return func(next http.Handler) http.Handler {
		return &corsHandler{p: cp, next: next}
	}
}

// corsCheckOrigin checks an origin as allowed_origins accepts it:
// "scheme://host[:port]", or with "*" as the first label of the host.
func corsCheckOrigin(o string) error {
	const want = `want "scheme://host[:port]" such as "https://shop.example.com", with at most one "*" as the first label of the host ("https://*.example.com"), or "*"`
	scheme, rest, found := strings.Cut(o, "://")
	if !found || scheme == "" {
		return fmt.Errorf("%q is not an origin; %s", o, want)
	}
	if n := strings.Count(o, "*"); n > 0 {
		if n > 1 || !strings.HasPrefix(rest, "*.") || len(rest) < 3 {
			return fmt.Errorf("%q has a wildcard in the wrong place; %s", o, want)
		}
		rest = "x" + rest[1:]
	}
	u, err := url.Parse(scheme + "://" + rest)
	if err != nil || u.Host == "" || u.Hostname() == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return fmt.Errorf("%q is not an origin; %s", o, want)
	}
	if u.Path != "" {
		return fmt.Errorf("%q is not an origin: an origin has no path (not even a trailing /); %s", o, want)
	}
	if strings.ContainsAny(u.Hostname(), " *") || strings.ToLower(scheme) != scheme {
		return fmt.Errorf("%q is not an origin; %s", o, want)
	}
	return nil
}

// corsPolicy is a compiled cors step.
type corsPolicy struct {
	policy string
	c      *cors.Cors
}

// corsHandler is the cors step.
type corsHandler struct {
	p    *corsPolicy
	next http.Handler
}

func (h *corsHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	st := stateOf(r)
	hdr := w.Header()
	if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
		// rs/cors answers the preflight: headers, then 204.
		h.p.c.HandlerFunc(w, r)
		decision := "preflight"
		if len(hdr["Access-Control-Allow-Origin"]) == 0 {
			decision = "preflight_denied"
		}
		st.observe(r, h.p.policy, StepCORS, decision)
		return
	}
	h.p.c.HandlerFunc(w, r)
	cw := &corsWriter{
		origin:  hdr["Access-Control-Allow-Origin"],
		creds:   hdr["Access-Control-Allow-Credentials"],
		exposed: hdr["Access-Control-Expose-Headers"],
	}
	decision := "allow"
	if r.Header.Get("Origin") != "" && cw.origin == nil {
		// Forwarded all the same: the browser keeps the response from
		// the page, and same-origin-looking tools need no CORS.
		decision = "origin_not_allowed"
	}
	st.observe(r, h.p.policy, StepCORS, decision)
	cw.headWriter = headWriter{rw: w, hook: cw}
	h.next.ServeHTTP(&cw.headWriter, r)
}

// corsWriter puts the CORS headers of an actual request back on the
// response head: the gateway's forwarder copies the upstream's header
// fields over the ones already set, so those set before the upstream
// answered would be lost to an upstream that sends its own Vary or
// Access-Control-* fields.
type corsWriter struct {
	headWriter
	origin, creds, exposed []string
}

func (cw *corsWriter) beforeHead(h http.Header, _ int) {
	for _, k := range corsOwnHeaders {
		delete(h, k)
	}
	if cw.origin != nil {
		h["Access-Control-Allow-Origin"] = cw.origin
	}
	if cw.creds != nil {
		h["Access-Control-Allow-Credentials"] = cw.creds
	}
	if cw.exposed != nil {
		h["Access-Control-Expose-Headers"] = cw.exposed
	}
	corsEnsureVary(h, "Origin")
}

// corsEnsureVary adds name to Vary unless it is there already or Vary is
// "*".
func corsEnsureVary(h http.Header, name string) {
	vv := h["Vary"]
	for _, v := range vv {
		for f := range strings.SplitSeq(v, ",") {
			f = strings.TrimSpace(f)
			if f == "*" || strings.EqualFold(f, name) {
				return
			}
		}
	}
	// A fresh slice: vv may be shared with the upstream's response.
	out := make([]string, len(vv), len(vv)+1)
	copy(out, vv)
	h["Vary"] = append(out, name)
}
