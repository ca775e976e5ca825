package policies

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/time/rate"

	"github.com/meshgate/meshgate/config"
)

// Rate-limit defaults and choices.
const (
	defaultRatePer     = config.Duration(time.Second)
	defaultRateMaxKeys = 100000
	scopeLocal         = "local"
	scopeGlobal        = "global"
	failOpen           = "open"
	failClosed         = "closed"
	// maxKeyLen bounds the key values buckets are stored under: a longer
	// header or claim value is replaced by its SHA-256, so that clients
	// cannot make meshgate (or Redis) hold large keys.
	maxKeyLen = 64
)

// Rate-limit decisions, as observed and set on spans.
const (
	rlAllow            = "allow"
	rlLimited          = "limited"
	rlStoreErrorOpen   = "store_error_open"
	rlStoreErrorClosed = "store_error_closed"
)

// rlKeyKind is what partitions a limit's buckets.
type rlKeyKind uint8

const (
	rlKeyClientIP rlKeyKind = iota
	rlKeyRoute
	rlKeyPrincipal
	rlKeyHeader
	rlKeyClaim
)

// rlKey names one bucket of a limit: the client address for
// client_ip keys (kept as an address so that the hot path does not format
// it), the key's string value otherwise.
type rlKey struct {
	addr netip.Addr
	s    string
}

// String returns the key as text, for Redis.
func (k rlKey) String() string {
	if k.addr.IsValid() {
		return k.addr.String()
	}
	return k.s
}

// rlLimit is one compiled rate limit.
type rlLimit struct {
	name     string
	kind     rlKeyKind
	param    string // canonical header name or claim name
	requests int
	burst    int
	per      time.Duration
	rate     rlRate
	// policyItem is the limit's RateLimit-Policy item.
	policyItem string
	local      *localBuckets // scope local
	global     *globalLimit  // scope global
}

// keyOf extracts the request's bucket key.
func (l *rlLimit) keyOf(r *http.Request, st *requestState) rlKey {
	var s string
	switch l.kind {
	case rlKeyClientIP:
		return rlKey{addr: st.clientIP}
	case rlKeyRoute:
		s = st.route.Name
	case rlKeyPrincipal:
		s = st.identity.Principal
	case rlKeyHeader:
		if v := r.Header[l.param]; len(v) > 0 {
			s = v[0]
		}
	case rlKeyClaim:
		switch v := st.identity.Claims[l.param].(type) {
		case nil:
		case string:
			s = v
		default:
			b, err := json.Marshal(v)
			if err == nil {
				s = string(b)
			}
		}
	}
	if len(s) > maxKeyLen {
		sum := sha256.Sum256([]byte(s))
		s = "sha256:" + hex.EncodeToString(sum[:])
	}
	return rlKey{s: s}
}

// rateLimitStep compiles the rate limits of a policy; nil when it has none.
func (c *compiler) rateLimitStep(path, policy string, spec []RateLimit) middleware {
	if len(spec) == 0 || c.doc.Bad(path) {
		return nil
	}
	st := &rateLimiter{policy: policy, env: c.env, logger: c.rlLogger()}
	seen := make(map[string]int, len(spec))
	ok := true
	items := make([]string, 0, len(spec))
	for i := range spec {
		lp := config.Index(path, i)
		if c.doc.Bad(lp) {
			ok = false
			continue
		}
		l := c.compileRateLimit(lp, policy, &spec[i], seen)
		if l == nil {
			ok = false
			continue
		}
		items = append(items, l.policyItem)
		if l.global != nil {
			st.globals = append(st.globals, l)
		} else {
			st.locals = append(st.locals, l)
		}
		st.all = append(st.all, l)
	}
	if !ok {
		return nil
	}
	st.policyHeader = strings.Join(items, ", ")
	return func(next http.Handler) http.Handler {
		return &rateLimitHandler{rl: st, next: next}
	}
}

// compileRateLimit checks one limit, writes its defaults into it and builds
// it; nil when it has problems (reported).
func (c *compiler) compileRateLimit(path, policy string, rl *RateLimit, seen map[string]int) *rlLimit {
	bad := false
	fail := func(field, format string, args ...any) {
		c.errorf(config.Field(path, field), format, args...)
		bad = true
	}
	isSet := func(field string) bool { return c.doc.IsSet(config.Field(path, field)) }

	switch {
	case rl.Name == "":
		fail("name", "required")
	case !namePattern.MatchString(rl.Name):
		fail("name", "%q is not a valid name; want letters, digits, '.', '_' and '-', starting with a letter or digit", rl.Name)
	default:
		if line, dup := seen[rl.Name]; dup {
			fail("name", "duplicate rate limit name %q in policy %q; first defined on line %d", rl.Name, policy, line)
		} else {
			seen[rl.Name] = c.line(config.Field(path, "name"))
		}
	}

	l := &rlLimit{name: rl.Name}
	if rl.Key == "" {
		rl.Key = "client_ip"
	}
	switch k := rl.Key; {
	case k == "client_ip":
		l.kind = rlKeyClientIP
	case k == "route":
		l.kind = rlKeyRoute
	case k == "principal":
		l.kind = rlKeyPrincipal
	case strings.HasPrefix(k, "header:"):
		name := strings.TrimPrefix(k, "header:")
		if !isToken(name) {
			fail("key", "%q: %q is not a header name; want header:NAME with NAME an HTTP field name such as X-Tenant", k, name)
		}
		l.kind, l.param = rlKeyHeader, http.CanonicalHeaderKey(name)
	case strings.HasPrefix(k, "claim:"):
		name := strings.TrimPrefix(k, "claim:")
		if name == "" {
			fail("key", "%q has no claim name; want claim:NAME such as claim:tenant", k)
		}
		l.kind, l.param = rlKeyClaim, name
	default:
		fail("key", "%q is not a rate-limit key; want client_ip, route, principal, header:NAME or claim:NAME", k)
	}

	if rl.Requests < 1 {
		if isSet("requests") {
			fail("requests", "must be at least 1, got %d", rl.Requests)
		} else {
			fail("requests", "required; want the number of requests allowed per per, at least 1")
		}
	}
	if !isSet("per") {
		rl.Per = defaultRatePer
	} else if rl.Per <= 0 {
		fail("per", "must be greater than 0, such as 1s or 1m")
	}
	if !isSet("burst") {
		rl.Burst = rl.Requests
	} else if rl.Burst < 1 {
		fail("burst", "must be at least 1, got %d", rl.Burst)
	}

	switch rl.Scope {
	case "":
		rl.Scope = scopeLocal
	case scopeLocal, scopeGlobal:
	default:
		fail("scope", "%q is not a scope; want local or global", rl.Scope)
	}
	switch rl.FailureMode {
	case "", failOpen, failClosed:
	default:
		fail("failure_mode", "%q is not a failure mode; want open or closed", rl.FailureMode)
	}
	if isSet("max_keys") && rl.MaxKeys < 1 {
		fail("max_keys", "must be at least 1, got %d", rl.MaxKeys)
	}
	switch rl.Scope {
	case scopeLocal:
		if rl.FailureMode != "" {
			fail("failure_mode", "applies to global limits only (a local limit has no store to fail); remove it or set scope: global")
		}
		if !isSet("max_keys") {
			rl.MaxKeys = defaultRateMaxKeys
		}
	case scopeGlobal:
		if !c.haveRedis {
			fail("scope", "global limits need policies.redis in the config")
		}
		if isSet("max_keys") {
			fail("max_keys", "applies to local limits only (Redis keeps the buckets of global limits); remove it or set scope: local")
		}
		if rl.FailureMode == "" {
			rl.FailureMode = failOpen
		}
		if rl.Requests >= 1 && rl.Per > 0 && rl.Per.D()/time.Duration(rl.Requests) < time.Microsecond {
			fail("requests", "%d per %s is more than one request per microsecond, finer than global limits count; use a longer per", rl.Requests, rl.Per)
		}
	}
	if bad {
		return nil
	}

	l.requests, l.burst, l.per = rl.Requests, rl.Burst, rl.Per.D()
	l.rate = rlRate(float64(rl.Requests) / l.per.Seconds())
	l.policyItem = rlPolicyItem(l)
	if rl.Scope == scopeGlobal {
		l.global = newGlobalLimit(c.env.Redis, c.rlLogger(), policy, l, rl.FailureMode == failClosed)
		return l
	}
	settings := fmt.Sprintf("key=%s,requests=%d,per=%s,burst=%d,max_keys=%d", rl.Key, rl.Requests, l.per, rl.Burst, rl.MaxKeys)
	res, err := c.acquire("ratelimit:"+policy+"/"+rl.Name+":"+settings, func() (io.Closer, error) {
		return newLocalBuckets(l.rate, l.burst, rl.MaxKeys), nil
	})
	if err != nil {
		c.errorf(path, "creating the buckets of rate limit %q: %v", rl.Name, err)
		return nil
	}
	l.local = res.(*localBuckets)
	return l
}

// rlLogger is the Env's logger, or slog's default.
func (c *compiler) rlLogger() *slog.Logger {
	if c.env.Logger != nil {
		return c.env.Logger
	}
	return slog.Default()
}

// rlPolicyItem formats a limit's item of the RateLimit-Policy field:
// `"name";q=REQUESTS;w=SECONDS` (draft-ietf-httpapi-ratelimit-headers-11,
// section 3: a List of Items whose value is a String, with the quota "q"
// and the window "w" in whole seconds, non-zero). A per that is not a whole
// number of seconds is rounded up to one, and the quota scaled to it, so
// that q/w is still the limit's rate.
func rlPolicyItem(l *rlLimit) string {
	w := int64(math.Ceil(l.per.Seconds()))
	if w < 1 {
		w = 1
	}
	q := int64(l.requests)
	if time.Duration(w)*time.Second != l.per {
		q = int64(math.Floor(float64(l.requests) * float64(w) * float64(time.Second) / float64(l.per)))
	}
	return strconv.Quote(l.name) + ";q=" + strconv.FormatInt(q, 10) + ";w=" + strconv.FormatInt(w, 10)
}

// rateLimiter is the compiled rate-limit step of one policy.
type rateLimiter struct {
	policy       string
	all          []*rlLimit // in file order, for the RateLimit field
	locals       []*rlLimit
	globals      []*rlLimit
	policyHeader string
	env          *Env
	logger       *slog.Logger
}

// rateLimitHandler runs a policy's limits before the rest of the chain.
type rateLimitHandler struct {
	rl   *rateLimiter
	next http.Handler
}

// rlOutcome is what one limit said about a request.
type rlOutcome struct {
	l         *rlLimit
	ok        bool          // the store answered (always, for local limits)
	remaining int64         // tokens left after this request
	reset     time.Duration // until the bucket is full again
	next      time.Duration // until the next token, when remaining is 0
}

// rlMaxInline is how many limits a policy may have before a request's
// outcomes no longer fit on the stack.
const rlMaxInline = 8

// ServeHTTP checks every limit; all must have a token. Local limits are
// peeked first and consumed last, so that a request another limit refuses
// takes no local token; a global limit takes its token in Redis when
// asked, so when a later global limit refuses, earlier global limits have
// still counted the request (undoing that would need a second round trip
// to Redis).
func (h *rateLimitHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rl := h.rl
	st := stateOf(r)
	now := rl.env.Now()

	var outBuf [rlMaxInline]rlOutcome
	var limBuf [rlMaxInline]*rate.Limiter
	var tokBuf [rlMaxInline]float64
	outs, lims, toks := outBuf[:0], limBuf[:0], tokBuf[:0]
	if n := len(rl.all); n > rlMaxInline {
		outs, lims, toks = make([]rlOutcome, 0, n), make([]*rate.Limiter, 0, n), make([]float64, 0, n)
	}

	// Local limits: find the buckets and refuse without taking anything
	// when one is empty.
	for _, l := range rl.locals {
		lim := l.local.get(l.keyOf(r, st))
		tokens := lim.TokensAt(now)
		if tokens < 1 {
			h.limited(w, r, l, l.rate.delay(1-tokens))
			return
		}
		lims, toks = append(lims, lim), append(toks, tokens)
	}

	// Global limits, in order; each one asked takes its token.
	storeErr := false
	for _, l := range rl.globals {
		res, err := l.global.take(r, l.keyOf(r, st), now)
		if err != nil {
			storeErr = true
			if l.global.closed {
				h.storeUnavailable(w, r, l)
				return
			}
			continue
		}
		if !res.allowed {
			h.limited(w, r, l, res.retryAfter)
			return
		}
		outs = append(outs, rlOutcome{l: l, ok: true, remaining: res.remaining, reset: res.resetAfter, next: res.next})
	}

	// Take the local tokens. Another request may have taken the last one
	// since the peek; then this one is refused (the global tokens it took
	// stay taken).
	for i, l := range rl.locals {
		lim := lims[i]
		if !lim.AllowN(now, 1) {
			h.limited(w, r, l, l.rate.delay(1-lim.TokensAt(now)))
			return
		}
		// What the peek saw, less this request's token: exact unless
		// another request came in between, and only for the fields.
		tokens := max(toks[i]-1, 0)
		o := rlOutcome{l: l, ok: true, remaining: int64(tokens), reset: l.rate.delay(float64(l.burst) - tokens)}
		if o.remaining == 0 {
			o.next = l.rate.delay(1 - tokens)
		}
		outs = append(outs, o)
	}

	if len(outs) > 0 {
		addRateLimitFields(w.Header(), rl.policyHeader, rateLimitField(rl.all, outs))
	} else {
		addRateLimitFields(w.Header(), rl.policyHeader, "")
	}
	decision := rlAllow
	if storeErr {
		decision = rlStoreErrorOpen
	}
	h.report(r, nil, decision)
	h.next.ServeHTTP(w, r)
}

// limited answers 429 for limit l, whose next token comes after wait.
func (h *rateLimitHandler) limited(w http.ResponseWriter, r *http.Request, l *rlLimit, wait time.Duration) {
	secs := rlCeilSeconds(wait)
	if secs < 1 {
		secs = 1
	}
	hdr := w.Header()
	hdr[hdrRetryAfter] = []string{strconv.FormatInt(secs, 10)}
	// The draft (section 6): Retry-After should not be earlier than the
	// end of the effective window, so t is the Retry-After delay.
	addRateLimitFields(hdr, h.rl.policyHeader, strconv.Quote(l.name)+";r=0;t="+strconv.FormatInt(secs, 10))
	h.report(r, l, rlLimited)
	h.rl.logger.Debug("rate limited", "policy", h.rl.policy, "limit", l.name, "route", stateOf(r).route.Name, "retry_after", secs)
	reject(w, r, http.StatusTooManyRequests, "rate limit exceeded")
}

// storeUnavailable answers 503 for a fail-closed global limit whose store
// cannot answer.
func (h *rateLimitHandler) storeUnavailable(w http.ResponseWriter, r *http.Request, l *rlLimit) {
	w.Header()[hdrRetryAfter] = []string{"1"}
	h.report(r, l, rlStoreErrorClosed)
	reject(w, r, http.StatusServiceUnavailable, "rate limit store unavailable")
}

// Header names in canonical form, so that setting them does not
// canonicalize (and allocate) per request.
const (
	hdrRateLimitPolicy = "Ratelimit-Policy"
	hdrRateLimit       = "Ratelimit"
	hdrRetryAfter      = "Retry-After"
)

// addRateLimitFields adds a RateLimit-Policy value and, unless empty, a
// RateLimit value to the response. They are added, not set: every policy
// with limits adds its own line (a structured-field List may be split over
// several field lines, RFC 9651 section 3.1). They are set on the response
// before the upstream answers; the proxy appends the upstream's own
// values, if any, after them.
func addRateLimitFields(hdr http.Header, policy, limits string) {
	pv, lv := hdr[hdrRateLimitPolicy], hdr[hdrRateLimit]
	if pv == nil && lv == nil && limits != "" {
		// One allocation for both fields; each slice is capped so that a
		// later append copies instead of writing into the other.
		both := []string{policy, limits}
		hdr[hdrRateLimitPolicy], hdr[hdrRateLimit] = both[0:1:1], both[1:2:2]
		return
	}
	hdr[hdrRateLimitPolicy] = append(pv, policy)
	if limits != "" {
		hdr[hdrRateLimit] = append(lv, limits)
	}
}

// report observes the decision and sets it on the span.
func (h *rateLimitHandler) report(r *http.Request, l *rlLimit, decision string) {
	st := stateOf(r)
	st.observe(r, h.rl.policy, StepRateLimit, decision)
	span := trace.SpanFromContext(r.Context())
	if !span.IsRecording() {
		return
	}
	attrs := []attribute.KeyValue{
		attribute.String("meshgate.ratelimit.decision", decision),
	}
	if l != nil {
		attrs = append(attrs, attribute.String("meshgate.ratelimit.name", l.name))
	}
	span.SetAttributes(attrs...)
}

// rateLimitField formats the RateLimit field of an allowed request: one
// `"name";r=REMAINING;t=SECONDS` item per limit that answered, in file
// order (draft-ietf-httpapi-ratelimit-headers-11, section 4). t is the
// time until the bucket is full again or, when no token is left, until
// the next one: the client can use no more than r within it.
func rateLimitField(all []*rlLimit, outs []rlOutcome) string {
	var buf [128]byte
	b := buf[:0]
	first := true
	for _, l := range all {
		for i := range outs {
			o := &outs[i]
			if o.l != l || !o.ok {
				continue
			}
			if !first {
				b = append(b, ", "...)
			}
			first = false
			b = strconv.AppendQuote(b, l.name)
			b = append(b, ";r="...)
			b = strconv.AppendInt(b, o.remaining, 10)
			b = append(b, ";t="...)
			t := o.reset
			if o.remaining == 0 {
				t = o.next
			}
			b = strconv.AppendInt(b, rlCeilSeconds(t), 10)
		}
	}
	return string(b)
}

// rlRate is a limit's refill rate in tokens per second.
type rlRate float64

// delay is how long the limit takes to refill tokens.
func (lim rlRate) delay(tokens float64) time.Duration {
	if tokens <= 0 {
		return 0
	}
	// Whole microseconds: float noise (1/0.05 = 20.000000000000004 s)
	// must not add a second to Retry-After.
	return time.Duration(math.Round(tokens/float64(lim)*1e6)) * time.Microsecond
}

// rlCeilSeconds rounds d up to whole seconds.
func rlCeilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}
