package policies

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshgate/meshgate/config"
)

// guardObserver records decisions as "policy/step/decision".
type guardObserver struct {
	mu  sync.Mutex
	got []string
}

func (o *guardObserver) Decision(_ context.Context, policy, step, decision string) {
	o.mu.Lock()
	o.got = append(o.got, policy+"/"+step+"/"+decision)
	o.mu.Unlock()
}

func (o *guardObserver) has(s string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Contains(o.got, s)
}

// guardSeen is what the test upstream received.
type guardSeen struct {
	Method, Host, Path, EscapedPath, RawQuery string
	Header                                    http.Header
	Body                                      []byte
	BodyErr                                   error
}

// guardUpstream is an httptest upstream that records every request and
// answers with handle (nil: 200 "ok").
type guardUpstream struct {
	srv    *httptest.Server
	mu     sync.Mutex
	seen   []guardSeen
	handle http.HandlerFunc
}

func newGuardUpstream(t *testing.T, handle http.HandlerFunc) *guardUpstream {
	t.Helper()
	u := &guardUpstream{handle: handle}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		u.mu.Lock()
		u.seen = append(u.seen, guardSeen{
			Method: r.Method, Host: r.Host, Path: r.URL.Path, EscapedPath: r.URL.EscapedPath(),
			RawQuery: r.URL.RawQuery, Header: r.Header.Clone(), Body: body, BodyErr: err,
		})
		u.mu.Unlock()
		if err != nil {
			return // the client's body broke; the forwarder answers
		}
		if u.handle != nil {
			u.handle(w, r)
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *guardUpstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.seen)
}

// seenCase waits for the request the test marked with X-Case: c. A
// request of an earlier case may be recorded after a later one (its body
// was still being read when the client had its answer), so the last
// record is not necessarily this case's.
func (u *guardUpstream) seenCase(t *testing.T, c string) guardSeen {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		u.mu.Lock()
		for _, s := range u.seen {
			if s.Header.Get("X-Case") == c {
				u.mu.Unlock()
				return s
			}
		}
		u.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("the upstream did not receive case %q", c)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (u *guardUpstream) last(t *testing.T) guardSeen {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.seen) == 0 {
		t.Fatal("the upstream received no request")
	}
	return u.seen[len(u.seen)-1]
}

// guardBody records the first error reading the client's body, as the
// gateway's forwarder does, so that a body over the limit maps to 413
// whatever error the transport reports.
type guardBody struct {
	rc  io.ReadCloser
	mu  sync.Mutex
	err error
}

func (b *guardBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err != nil && err != io.EOF {
		b.mu.Lock()
		if b.err == nil {
			b.err = err
		}
		b.mu.Unlock()
	}
	return n, err
}

func (b *guardBody) Close() error { return nil }

// guardForwarder forwards to target the way the gateway's forwarder does
// where the steps can tell: the upstream's header fields replace those
// already set (dst[k] = vv), the body is copied with a flush after each
// read for streams, Flush goes through http.ResponseController, and a
// *http.MaxBytesError reading the client's body is 413.
func guardForwarder(t *testing.T, target string) http.Handler {
	t.Helper()
	tu, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{DisableCompression: true} // as the gateway: encodings pass through
	t.Cleanup(tr.CloseIdleConnections)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		out := r.Clone(r.Context())
		out.URL.Scheme, out.URL.Host = tu.Scheme, tu.Host
		out.RequestURI = ""
		for _, h := range []string{"Connection", "Keep-Alive", "Te", "Trailer", "Transfer-Encoding", "Upgrade"} {
			out.Header.Del(h)
		}
		var body *guardBody
		if r.ContentLength == 0 {
			out.Body = nil
		} else {
			body = &guardBody{rc: r.Body}
			out.Body = body
			_ = http.NewResponseController(w).EnableFullDuplex()
		}
		res, err := tr.RoundTrip(out)
		if err != nil {
			var mbe *http.MaxBytesError
			if body != nil {
				body.mu.Lock()
				err = errors.Join(err, body.err)
				body.mu.Unlock()
			}
			if errors.As(err, &mbe) {
				reject(w, r, http.StatusRequestEntityTooLarge, "request body too large")
				return
			}
			reject(w, r, http.StatusBadGateway, "upstream request failed")
			return
		}
		defer res.Body.Close()
		dst := w.Header()
		for k, vv := range res.Header {
			dst[k] = vv
		}
		w.WriteHeader(res.StatusCode)
		flush := res.ContentLength == -1 || strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream")
		rc := http.NewResponseController(w)
		buf := make([]byte, 32<<10)
		for {
			n, rerr := res.Body.Read(buf)
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil {
					return
				}
				if flush {
					if err := rc.Flush(); err != nil {
						t.Errorf("Flush through the policy chain: %v", err)
						return
					}
				}
			}
			if rerr != nil {
				return
			}
		}
	})
}

// guardEnv is the Env of the guard tests: the client address comes from
// the X-Test-Client header when present (all traffic is on 127.0.0.1).
func guardEnv(obs *guardObserver) *Env {
	return &Env{
		Observer: obs,
		ClientIP: func(r *http.Request) netip.Addr {
			if v, ok := r.Header["X-Test-Client"]; ok {
				a, _ := netip.ParseAddr(v[0])
				return a
			}
			return RemoteIP(r)
		},
	}
}

// guardCompile compiles one policy file p.yaml.
func guardCompile(t *testing.T, yaml string, env *Env) (*Set, error) {
	t.Helper()
	return compileSources([]Source{{Name: "p.yaml", Dir: t.TempDir(), Data: []byte(yaml)}}, env, newResources(), false, false)
}

// guardFront compiles yaml and serves its chain for route r in front of
// final, on a real listener.
func guardFront(t *testing.T, yaml string, obs *guardObserver, final http.Handler) *httptest.Server {
	t.Helper()
	set, err := guardCompile(t, yaml, guardEnv(obs))
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	front := httptest.NewServer(set.Chain(RouteInfo{Name: "r", Service: "s"}, final))
	t.Cleanup(front.Close)
	return front
}

// guardProxy is a chain in front of a recording upstream.
func guardProxy(t *testing.T, yaml string, handle http.HandlerFunc) (*httptest.Server, *guardUpstream, *guardObserver) {
	t.Helper()
	up := newGuardUpstream(t, handle)
	obs := &guardObserver{}
	front := guardFront(t, yaml, obs, guardForwarder(t, up.srv.URL))
	return front, up, obs
}

// guardDo sends a request and returns the response with its body read.
func guardDo(t *testing.T, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("reading the body: %v", err)
	}
	return res, body
}

func guardRequest(t *testing.T, method, target string, body io.Reader, header map[string]string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, target, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	return req
}

// guardErrorBody is the contract's error body without a trace.
func guardErrorBody(status int, msg string) string {
	return fmt.Sprintf(`{"error":%q,"status":%d}`+"\n", msg, status)
}

// guardErrors compiles yaml and returns its problems, one per line.
func guardErrors(t *testing.T, yaml string) []string {
	t.Helper()
	_, err := guardCompile(t, yaml, &Env{})
	if err == nil {
		t.Fatal("compiled without error")
	}
	var errs config.Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error %v is not config.Errors", err)
	}
	out := make([]string, len(errs))
	for i, e := range errs {
		out[i] = e.Error()
	}
	return out
}

func guardCheckErrors(t *testing.T, yaml string, want []string) {
	t.Helper()
	got := guardErrors(t, yaml)
	if !slices.Equal(got, want) {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestIPGuard(t *testing.T) {
	t.Parallel()
	const yaml = `
policies:
  - name: office
    applies_to: {all: true}
    ip:
      allow: ["127.0.0.0/8", "10.0.0.0/8", "::1", "2001:db8::/32"]
      deny: ["10.1.0.0/16", "2001:db8:bad::/48", "::ffff:10.9.0.0/112"]
  - name: blocklist
    applies_to: {path_prefixes: [/blocked]}
    ip:
      deny: ["10.2.0.0/16"]
`
	front, up, obs := guardProxy(t, yaml, nil)
	tests := []struct {
		name, client, path string
		status             int
	}{
		{name: "loopback allowed", client: "", path: "/", status: 200},
		{name: "in allow list", client: "10.2.3.4", path: "/", status: 200},
		{name: "deny wins inside allow", client: "10.1.2.3", path: "/", status: 403},
		{name: "outside allow list", client: "192.168.1.1", path: "/", status: 403},
		{name: "IPv4-mapped IPv6 matches IPv4 allow", client: "::ffff:10.2.3.4", path: "/", status: 200},
		{name: "IPv4-mapped IPv6 matches IPv4 deny", client: "::ffff:10.1.0.1", path: "/", status: 403},
		{name: "mapped deny prefix matches IPv4", client: "10.9.1.1", path: "/", status: 403},
		{name: "IPv6 allowed", client: "::1", path: "/", status: 200},
		{name: "IPv6 prefix allowed", client: "2001:db8:1::1", path: "/", status: 200},
		{name: "IPv6 deny wins", client: "2001:db8:bad::1", path: "/", status: 403},
		{name: "IPv6 outside allow", client: "2001:db9::1", path: "/", status: 403},
		{name: "unknown address fails closed", client: "not-an-ip", path: "/", status: 403},
		{name: "deny-only list denies", client: "10.2.3.4", path: "/blocked/x", status: 403},
		{name: "deny-only list allows the rest", client: "10.3.0.1", path: "/blocked/x", status: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := up.count()
			h := map[string]string{}
			if tt.client != "" {
				h["X-Test-Client"] = tt.client
			}
			res, body := guardDo(t, guardRequest(t, "GET", front.URL+tt.path, nil, h))
			if res.StatusCode != tt.status {
				t.Fatalf("status %d; want %d (body %s)", res.StatusCode, tt.status, body)
			}
			reached := up.count() - before
			if tt.status == 200 {
				if reached != 1 || string(body) != "ok" {
					t.Fatalf("allowed request: upstream reached %d times, body %q", reached, body)
				}
				return
			}
			if reached != 0 {
				t.Fatalf("denied request reached the upstream")
			}
			if want := guardErrorBody(403, "client address not allowed"); string(body) != want {
				t.Fatalf("body %q; want %q", body, want)
			}
			if ct := res.Header.Get("Content-Type"); ct != "application/json" {
				t.Fatalf("Content-Type %q", ct)
			}
		})
	}
	if !obs.has("office/ip/deny") || !obs.has("office/ip/allow") || !obs.has("blocklist/ip/deny") {
		t.Errorf("decisions %v lack ip allow/deny", obs.got)
	}
}

func TestIPGuardRemoteAddress(t *testing.T) {
	t.Parallel()
	// The default ClientIP: the connection's address, 127.0.0.1 here.
	up := newGuardUpstream(t, nil)
	for _, tt := range []struct {
		list   string
		status int
	}{
		{list: `allow: ["127.0.0.1"]`, status: 200},
		{list: `deny: ["127.0.0.0/8"]`, status: 403},
		{list: `allow: ["10.0.0.0/8"]`, status: 403},
	} {
		set, err := guardCompile(t, "policies:\n  - name: p\n    applies_to: {all: true}\n    ip: {"+tt.list+"}\n", &Env{})
		if err != nil {
			t.Fatal(err)
		}
		front := httptest.NewServer(set.Chain(RouteInfo{Name: "r"}, guardForwarder(t, up.srv.URL)))
		res, _ := guardDo(t, guardRequest(t, "GET", front.URL, nil, nil))
		front.Close()
		if res.StatusCode != tt.status {
			t.Errorf("%s: status %d; want %d", tt.list, res.StatusCode, tt.status)
		}
	}
}

const guardCORSYAML = `
policies:
  - name: shop
    applies_to: {path_prefixes: [/shop]}
    cors:
      allowed_origins: ["https://shop.example.com", "https://*.example.org"]
      allowed_methods: [GET, PUT]
      allowed_headers: [X-Request-Id, Content-Type]
      exposed_headers: [X-Total-Count]
      allow_credentials: true
      max_age: 10m
    max_body_size: 16
  - name: public
    applies_to: {path_prefixes: [/public]}
    cors:
      allowed_origins: ["*"]
`

func TestCORSPreflight(t *testing.T) {
	t.Parallel()
	front, up, obs := guardProxy(t, guardCORSYAML, nil)
	tests := []struct {
		name, path, origin, method, headers string
		allowed                             bool
		wantOrigin                          string
	}{
		{name: "allowed", path: "/shop/cart", origin: "https://shop.example.com", method: "PUT", headers: "content-type,x-request-id", allowed: true},
		{name: "wildcard origin", path: "/shop/cart", origin: "https://eu.example.org", method: "GET", allowed: true},
		{name: "origin not allowed", path: "/shop/cart", origin: "https://evil.example.com", method: "PUT"},
		{name: "wildcard does not match the bare domain's lookalike", path: "/shop/cart", origin: "https://example.org.evil.com", method: "GET"},
		{name: "method not allowed", path: "/shop/cart", origin: "https://shop.example.com", method: "DELETE"},
		{name: "header not allowed", path: "/shop/cart", origin: "https://shop.example.com", method: "PUT", headers: "x-secret"},
		{name: "any origin", path: "/public/x", origin: "https://anyone.test", method: "POST", allowed: true, wantOrigin: "*"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := up.count()
			h := map[string]string{"Origin": tt.origin, "Access-Control-Request-Method": tt.method}
			if tt.headers != "" {
				h["Access-Control-Request-Headers"] = tt.headers
			}
			res, body := guardDo(t, guardRequest(t, "OPTIONS", front.URL+tt.path, nil, h))
			if res.StatusCode != http.StatusNoContent || len(body) != 0 {
				t.Fatalf("status %d body %q; want 204 and no body", res.StatusCode, body)
			}
			if up.count() != before {
				t.Fatal("a preflight reached the upstream")
			}
			if !strings.Contains(res.Header.Get("Vary"), "Origin") {
				t.Errorf("Vary %q lacks Origin", res.Header.Get("Vary"))
			}
			acao := res.Header.Get("Access-Control-Allow-Origin")
			if !tt.allowed {
				if acao != "" || res.Header.Get("Access-Control-Allow-Methods") != "" {
					t.Fatalf("refused preflight has CORS headers: %v", res.Header)
				}
				return
			}
			want := tt.wantOrigin
			if want == "" {
				want = tt.origin
			}
			if acao != want {
				t.Fatalf("Access-Control-Allow-Origin %q; want %q", acao, want)
			}
			if got := res.Header.Get("Access-Control-Allow-Methods"); got != tt.method {
				t.Errorf("Access-Control-Allow-Methods %q; want %q", got, tt.method)
			}
			if tt.headers != "" && res.Header.Get("Access-Control-Allow-Headers") != tt.headers {
				t.Errorf("Access-Control-Allow-Headers %q; want %q", res.Header.Get("Access-Control-Allow-Headers"), tt.headers)
			}
			if strings.HasPrefix(tt.path, "/shop") {
				if res.Header.Get("Access-Control-Max-Age") != "600" || res.Header.Get("Access-Control-Allow-Credentials") != "true" {
					t.Errorf("Max-Age %q Credentials %q; want 600 and true", res.Header.Get("Access-Control-Max-Age"), res.Header.Get("Access-Control-Allow-Credentials"))
				}
			} else if res.Header.Get("Access-Control-Allow-Credentials") != "" || res.Header.Get("Access-Control-Max-Age") != "" {
				t.Errorf("public preflight has credentials or max-age: %v", res.Header)
			}
		})
	}
	if !obs.has("shop/cors/preflight") || !obs.has("shop/cors/preflight_denied") {
		t.Errorf("decisions %v lack preflight, preflight_denied", obs.got)
	}
	// An OPTIONS without Access-Control-Request-Method is an actual
	// request: it goes upstream.
	before := up.count()
	res, _ := guardDo(t, guardRequest(t, "OPTIONS", front.URL+"/shop/x", nil, map[string]string{"Origin": "https://shop.example.com"}))
	if res.StatusCode != 200 || up.count() != before+1 {
		t.Errorf("plain OPTIONS: status %d, upstream reached %d times; want 200, once", res.StatusCode, up.count()-before)
	}
}

func TestCORSActualRequest(t *testing.T) {
	t.Parallel()
	// The upstream sends its own Vary and a permissive CORS header: the
	// gateway's policy must win and Vary must keep both.
	front, up, obs := guardProxy(t, guardCORSYAML, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Vary", "Accept-Encoding")
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Header().Set("Access-Control-Allow-Methods", "DELETE")
		w.Header().Set("X-Total-Count", "3")
		_, _ = io.WriteString(w, "ok")
	})
	tests := []struct {
		name, method, path, origin string
		body                       string
		status                     int
		wantOrigin, wantCreds      string
		wantExpose                 string
		reached                    bool
	}{
		{name: "allowed origin", method: "GET", path: "/shop/x", origin: "https://shop.example.com", status: 200,
			wantOrigin: "https://shop.example.com", wantCreds: "true", wantExpose: "X-Total-Count", reached: true},
		{name: "wildcard origin", method: "PUT", path: "/shop/x", origin: "https://a.example.org", status: 200,
			wantOrigin: "https://a.example.org", wantCreds: "true", wantExpose: "X-Total-Count", reached: true},
		{name: "origin not allowed: forwarded without CORS headers", method: "GET", path: "/shop/x", origin: "https://evil.test", status: 200, reached: true},
		{name: "method not allowed for CORS", method: "DELETE", path: "/shop/x", origin: "https://shop.example.com", status: 200, reached: true},
		{name: "no origin", method: "GET", path: "/shop/x", status: 200, reached: true},
		{name: "any origin without credentials", method: "GET", path: "/public/x", origin: "https://x.test", status: 200, wantOrigin: "*", reached: true},
		{name: "a later step's rejection carries the CORS headers", method: "PUT", path: "/shop/x", origin: "https://shop.example.com",
			body: strings.Repeat("x", 17), status: 413, wantOrigin: "https://shop.example.com", wantCreds: "true", wantExpose: "X-Total-Count"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := up.count()
			h := map[string]string{}
			if tt.origin != "" {
				h["Origin"] = tt.origin
			}
			var body io.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
			}
			res, _ := guardDo(t, guardRequest(t, tt.method, front.URL+tt.path, body, h))
			if res.StatusCode != tt.status {
				t.Fatalf("status %d; want %d", res.StatusCode, tt.status)
			}
			if got := up.count() - before; (got == 1) != tt.reached {
				t.Fatalf("upstream reached %d times; want reached=%v", got, tt.reached)
			}
			if got := res.Header.Values("Access-Control-Allow-Origin"); tt.wantOrigin == "" && len(got) != 0 || tt.wantOrigin != "" && !slices.Equal(got, []string{tt.wantOrigin}) {
				t.Errorf("Access-Control-Allow-Origin %q; want %q", got, tt.wantOrigin)
			}
			if got := res.Header.Get("Access-Control-Allow-Credentials"); got != tt.wantCreds {
				t.Errorf("Access-Control-Allow-Credentials %q; want %q", got, tt.wantCreds)
			}
			if got := res.Header.Get("Access-Control-Expose-Headers"); got != tt.wantExpose {
				t.Errorf("Access-Control-Expose-Headers %q; want %q", got, tt.wantExpose)
			}
			if got := res.Header.Get("Access-Control-Allow-Methods"); got != "" {
				t.Errorf("the upstream's Access-Control-Allow-Methods %q reached the client", got)
			}
			vary := strings.Join(res.Header.Values("Vary"), ", ")
			if !strings.Contains(vary, "Origin") || tt.reached && !strings.Contains(vary, "Accept-Encoding") {
				t.Errorf("Vary %q; want Origin and the upstream's Accept-Encoding", vary)
			}
		})
	}
	if !obs.has("shop/cors/allow") || !obs.has("shop/cors/origin_not_allowed") {
		t.Errorf("decisions %v lack allow, origin_not_allowed", obs.got)
	}
}

func TestCORSDefaults(t *testing.T) {
	t.Parallel()
	set, err := guardCompile(t, `
policies:
  - name: c
    applies_to: {all: true}
    cors:
      allowed_origins: ["https://a.test"]
      max_age: 1500ms
  - name: d
    applies_to: {all: true}
    cors:
      allowed_origins: ["https://b.test"]
      max_age: 100ms
`, &Env{})
	if err != nil {
		t.Fatal(err)
	}
	c := set.policies[0].spec.CORS
	if !slices.Equal(c.AllowedMethods, []string{"GET", "POST", "HEAD"}) ||
		!slices.Equal(c.AllowedHeaders, []string{"Accept", "Accept-Language", "Content-Language", "Content-Type"}) ||
		c.MaxAge.D() != 2*time.Second {
		t.Errorf("effective spec %+v; want default methods and headers, max_age rounded to 2s", c)
	}
	if d := set.policies[1].spec.CORS.MaxAge.D(); d != time.Second {
		t.Errorf("max_age 100ms became %v; want 1s (a positive age is never 0)", d)
	}
}

func TestBodyLimit(t *testing.T) {
	t.Parallel()
	const yaml = `
policies:
  - name: small
    applies_to: {all: true}
    max_body_size: 1KiB
`
	front, up, obs := guardProxy(t, yaml, nil)
	// chunked hides a body's length from the gateway.
	type chunked struct{ io.Reader }
	tests := []struct {
		name    string
		body    io.Reader
		length  int64 // -1: chunked
		status  int
		reached bool
	}{
		{name: "within the limit", body: strings.NewReader(strings.Repeat("a", 1024)), length: 1024, status: 200, reached: true},
		{name: "Content-Length above the limit", body: strings.NewReader(strings.Repeat("a", 1025)), length: 1025, status: 413},
		{name: "chunked within the limit", body: chunked{strings.NewReader(strings.Repeat("a", 1000))}, length: -1, status: 200, reached: true},
		{name: "chunked above the limit", body: chunked{strings.NewReader(strings.Repeat("a", 64<<10))}, length: -1, status: 413},
		{name: "no body", length: 0, status: 200, reached: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := up.count()
			req := guardRequest(t, "POST", front.URL+"/upload", tt.body, map[string]string{"X-Case": tt.name})
			req.ContentLength = tt.length
			res, body := guardDo(t, req)
			if res.StatusCode != tt.status {
				t.Fatalf("status %d; want %d (body %s)", res.StatusCode, tt.status, body)
			}
			if tt.status == 413 {
				if want := guardErrorBody(413, "request body too large"); string(body) != want {
					t.Fatalf("body %q; want %q", body, want)
				}
			}
			if !tt.reached && tt.length > 0 && up.count() != before {
				t.Fatal("a body refused by its Content-Length reached the upstream")
			}
			if tt.reached {
				seen := up.seenCase(t, tt.name)
				if seen.BodyErr != nil || int64(len(seen.Body)) != max(tt.length, 0) && tt.length >= 0 {
					t.Fatalf("upstream got %d bytes, error %v", len(seen.Body), seen.BodyErr)
				}
			}
		})
	}
	if !obs.has("small/max_body_size/too_large") {
		t.Errorf("decisions %v lack too_large", obs.got)
	}
}

// TestBodyLimitMaxBytesError checks that a chunked body over the limit
// fails the reader with *http.MaxBytesError, the type the gateway maps to
// 413, and that the smallest of two limits holds.
func TestBodyLimitMaxBytesError(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var readErr error
	var n int
	final := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		mu.Lock()
		readErr, n = err, len(b)
		mu.Unlock()
	})
	front := guardFront(t, `
policies:
  - name: big
    applies_to: {all: true}
    max_body_size: 100
  - name: small
    applies_to: {all: true}
    max_body_size: 10
`, &guardObserver{}, final)
	req := guardRequest(t, "POST", front.URL, io.MultiReader(bytes.NewReader(make([]byte, 50))), nil)
	req.ContentLength = -1
	guardDo(t, req)
	mu.Lock()
	defer mu.Unlock()
	var mbe *http.MaxBytesError
	if !errors.As(readErr, &mbe) || mbe.Limit != 10 || n != 10 {
		t.Fatalf("read %d bytes, error %v; want 10 bytes and *http.MaxBytesError with limit 10", n, readErr)
	}
}

func TestGuardValidation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{
			name: "ip",
			yaml: `
policies:
  - name: a
    applies_to: {all: true}
    ip:
      allow:
        - 10.0.0.0/33
        - nope
        - 10.0.0.1/8
      deny: ["::1", "fe80::/ten"]
  - name: b
    applies_to: {all: true}
    ip: {}
`,
			want: []string{
				`p.yaml:7: policies[0].ip.allow[0]: "10.0.0.0/33" is not a CIDR prefix`,
				`p.yaml:8: policies[0].ip.allow[1]: "nope" is not an IP address or CIDR prefix`,
				`p.yaml:9: policies[0].ip.allow[2]: "10.0.0.1/8" has bits set beyond its /8; want 10.0.0.0/8`,
				`p.yaml:10: policies[0].ip.deny[1]: "fe80::/ten" is not a CIDR prefix`,
				`p.yaml:13: policies[1].ip: want at least one of allow, deny`,
			},
		},
		{
			name: "cors",
			yaml: `
policies:
  - name: a
    applies_to: {all: true}
    cors:
      allowed_origins:
        - "*"
        - https://a.example.com/
        - a.example.com
        - https://*.*.example.com
        - https://x*.example.com
        - https://user@a.example.com
        - HTTPS://a.example.com
        - https://a.example.com?x
      allow_credentials: true
      allowed_methods: [get, "GET", "BAD METHOD"]
      allowed_headers: ["X Bad", "*", X-Ok]
      exposed_headers: [X-Ok, "b@d"]
  - name: b
    applies_to: {all: true}
    cors:
      allowed_methods: [GET]
`,
			want: []string{
				`p.yaml:7: policies[0].cors.allowed_origins[0]: "*" cannot be used with allow_credentials: true (browsers refuse it); list the origins`,
				`p.yaml:8: policies[0].cors.allowed_origins[1]: "https://a.example.com/" is not an origin: an origin has no path (not even a trailing /); want "scheme://host[:port]" such as "https://shop.example.com", with at most one "*" as the first label of the host ("https://*.example.com"), or "*"`,
				`p.yaml:9: policies[0].cors.allowed_origins[2]: "a.example.com" is not an origin; want "scheme://host[:port]" such as "https://shop.example.com", with at most one "*" as the first label of the host ("https://*.example.com"), or "*"`,
				`p.yaml:10: policies[0].cors.allowed_origins[3]: "https://*.*.example.com" has a wildcard in the wrong place; want "scheme://host[:port]" such as "https://shop.example.com", with at most one "*" as the first label of the host ("https://*.example.com"), or "*"`,
				`p.yaml:11: policies[0].cors.allowed_origins[4]: "https://x*.example.com" has a wildcard in the wrong place; want "scheme://host[:port]" such as "https://shop.example.com", with at most one "*" as the first label of the host ("https://*.example.com"), or "*"`,
				`p.yaml:12: policies[0].cors.allowed_origins[5]: "https://user@a.example.com" is not an origin; want "scheme://host[:port]" such as "https://shop.example.com", with at most one "*" as the first label of the host ("https://*.example.com"), or "*"`,
				`p.yaml:13: policies[0].cors.allowed_origins[6]: "HTTPS://a.example.com" is not an origin; want "scheme://host[:port]" such as "https://shop.example.com", with at most one "*" as the first label of the host ("https://*.example.com"), or "*"`,
				`p.yaml:14: policies[0].cors.allowed_origins[7]: "https://a.example.com?x" is not an origin; want "scheme://host[:port]" such as "https://shop.example.com", with at most one "*" as the first label of the host ("https://*.example.com"), or "*"`,
				`p.yaml:16: policies[0].cors.allowed_methods[0]: "get" is not a method; want an upper-case HTTP method such as GET`,
				`p.yaml:16: policies[0].cors.allowed_methods[2]: "BAD METHOD" is not a method; want an upper-case HTTP method such as GET`,
				`p.yaml:17: policies[0].cors.allowed_headers[0]: "X Bad" is not a header name; want a name such as X-Request-Id, or "*"`,
				`p.yaml:18: policies[0].cors.exposed_headers[1]: "b@d" is not a header name; want a name such as X-Request-Id, or "*"`,
				`p.yaml:21: policies[1].cors.allowed_origins: required; want origins such as "https://shop.example.com", "https://*.example.com" or "*"`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			guardCheckErrors(t, tt.yaml, tt.want)
		})
	}
}

// TestGuardStepsNilWhenAbsent: a policy without a guard has no step for
// it; a chain of only other steps never touches the response writer.
func TestGuardStepsNilWhenAbsent(t *testing.T) {
	t.Parallel()
	set, err := guardCompile(t, `
policies:
  - name: p
    applies_to: {all: true}
    max_body_size: 1MiB
`, &Env{})
	if err != nil {
		t.Fatal(err)
	}
	steps := set.policies[0].steps
	if steps[0] != nil || steps[1] != nil || steps[2] == nil || steps[6] != nil {
		t.Fatalf("steps ip=%v cors=%v body=%v transform=%v; want only max_body_size", steps[0] != nil, steps[1] != nil, steps[2] != nil, steps[6] != nil)
	}
}
