package policies

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/meshgate/meshgate/internal/testproc"
	"github.com/meshgate/meshgate/policies/redistest"
)

// rlClock is a settable clock for Env.Now.
type rlClock struct{ ns atomic.Int64 }

func newRLClock() *rlClock {
	c := &rlClock{}
	c.ns.Store(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano())
	return c
}

func (c *rlClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *rlClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// rlObserver counts decisions.
type rlObserver struct {
	mu sync.Mutex
	n  map[string]int
}

func (o *rlObserver) Decision(_ context.Context, policy, step, decision string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.n == nil {
		o.n = make(map[string]int)
	}
	o.n[policy+"/"+step+"/"+decision]++
}

func (o *rlObserver) count(key string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.n[key]
}

// rateLimitSet compiles policies from YAML text.
func rateLimitSet(t testing.TB, yaml string, env *Env, res *resources, haveRedis bool) *Set {
	t.Helper()
	set, err := compileSources([]Source{{Name: "p.yaml", Dir: t.TempDir(), Data: []byte(yaml)}}, env, res, false, haveRedis)
	if err != nil {
		t.Fatalf("compiling policies: %v", err)
	}
	return set
}

// rlOK is the handler behind the chain.
var rlOK = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Upstream", "yes")
	_, _ = io.WriteString(w, "ok")
})

// rateLimitChain compiles policies from YAML text and links them for
// route "r" of service "s" in front of rlOK.
func rateLimitChain(t testing.TB, yaml string, env *Env, res *resources, haveRedis bool) http.Handler {
	t.Helper()
	return rateLimitSet(t, yaml, env, res, haveRedis).Chain(RouteInfo{Name: "r", Service: "s"}, rlOK)
}

// rlServe runs one request through h from client address ip.
func rlServe(h http.Handler, ip string, mod func(*http.Request)) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, "http://gw.test/x", nil)
	r.RemoteAddr = ip + ":40000"
	if mod != nil {
		mod(r)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// rlBuckets returns the local buckets of the limit policy/name.
func rlBuckets(t testing.TB, res *resources, policy, name string) *localBuckets {
	t.Helper()
	res.mu.Lock()
	defer res.mu.Unlock()
	var found *localBuckets
	for k, c := range res.live {
		if strings.HasPrefix(k, "ratelimit:"+policy+"/"+name+":") {
			if found != nil {
				t.Fatalf("more than one resource for %s/%s", policy, name)
			}
			found = c.(*localBuckets)
		}
	}
	if found == nil {
		t.Fatalf("no buckets for %s/%s", policy, name)
	}
	return found
}

// rlWant checks a response's status and rate-limit fields.
type rlWant struct {
	status     int
	retryAfter string // "" for none
	policy     string
	ratelimit  string
}

func rlCheck(t *testing.T, step string, got *http.Response, body string, want rlWant) {
	t.Helper()
	if got.StatusCode != want.status {
		t.Errorf("%s: status %d, want %d; body %s", step, got.StatusCode, want.status, body)
	}
	if ra := got.Header.Get("Retry-After"); ra != want.retryAfter {
		t.Errorf("%s: Retry-After %q, want %q", step, ra, want.retryAfter)
	}
	if p := strings.Join(got.Header.Values("RateLimit-Policy"), ", "); p != want.policy {
		t.Errorf("%s: RateLimit-Policy %q, want %q", step, p, want.policy)
	}
	if rl := strings.Join(got.Header.Values("RateLimit"), ", "); rl != want.ratelimit {
		t.Errorf("%s: RateLimit %q, want %q", step, rl, want.ratelimit)
	}
}

// TestRateLimitLocalBurstThen429 sends a burst through a real listener:
// the bucket's tokens pass with exact RateLimit fields, then 429 with
// Retry-After, the fields and the JSON error body, without reaching
// upstream.
func TestRateLimitLocalBurstThen429(t *testing.T) {
	t.Parallel()
	clock := newRLClock()
	obs := &rlObserver{}
	h := rateLimitChain(t, `
policies:
  - name: api
    applies_to: {all: true}
    rate_limits:
      - name: per-client
        requests: 3
        per: 1m
`, &Env{Now: clock.Now, Observer: obs}, newResources(), false)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	get := func() (*http.Response, string) {
		resp, err := srv.Client().Get(srv.URL + "/x")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	const pol = `"per-client";q=3;w=60`
	// 3 per minute: a token every 20s; r tokens left are full again in
	// (3-r)*20s; with none left, the next comes in 20s.
	for i, want := range []rlWant{
		{status: 200, policy: pol, ratelimit: `"per-client";r=2;t=20`},
		{status: 200, policy: pol, ratelimit: `"per-client";r=1;t=40`},
		{status: 200, policy: pol, ratelimit: `"per-client";r=0;t=20`},
		{status: 429, retryAfter: "20", policy: pol, ratelimit: `"per-client";r=0;t=20`},
		{status: 429, retryAfter: "20", policy: pol, ratelimit: `"per-client";r=0;t=20`},
	} {
		resp, body := get()
		rlCheck(t, fmt.Sprintf("request %d", i+1), resp, body, want)
		switch want.status {
		case 200:
			if body != "ok" || resp.Header.Get("X-Upstream") != "yes" {
				t.Errorf("request %d: body %q, X-Upstream %q; want the upstream's", i+1, body, resp.Header.Get("X-Upstream"))
			}
		case 429:
			if body != `{"error":"rate limit exceeded","status":429}`+"\n" {
				t.Errorf("request %d: body %q", i+1, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("request %d: Content-Type %q", i+1, ct)
			}
			if resp.Header.Get("X-Upstream") != "" {
				t.Errorf("request %d: a limited request reached upstream", i+1)
			}
		}
	}
	// 5s later the next token is 15s away.
	clock.Advance(5 * time.Second)
	resp, body := get()
	rlCheck(t, "5s later", resp, body, rlWant{status: 429, retryAfter: "15", policy: pol, ratelimit: `"per-client";r=0;t=15`})
	if a, l := obs.count("api/rate_limit/allow"), obs.count("api/rate_limit/limited"); a != 3 || l != 3 {
		t.Errorf("observed %d allow, %d limited; want 3 and 3", a, l)
	}
}

// TestRateLimitLocalRefill advances the clock: tokens come back at the
// limit's rate, up to the burst, and a per under a second is advertised
// scaled to one second.
func TestRateLimitLocalRefill(t *testing.T) {
	t.Parallel()
	clock := newRLClock()
	h := rateLimitChain(t, `
policies:
  - name: api
    applies_to: {all: true}
    rate_limits:
      - name: fast
        requests: 2
        per: 200ms
        burst: 3
`, &Env{Now: clock.Now}, newResources(), false)
	statuses := func(n int) string {
		var s []string
		for range n {
			w := rlServe(h, "192.0.2.1", nil)
			s = append(s, fmt.Sprint(w.Code))
		}
		return strings.Join(s, " ")
	}
	if got := statuses(4); got != "200 200 200 429" {
		t.Fatalf("burst of 3: %s", got)
	}
	w := rlServe(h, "192.0.2.1", nil)
	if got := w.Header().Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After %q for a 100ms wait, want 1 (whole seconds, at least 1)", got)
	}
	if got := w.Header().Get("RateLimit-Policy"); got != `"fast";q=10;w=1` {
		t.Errorf("RateLimit-Policy %q", got)
	}
	clock.Advance(100 * time.Millisecond) // one token
	if got := statuses(2); got != "200 429" {
		t.Errorf("after 100ms: %s, want one token", got)
	}
	clock.Advance(250 * time.Millisecond) // 2.5 tokens
	if got := statuses(3); got != "200 200 429" {
		t.Errorf("after 250ms: %s, want two tokens", got)
	}
	clock.Advance(time.Hour) // full, never more than the burst
	if got := statuses(4); got != "200 200 200 429" {
		t.Errorf("after an hour: %s, want the burst of 3", got)
	}
}

// TestRateLimitKeys checks that each kind of key gives separate buckets:
// a request with key A uses up A's bucket, B's is untouched.
func TestRateLimitKeys(t *testing.T) {
	t.Parallel()
	type req struct {
		ip       string
		route    string
		header   string
		identity Identity
	}
	tests := []struct {
		name string
		key  string
		a, b req
	}{
		{"client_ip", "client_ip", req{ip: "192.0.2.1"}, req{ip: "192.0.2.2"}},
		{"client_ip v6", "client_ip", req{ip: "[2001:db8::1]"}, req{ip: "[2001:db8::2]"}},
		{"route", "route", req{route: "orders"}, req{route: "users"}},
		{"header", "header:x-tenant", req{header: "acme"}, req{header: "globex"}},
		{"header absent shares the empty key", "header:x-tenant", req{}, req{header: "x"}},
		{"long header", "header:x-tenant", req{header: strings.Repeat("a", 100)}, req{header: strings.Repeat("a", 99) + "b"}},
		{"principal", "principal", req{identity: Identity{Principal: "alice"}}, req{identity: Identity{Principal: "bob"}}},
		{"claim string", "claim:tenant", req{identity: Identity{Claims: map[string]any{"tenant": "acme"}}}, req{identity: Identity{Claims: map[string]any{"tenant": "globex"}}}},
		{"claim number", "claim:tenant", req{identity: Identity{Claims: map[string]any{"tenant": 1.0}}}, req{identity: Identity{Claims: map[string]any{"tenant": 2.0}}}},
		{"claim list", "claim:tenant", req{identity: Identity{Claims: map[string]any{"tenant": []any{"a"}}}}, req{identity: Identity{Claims: map[string]any{"tenant": []any{"b"}}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := &Env{Now: newRLClock().Now}
			set := rateLimitSet(t, fmt.Sprintf(`
policies:
  - name: api
    applies_to: {all: true}
    rate_limits:
      - name: one
        key: %q
        requests: 1
        per: 1m
`, tt.key), env, newResources(), false)
			step := set.policies[0].steps[5](rlOK)
			send := func(q req) int {
				ip := q.ip
				if ip == "" {
					ip = "192.0.2.9"
				}
				r := httptest.NewRequest(http.MethodGet, "http://gw.test/x", nil)
				r.RemoteAddr = ip + ":1"
				if q.header != "" {
					r.Header.Set("X-Tenant", q.header)
				}
				route := q.route
				if route == "" {
					route = "r"
				}
				st := &requestState{route: RouteInfo{Name: route}, identity: q.identity, clientIP: RemoteIP(r), env: env}
				r = r.WithContext(context.WithValue(r.Context(), stateKey{}, st))
				w := httptest.NewRecorder()
				step.ServeHTTP(w, r)
				return w.Code
			}
			if got := []int{send(tt.a), send(tt.a), send(tt.b), send(tt.b), send(tt.a)}; fmt.Sprint(got) != "[200 429 200 429 429]" {
				t.Errorf("A A B B A: %v, want [200 429 200 429 429]", got)
			}
		})
	}
}

// TestRateLimitRouteKeyThroughChain checks the route key through the
// chains of two routes built from one set.
func TestRateLimitRouteKeyThroughChain(t *testing.T) {
	t.Parallel()
	set := rateLimitSet(t, `
policies:
  - name: api
    applies_to: {all: true}
    rate_limits:
      - name: per-route
        key: route
        requests: 1
        per: 1m
`, &Env{Now: newRLClock().Now}, newResources(), false)
	a := set.Chain(RouteInfo{Name: "a", Service: "s"}, rlOK)
	b := set.Chain(RouteInfo{Name: "b", Service: "s"}, rlOK)
	got := []int{rlServe(a, "192.0.2.1", nil).Code, rlServe(a, "192.0.2.2", nil).Code, rlServe(b, "192.0.2.3", nil).Code}
	if fmt.Sprint(got) != "[200 429 200]" {
		t.Errorf("a a b from different clients: %v, want [200 429 200]", got)
	}
}

// TestRateLimitMemoryBound sends 10,000 distinct keys through a limit of
// max_keys 1000: no more than 1000 buckets are kept, and a key pushed out
// comes back with a full bucket.
func TestRateLimitMemoryBound(t *testing.T) {
	t.Parallel()
	res := newResources()
	h := rateLimitChain(t, `
policies:
  - name: api
    applies_to: {all: true}
    rate_limits:
      - name: per-tenant
        key: header:X-Tenant
        requests: 1
        per: 1h
        max_keys: 1000
`, &Env{Now: newRLClock().Now}, res, false)
	tenant := func(v string) func(*http.Request) { return func(r *http.Request) { r.Header.Set("X-Tenant", v) } }
	if c := rlServe(h, "192.0.2.1", tenant("first")).Code; c != 200 {
		t.Fatalf("first: %d", c)
	}
	if c := rlServe(h, "192.0.2.1", tenant("first")).Code; c != 429 {
		t.Fatalf("first again: %d", c)
	}
	b := rlBuckets(t, res, "api", "per-tenant")
	for i := range 10000 {
		if c := rlServe(h, "192.0.2.1", tenant(fmt.Sprint("t", i))).Code; c != 200 {
			t.Fatalf("tenant %d: %d", i, c)
		}
		if i%1000 == 999 {
			if n := b.len(); n > 1000 {
				t.Fatalf("after %d keys: %d buckets kept, want at most 1000", i+1, n)
			}
		}
	}
	if n := b.len(); n < 900 {
		t.Errorf("%d buckets kept, want close to 1000 (the bound should be used, not undershot)", n)
	}
	if c := rlServe(h, "192.0.2.1", tenant("first")).Code; c != 200 {
		t.Errorf("first, dropped long ago: %d, want 200 (a fresh bucket)", c)
	}

	small := newLocalBuckets(1, 1, 10)
	for i := range 100 {
		small.get(rlKey{s: fmt.Sprint(i)})
	}
	if n := small.len(); n > 10 || n < 1 {
		t.Errorf("max_keys 10: %d buckets", n)
	}
}

// TestRateLimitReload compiles twice against one resources value, as a
// reload does: the counts survive when the limit is unchanged (even when
// the rest of the policy changes) and start over when it changes.
func TestRateLimitReload(t *testing.T) {
	t.Parallel()
	res := newResources()
	env := &Env{Now: newRLClock().Now}
	const tmpl = `
policies:
  - name: api
    applies_to: {%s}
    rate_limits:
      - name: per-client
        requests: %d
        per: 1m
`
	h1 := rateLimitChain(t, fmt.Sprintf(tmpl, "all: true", 3), env, res, false)
	for i := range 2 {
		if c := rlServe(h1, "192.0.2.1", nil).Code; c != 200 {
			t.Fatalf("request %d: %d", i+1, c)
		}
	}
	h2 := rateLimitChain(t, fmt.Sprintf(tmpl, "services: [s]", 3), env, res, false)
	if got := []int{rlServe(h2, "192.0.2.1", nil).Code, rlServe(h2, "192.0.2.1", nil).Code}; fmt.Sprint(got) != "[200 429]" {
		t.Errorf("after a reload keeping the limit: %v, want [200 429] (one token left)", got)
	}
	h3 := rateLimitChain(t, fmt.Sprintf(tmpl, "services: [s]", 4), env, res, false)
	var got []int
	for range 5 {
		got = append(got, rlServe(h3, "192.0.2.1", nil).Code)
	}
	if fmt.Sprint(got) != "[200 200 200 200 429]" {
		t.Errorf("after a reload changing requests to 4: %v, want a fresh bucket of 4", got)
	}
}

// TestRateLimitMultipleLimits checks that every limit must allow, that
// the RateLimit field lists each, and that a request one limit refuses
// takes no token from the others.
func TestRateLimitMultipleLimits(t *testing.T) {
	t.Parallel()
	h := rateLimitChain(t, `
policies:
  - name: api
    applies_to: {all: true}
    rate_limits:
      - name: per-client
        requests: 5
        per: 1m
      - name: per-tenant
        key: header:X-Tenant
        requests: 2
        per: 1m
`, &Env{Now: newRLClock().Now}, newResources(), false)
	const pol = `"per-client";q=5;w=60, "per-tenant";q=2;w=60`
	tenant := func(v string) func(*http.Request) { return func(r *http.Request) { r.Header.Set("X-Tenant", v) } }
	for i, tc := range []struct {
		tenant string
		want   rlWant
	}{
		{"a", rlWant{status: 200, policy: pol, ratelimit: `"per-client";r=4;t=12, "per-tenant";r=1;t=30`}},
		{"a", rlWant{status: 200, policy: pol, ratelimit: `"per-client";r=3;t=24, "per-tenant";r=0;t=30`}},
		{"a", rlWant{status: 429, retryAfter: "30", policy: pol, ratelimit: `"per-tenant";r=0;t=30`}},
		{"a", rlWant{status: 429, retryAfter: "30", policy: pol, ratelimit: `"per-tenant";r=0;t=30`}},
		// per-client still has 3: the refused requests took nothing.
		{"b", rlWant{status: 200, policy: pol, ratelimit: `"per-client";r=2;t=36, "per-tenant";r=1;t=30`}},
		{"c", rlWant{status: 200, policy: pol, ratelimit: `"per-client";r=1;t=48, "per-tenant";r=1;t=30`}},
		{"d", rlWant{status: 200, policy: pol, ratelimit: `"per-client";r=0;t=12, "per-tenant";r=1;t=30`}},
		{"e", rlWant{status: 429, retryAfter: "12", policy: pol, ratelimit: `"per-client";r=0;t=12`}},
	} {
		w := rlServe(h, "192.0.2.1", tenant(tc.tenant))
		rlCheck(t, fmt.Sprintf("request %d (tenant %s)", i+1, tc.tenant), w.Result(), w.Body.String(), tc.want)
	}
}

// TestRateLimitHeadersAddToOtherPolicies checks that two policies with
// limits each add their items, and the upstream's handler sees them set
// before it runs.
func TestRateLimitHeadersAddToOtherPolicies(t *testing.T) {
	t.Parallel()
	set := rateLimitSet(t, `
policies:
  - name: a
    applies_to: {all: true}
    rate_limits:
      - name: la
        requests: 10
        per: 10s
  - name: b
    applies_to: {all: true}
    rate_limits:
      - name: lb
        key: route
        requests: 1
        per: 1s
`, &Env{Now: newRLClock().Now}, newResources(), false)
	var seen []string
	h := set.Chain(RouteInfo{Name: "r"}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = w.Header().Values("RateLimit")
	}))
	w := rlServe(h, "192.0.2.1", nil)
	if got := w.Header().Values("RateLimit-Policy"); fmt.Sprint(got) != `["la";q=10;w=10 "lb";q=1;w=1]` {
		t.Errorf("RateLimit-Policy %q", got)
	}
	if fmt.Sprint(seen) != `["la";r=9;t=1 "lb";r=0;t=1]` {
		t.Errorf("RateLimit seen by the next handler: %q", seen)
	}
	w = rlServe(h, "192.0.2.1", nil)
	if w.Code != 429 || w.Header().Get("Retry-After") != "1" {
		t.Errorf("second request: %d, Retry-After %q; want 429 from policy b", w.Code, w.Header().Get("Retry-After"))
	}
}

// TestRateLimitDefaults checks the defaults written into the spec, which
// /admin/policies shows.
func TestRateLimitDefaults(t *testing.T) {
	t.Parallel()
	set := rateLimitSet(t, `
policies:
  - name: api
    applies_to: {all: true}
    rate_limits:
      - name: local
        requests: 7
      - name: global
        requests: 7
        scope: global
`, &Env{}, newResources(), true)
	got := set.policies[0].spec.RateLimits
	want := []RateLimit{
		{Name: "local", Key: "client_ip", Requests: 7, Per: defaultRatePer, Burst: 7, Scope: "local", MaxKeys: 100000},
		{Name: "global", Key: "client_ip", Requests: 7, Per: defaultRatePer, Burst: 7, Scope: "global", FailureMode: "open"},
	}
	if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
		t.Errorf("spec after defaults:\n got %+v\nwant %+v", got, want)
	}
}

// TestRateLimitValidation checks every rule of a limit, with the file,
// line and field of the problem.
func TestRateLimitValidation(t *testing.T) {
	t.Parallel()
	const head = `policies:
  - name: p
    applies_to: {all: true}
    rate_limits:
`
	// Limits start on line 5.
	tests := []struct {
		name      string
		limits    string
		haveRedis bool
		want      string
	}{
		{"name missing", `
      - requests: 1`, false,
			`p.yaml:5: policies[0].rate_limits[0].name: required`},
		{"name invalid", `
      - name: -x
        requests: 1`, false,
			`p.yaml:5: policies[0].rate_limits[0].name: "-x" is not a valid name; want letters, digits, '.', '_' and '-', starting with a letter or digit`},
		{"name duplicate", `
      - name: a
        requests: 1
      - name: a
        requests: 2`, false,
			`p.yaml:7: policies[0].rate_limits[1].name: duplicate rate limit name "a" in policy "p"; first defined on line 5`},
		{"key unknown", `
      - name: a
        key: ip
        requests: 1`, false,
			`p.yaml:6: policies[0].rate_limits[0].key: "ip" is not a rate-limit key; want client_ip, route, principal, header:NAME or claim:NAME`},
		{"key header name invalid", `
      - name: a
        key: "header:X Tenant"
        requests: 1`, false,
			`p.yaml:6: policies[0].rate_limits[0].key: "header:X Tenant": "X Tenant" is not a header name; want header:NAME with NAME an HTTP field name such as X-Tenant`},
		{"key header name empty", `
      - name: a
        key: "header:"
        requests: 1`, false,
			`p.yaml:6: policies[0].rate_limits[0].key: "header:": "" is not a header name; want header:NAME with NAME an HTTP field name such as X-Tenant`},
		{"key claim name empty", `
      - name: a
        key: "claim:"
        requests: 1`, false,
			`p.yaml:6: policies[0].rate_limits[0].key: "claim:" has no claim name; want claim:NAME such as claim:tenant`},
		{"requests missing", `
      - name: a`, false,
			`p.yaml:5: policies[0].rate_limits[0].requests: required; want the number of requests allowed per per, at least 1`},
		{"requests zero", `
      - name: a
        requests: 0`, false,
			`p.yaml:6: policies[0].rate_limits[0].requests: must be at least 1, got 0`},
		{"requests negative", `
      - name: a
        requests: -5`, false,
			`p.yaml:6: policies[0].rate_limits[0].requests: must be at least 1, got -5`},
		{"per zero", `
      - name: a
        requests: 1
        per: 0`, false,
			`p.yaml:7: policies[0].rate_limits[0].per: must be greater than 0, such as 1s or 1m`},
		{"burst zero", `
      - name: a
        requests: 1
        burst: 0`, false,
			`p.yaml:7: policies[0].rate_limits[0].burst: must be at least 1, got 0`},
		{"scope unknown", `
      - name: a
        requests: 1
        scope: regional`, false,
			`p.yaml:7: policies[0].rate_limits[0].scope: "regional" is not a scope; want local or global`},
		{"global without redis", `
      - name: a
        requests: 1
        scope: global`, false,
			`p.yaml:7: policies[0].rate_limits[0].scope: global limits need policies.redis in the config`},
		{"failure_mode unknown", `
      - name: a
        requests: 1
        scope: global
        failure_mode: maybe`, true,
			`p.yaml:8: policies[0].rate_limits[0].failure_mode: "maybe" is not a failure mode; want open or closed`},
		{"failure_mode on a local limit", `
      - name: a
        requests: 1
        failure_mode: closed`, false,
			`p.yaml:7: policies[0].rate_limits[0].failure_mode: applies to global limits only (a local limit has no store to fail); remove it or set scope: global`},
		{"max_keys zero", `
      - name: a
        requests: 1
        max_keys: 0`, false,
			`p.yaml:7: policies[0].rate_limits[0].max_keys: must be at least 1, got 0`},
		{"max_keys on a global limit", `
      - name: a
        requests: 1
        scope: global
        max_keys: 10`, true,
			`p.yaml:8: policies[0].rate_limits[0].max_keys: applies to local limits only (Redis keeps the buckets of global limits); remove it or set scope: local`},
		{"global finer than a microsecond", `
      - name: a
        requests: 2000000
        per: 1s
        scope: global`, true,
			`p.yaml:6: policies[0].rate_limits[0].requests: 2000000 per 1s is more than one request per microsecond, finer than global limits count; use a longer per`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := compileSources([]Source{{Name: "p.yaml", Data: []byte(head + strings.TrimPrefix(tt.limits, "\n") + "\n")}}, &Env{}, newResources(), false, tt.haveRedis)
			if err == nil {
				t.Fatalf("no error, want %s", tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("errors:\n%s\nwant:\n%s", err, tt.want)
			}
		})
	}
	// Validate (meshgate validate) accepts a global limit when the config
	// has Redis, without connecting anywhere.
	if _, err := Validate([]Source{{Name: "p.yaml", Data: []byte(head + "      - {name: g, requests: 1, scope: global}\n")}}, true); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

// rlRedisClient returns a go-redis client of srv, closed at cleanup.
func rlRedisClient(t *testing.T, srv *redistest.Server) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), PoolSize: 16})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestRateLimitGlobalBurst checks a global limit's answers through Redis:
// the burst passes with the remaining count, then 429 with Retry-After.
func TestRateLimitGlobalBurst(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	h := rateLimitChain(t, `
policies:
  - name: api
    applies_to: {all: true}
    rate_limits:
      - name: shared
        requests: 3
        per: 1m
        scope: global
`, &Env{Redis: rlRedisClient(t, srv)}, newResources(), true)
	// Redis's clock runs, so t is checked within a second.
	for i, want := range []struct {
		status int
		r      string
		t      []string
	}{
		{200, "2", []string{"20", "19"}},
		{200, "1", []string{"40", "39"}},
		{200, "0", []string{"20", "19"}},
		{429, "0", []string{"20", "19"}},
	} {
		w := rlServe(h, "192.0.2.1", nil)
		if w.Code != want.status {
			t.Fatalf("request %d: %d, want %d; body %s", i+1, w.Code, want.status, w.Body)
		}
		okT := false
		for _, tv := range want.t {
			if w.Header().Get("RateLimit") == `"shared";r=`+want.r+`;t=`+tv {
				okT = true
			}
		}
		if !okT {
			t.Errorf("request %d: RateLimit %q, want r=%s and t in %v", i+1, w.Header().Get("RateLimit"), want.r, want.t)
		}
		if got := w.Header().Get("RateLimit-Policy"); got != `"shared";q=3;w=60` {
			t.Errorf("request %d: RateLimit-Policy %q", i+1, got)
		}
		if want.status == 429 {
			if ra := w.Header().Get("Retry-After"); ra != "20" && ra != "19" {
				t.Errorf("Retry-After %q, want about 20", ra)
			}
		}
	}
	// Another client address has its own bucket.
	if c := rlServe(h, "192.0.2.2", nil).Code; c != 200 {
		t.Errorf("another client: %d", c)
	}
}

// TestRateLimitGlobalTwoInstances runs two meshgate instances (two sets,
// two Redis clients, two listeners) against one Redis and hammers both
// at once: together they allow what one bucket allows, within 5%. The
// bucket allows burst + rate × (time between the first and the last
// allowed request); that window is measured where the allowed requests
// arrive upstream, so that a stall of the (shared, busy) test machine
// before the first or after the last request does not count. The window
// of the whole run bounds it from above.
func TestRateLimitGlobalTwoInstances(t *testing.T) {
	srv := redistest.Start(t)
	const (
		rate     = 200.0 // per second
		burst    = 200
		duration = 2 * time.Second
		workers  = 4 // per instance
	)
	const yaml = `
policies:
  - name: api
    applies_to: {all: true}
    rate_limits:
      - name: everyone
        key: route
        requests: 200
        per: 1s
        scope: global
        failure_mode: closed
`
	obs := &rlObserver{}
	var first, last atomic.Int64 // Unix ns of allowed requests upstream
	var perInstance [2]atomic.Int64
	var urls []string
	for i := range 2 {
		set := rateLimitSet(t, yaml, &Env{Redis: rlRedisClient(t, srv), Observer: obs}, newResources(), true)
		h := set.Chain(RouteInfo{Name: "r", Service: "s"}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			now := time.Now().UnixNano()
			first.CompareAndSwap(0, now)
			for l := last.Load(); now > l && !last.CompareAndSwap(l, now); l = last.Load() {
			}
			perInstance[i].Add(1)
		}))
		s := httptest.NewServer(h)
		t.Cleanup(s.Close)
		urls = append(urls, s.URL)
	}
	tr := &http.Transport{MaxIdleConnsPerHost: workers * 2}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}

	var allowed, limited, other atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(duration)
	for _, u := range urls {
		for range workers {
			wg.Go(func() {
				for time.Now().Before(deadline) {
					resp, err := client.Get(u + "/x")
					if err != nil {
						other.Add(1)
						continue
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					switch resp.StatusCode {
					case 200:
						allowed.Add(1)
					case 429:
						limited.Add(1)
					default:
						other.Add(1)
					}
				}
			})
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	window := time.Duration(last.Load() - first.Load())
	expected := burst + rate*window.Seconds()
	most := burst + rate*elapsed.Seconds()
	got := float64(allowed.Load())
	t.Logf("allowed %d (instances %d + %d), limited %d, other %d; allowed for %v of %v: expected %.0f, at most %.0f",
		allowed.Load(), perInstance[0].Load(), perInstance[1].Load(), limited.Load(), other.Load(), window, elapsed, expected, most)
	if other.Load() != 0 || obs.count("api/rate_limit/store_error_closed") != 0 {
		t.Fatalf("%d requests failed, %d store errors; want none", other.Load(), obs.count("api/rate_limit/store_error_closed"))
	}
	if limited.Load() < int64(burst) || window < duration/2 {
		t.Fatalf("%d requests limited, allowed for %v: the test did not saturate the limit for long enough to measure", limited.Load(), window)
	}
	for i := range perInstance {
		if perInstance[i].Load() < int64(got/10) {
			t.Fatalf("instance %d allowed only %d of %.0f: the instances were not both under load", i, perInstance[i].Load(), got)
		}
	}
	if d := got - expected; d > 0.05*expected || d < -0.05*expected {
		t.Errorf("allowed %.0f, want %.0f ± 5%%", got, expected)
	}
	if got > most*1.05 {
		t.Errorf("allowed %.0f, more than the %.0f one bucket allows in %v", got, most, elapsed)
	}
}

// TestRateLimitGlobalRedisDown kills Redis: a fail-open limit lets
// requests through, a fail-closed one answers 503 with Retry-After and
// the JSON body; once Redis is back, both limit again.
func TestRateLimitGlobalRedisDown(t *testing.T) {
	srv := redistest.Start(t)
	obs := &rlObserver{}
	client := rlRedisClient(t, srv)
	hook := &rlCountHook{}
	client.AddHook(hook)
	var logs testproc.Output
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	set := rateLimitSet(t, `
policies:
  - name: open
    applies_to: {routes: [open]}
    rate_limits:
      - name: g
        requests: 2
        per: 1m
        scope: global
  - name: closed
    applies_to: {routes: [closed]}
    rate_limits:
      - name: g
        requests: 2
        per: 1m
        scope: global
        failure_mode: closed
`, &Env{Redis: client, Observer: obs, Logger: logger}, newResources(), true)
	open := set.Chain(RouteInfo{Name: "open"}, rlOK)
	closed := set.Chain(RouteInfo{Name: "closed"}, rlOK)
	seq := func(h http.Handler, n int) string {
		var s []string
		for range n {
			s = append(s, fmt.Sprint(rlServe(h, "192.0.2.1", nil).Code))
		}
		return strings.Join(s, " ")
	}
	if got := seq(open, 3); got != "200 200 429" {
		t.Fatalf("open, Redis up: %s", got)
	}
	if got := seq(closed, 3); got != "200 200 429" {
		t.Fatalf("closed, Redis up: %s", got)
	}

	srv.Stop()
	before := hook.n.Load()
	for i := range 5 {
		w := rlServe(open, "192.0.2.1", nil)
		if w.Code != 200 || w.Body.String() != "ok" {
			t.Errorf("open, Redis down, request %d: %d %s; want 200 from upstream", i+1, w.Code, w.Body)
		}
		if w.Header().Get("RateLimit") != "" {
			t.Errorf("open, Redis down: RateLimit %q; want none (no count known)", w.Header().Get("RateLimit"))
		}
		w = rlServe(closed, "192.0.2.1", nil)
		if w.Code != 503 || w.Header().Get("Retry-After") != "1" || w.Body.String() != `{"error":"rate limit store unavailable","status":503}`+"\n" {
			t.Errorf("closed, Redis down, request %d: %d, Retry-After %q, body %s; want 503, 1 and the JSON error", i+1, w.Code, w.Header().Get("Retry-After"), w.Body)
		}
	}
	if n := obs.count("open/rate_limit/store_error_open"); n != 5 {
		t.Errorf("observed %d store_error_open, want 5", n)
	}
	if n := obs.count("closed/rate_limit/store_error_closed"); n != 5 {
		t.Errorf("observed %d store_error_closed, want 5", n)
	}
	// After the first error each limit leaves Redis alone for a while.
	if n := hook.n.Load() - before; n != 2 {
		t.Errorf("%d commands sent to the dead Redis by 10 requests, want 2 (one per limit, then the backoff)", n)
	}
	if n := strings.Count(logs.String(), "rate limit store unavailable"); n != 2 {
		t.Errorf("%d warnings for 10 failed requests, want 2 (one per limit):\n%s", n, logs.String())
	}

	srv.Restart() // empty: every bucket is full again
	// After the backoff (1s) the limits answer from Redis again.
	for _, h := range []struct {
		name string
		h    http.Handler
	}{{"closed", closed}, {"open", open}} {
		deadline := time.Now().Add(5 * time.Second)
		for {
			w := rlServe(h.h, "192.0.2.1", nil)
			if w.Header().Get("RateLimit") != "" { // Redis answered
				if w.Code != 200 {
					t.Fatalf("%s: first answer from the restarted Redis: %d", h.name, w.Code)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: Redis still not used 5s after its restart", h.name)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if got := seq(h.h, 2); got != "200 429" {
			t.Errorf("%s after the restart: %s, want 200 429 (limits in force again)", h.name, got)
		}
	}
}

// TestRateLimitGlobalClientGone checks that a request whose client went
// away does not count as a store failure.
func TestRateLimitGlobalClientGone(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	obs := &rlObserver{}
	h := rateLimitChain(t, `
policies:
  - name: api
    applies_to: {all: true}
    rate_limits:
      - {name: g, requests: 5, per: 1m, scope: global, failure_mode: closed}
`, &Env{Redis: rlRedisClient(t, srv), Observer: obs}, newResources(), true)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	w := rlServe(h, "192.0.2.1", func(r *http.Request) { *r = *r.WithContext(ctx) })
	if w.Code != 200 || obs.count("api/rate_limit/store_error_closed") != 0 {
		t.Errorf("canceled request: %d, %d store errors; want 200 and none", w.Code, obs.count("api/rate_limit/store_error_closed"))
	}
}

// TestRateLimitGlobalNoClient checks that a global limit compiled without
// a Redis client applies its failure mode rather than crashing.
func TestRateLimitGlobalNoClient(t *testing.T) {
	t.Parallel()
	h := rateLimitChain(t, `
policies:
  - name: api
    applies_to: {all: true}
    rate_limits:
      - {name: g, requests: 5, scope: global, failure_mode: closed}
`, &Env{Logger: slog.New(slog.DiscardHandler)}, newResources(), true)
	if w := rlServe(h, "192.0.2.1", nil); w.Code != 503 {
		t.Errorf("no client, fail closed: %d, want 503", w.Code)
	}
}

// rlCountHook counts the commands a go-redis client sends.
type rlCountHook struct{ n atomic.Int64 }

func (h *rlCountHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *rlCountHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}
func (h *rlCountHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// rlDiscard is a ResponseWriter that forgets everything.
type rlDiscard struct{ h http.Header }

func (d *rlDiscard) Header() http.Header         { return d.h }
func (d *rlDiscard) Write(b []byte) (int, error) { return len(b), nil }
func (d *rlDiscard) WriteHeader(int)             {}

// BenchmarkLocalRateLimit measures an allowed request through a local
// limit keyed by client address, among 1000 clients.
func BenchmarkLocalRateLimit(b *testing.B) {
	set := rateLimitSet(b, `
policies:
  - name: api
    applies_to: {all: true}
    rate_limits:
      - name: per-client
        requests: 1000000000
        per: 1s
`, &Env{}, newResources(), false)
	h := set.Chain(RouteInfo{Name: "r", Service: "s"}, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	reqs := make([]*http.Request, 1000)
	for i := range reqs {
		reqs[i] = httptest.NewRequest(http.MethodGet, "http://gw.test/x", nil)
		reqs[i].RemoteAddr = fmt.Sprintf("10.0.%d.%d:1234", i/256, i%256)
	}
	w := &rlDiscard{h: make(http.Header)}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		clear(w.h)
		h.ServeHTTP(w, reqs[i%len(reqs)])
		i++
	}
}
