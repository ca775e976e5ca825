package policies

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/meshgate/meshgate/config"
)

// authzTestClientHeader carries the client address the test's
// Env.ClientIP reports, so that sources can be tested over a real
// loopback listener.
const authzTestClientHeader = "X-Test-Client"

// authzRecorder collects what the step reports: decisions and log lines.
type authzRecorder struct {
	mu        sync.Mutex
	decisions []string
	logs      bytes.Buffer
}

func (a *authzRecorder) Decision(_ context.Context, policy, step, decision string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.decisions = append(a.decisions, policy+"/"+step+"/"+decision)
}

func (a *authzRecorder) Write(p []byte) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.logs.Write(p)
}

func (a *authzRecorder) snapshot() ([]string, string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.decisions...), a.logs.String()
}

// authzCompile compiles policy YAML the way a reload does.
func authzCompile(t testing.TB, yaml string, env *Env) (*Set, error) {
	t.Helper()
	return compileSources([]Source{{Name: "p.yaml", Dir: t.TempDir(), Data: []byte(yaml)}}, env, newResources(), false, false)
}

// authzChain compiles yaml and returns the chain of route r (service s)
// in front of an upstream that records whether it was reached. The
// identity of each request is what withIdentity builds from it, set
// right after the chain's entry, where authn would have set it.
func authzChain(t testing.TB, yaml string, withIdentity func(*http.Request) Identity) (http.Handler, *atomic.Int64, *authzRecorder) {
	t.Helper()
	rec := &authzRecorder{}
	env := &Env{
		Logger:   slog.New(slog.NewTextHandler(rec, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Observer: rec,
		ClientIP: func(r *http.Request) netip.Addr {
			if a, err := netip.ParseAddr(r.Header.Get(authzTestClientHeader)); err == nil {
				return a
			}
			return RemoteIP(r)
		},
	}
	set, err := authzCompile(t, yaml, env)
	if err != nil {
		t.Fatalf("compiling policies: %v", err)
	}
	var reached atomic.Int64
	upstream := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "upstream")
	})
	h := set.Chain(RouteInfo{Name: "r", Service: "s"}, upstream)
	e, ok := h.(*entry)
	if !ok {
		t.Fatalf("chain is %T; want *entry (no policy applied?)", h)
	}
	if withIdentity != nil {
		next := e.next
		e.next = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			stateOf(r).identity = withIdentity(r)
			next.ServeHTTP(w, r)
		})
	}
	return h, &reached, rec
}

// authzPolicyYAML wraps an authz block (indented by four spaces) in a
// policy that applies to every request.
func authzPolicyYAML(authz string) string {
	return "policies:\n  - name: pol\n    applies_to: {all: true}\n    authz:\n" + authz
}

// identityFromHeaders builds the test identity from X-Test-* headers:
// X-Test-Method, X-Test-Principal and X-Test-Claims (JSON).
func identityFromHeaders(r *http.Request) Identity {
	id := Identity{Method: r.Header.Get("X-Test-Method"), Principal: r.Header.Get("X-Test-Principal")}
	if c := r.Header.Get("X-Test-Claims"); c != "" {
		if err := json.Unmarshal([]byte(c), &id.Claims); err != nil {
			panic(err)
		}
	}
	return id
}

// authzRequest is one request of a table case.
type authzRequest struct {
	method, path, host, client string
	query                      string
	headers                    http.Header
	claims                     string // JSON
	principal, authMethod      string
}

func (q authzRequest) do(t *testing.T, srv *httptest.Server) *http.Response {
	t.Helper()
	method := q.method
	if method == "" {
		method = http.MethodGet
	}
	u := srv.URL + q.path
	if q.query != "" {
		u += "?" + q.query
	}
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range q.headers {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if q.host != "" {
		req.Host = q.host
	}
	if q.client != "" {
		req.Header.Set(authzTestClientHeader, q.client)
	}
	if q.claims != "" {
		req.Header.Set("X-Test-Claims", q.claims)
	}
	if q.principal != "" {
		req.Header.Set("X-Test-Principal", q.principal)
	}
	if q.authMethod != "" {
		req.Header.Set("X-Test-Method", q.authMethod)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// checkAuthzResponse asserts the decision: the upstream reached and 200,
// or 403 with the contract's JSON body and the upstream not reached.
func checkAuthzResponse(t *testing.T, resp *http.Response, reached int64, wantAllow bool) {
	t.Helper()
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if wantAllow {
		if resp.StatusCode != http.StatusOK || reached != 1 || string(body) != "upstream" {
			t.Fatalf("want allowed (200 from upstream), got %d %q, upstream reached %d times", resp.StatusCode, body, reached)
		}
		return
	}
	if resp.StatusCode != http.StatusForbidden || reached != 0 {
		t.Fatalf("want 403 without reaching upstream, got %d %q, upstream reached %d times", resp.StatusCode, body, reached)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q; want application/json", ct)
	}
	var got struct {
		Error  string `json:"error"`
		Status int    `json:"status"`
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("body %q is not JSON: %v", body, err)
	}
	if got.Error != "forbidden by policy" || got.Status != http.StatusForbidden {
		t.Errorf("body %q; want error \"forbidden by policy\", status 403", body)
	}
}

func TestAuthzRules(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		authz string
		req   authzRequest
		allow bool
		rule  string // the deciding rule named in the deny log; "" for allow
		// errorDecision: a when failed to evaluate on the way.
		errorDecision bool
	}{
		{
			name:  "empty rules deny everything",
			authz: "      rules: []\n",
			req:   authzRequest{path: "/x"},
			rule:  "default",
		},
		{
			name:  "default allow with no rule matching",
			authz: "      default: allow\n      rules:\n        - {name: admin, action: deny, path_prefixes: [/admin]}\n",
			req:   authzRequest{path: "/public"},
			allow: true,
		},
		{
			name:  "deny rule under default allow",
			authz: "      default: allow\n      rules:\n        - {name: admin, action: deny, path_prefixes: [/admin]}\n",
			req:   authzRequest{path: "/admin/users"},
			rule:  "admin",
		},
		{
			name:  "method matches",
			authz: "      rules:\n        - {name: reads, methods: [GET, HEAD]}\n",
			req:   authzRequest{method: "GET", path: "/x"},
			allow: true,
		},
		{
			name:  "method does not match",
			authz: "      rules:\n        - {name: reads, methods: [GET, HEAD]}\n",
			req:   authzRequest{method: "DELETE", path: "/x"},
			rule:  "default",
		},
		{
			name:  "exact path matches",
			authz: "      rules:\n        - {name: health, paths: [/healthz]}\n",
			req:   authzRequest{path: "/healthz"},
			allow: true,
		},
		{
			name:  "exact path is not a prefix",
			authz: "      rules:\n        - {name: health, paths: [/healthz]}\n",
			req:   authzRequest{path: "/healthz/deep"},
			rule:  "default",
		},
		{
			name:  "prefix matches itself",
			authz: "      rules:\n        - {name: admin, path_prefixes: [/admin]}\n",
			req:   authzRequest{path: "/admin"},
			allow: true,
		},
		{
			name:  "prefix matches below",
			authz: "      rules:\n        - {name: admin, path_prefixes: [/admin]}\n",
			req:   authzRequest{path: "/admin/users/1"},
			allow: true,
		},
		{
			name:  "prefix stops at segment boundary",
			authz: "      rules:\n        - {name: admin, path_prefixes: [/admin]}\n",
			req:   authzRequest{path: "/administrator"},
			rule:  "default",
		},
		{
			name:  "prefix with trailing slash",
			authz: "      rules:\n        - {name: admin, path_prefixes: [/admin/]}\n",
			req:   authzRequest{path: "/admin/x"},
			allow: true,
		},
		{
			name:  "paths are case-sensitive",
			authz: "      default: allow\n      rules:\n        - {name: admin, action: deny, path_prefixes: [/admin]}\n",
			req:   authzRequest{path: "/ADMIN"},
			allow: true,
		},
		{
			name:  "host exact, request with port and other case",
			authz: "      rules:\n        - {name: api, hosts: [api.example.com]}\n",
			req:   authzRequest{path: "/", host: "API.Example.com:8443"},
			allow: true,
		},
		{
			name:  "host other name",
			authz: "      rules:\n        - {name: api, hosts: [api.example.com]}\n",
			req:   authzRequest{path: "/", host: "www.example.com"},
			rule:  "default",
		},
		{
			name:  "host wildcard matches subdomain",
			authz: "      rules:\n        - {name: sub, hosts: ['*.example.com']}\n",
			req:   authzRequest{path: "/", host: "a.b.example.com:80"},
			allow: true,
		},
		{
			name:  "host wildcard does not match apex",
			authz: "      rules:\n        - {name: sub, hosts: ['*.example.com']}\n",
			req:   authzRequest{path: "/", host: "example.com"},
			rule:  "default",
		},
		{
			name:  "source in CIDR",
			authz: "      rules:\n        - {name: internal, sources: [10.0.0.0/8, '::1']}\n",
			req:   authzRequest{path: "/", client: "10.1.2.3"},
			allow: true,
		},
		{
			name:  "source single IPv6 address",
			authz: "      rules:\n        - {name: internal, sources: [10.0.0.0/8, '::1']}\n",
			req:   authzRequest{path: "/", client: "::1"},
			allow: true,
		},
		{
			name:  "source outside CIDR",
			authz: "      rules:\n        - {name: internal, sources: [10.0.0.0/8]}\n",
			req:   authzRequest{path: "/", client: "11.0.0.1"},
			rule:  "default",
		},
		{
			name:  "every field must match: method ok, path not",
			authz: "      rules:\n        - {name: both, methods: [GET], path_prefixes: [/api]}\n",
			req:   authzRequest{method: "GET", path: "/web"},
			rule:  "default",
		},
		{
			name:  "first match wins: deny before allow",
			authz: "      rules:\n        - {name: no-delete, action: deny, methods: [DELETE]}\n        - {name: api, path_prefixes: [/api]}\n",
			req:   authzRequest{method: "DELETE", path: "/api/x"},
			rule:  "no-delete",
		},
		{
			name:  "first match wins: allow before deny",
			authz: "      rules:\n        - {name: api, path_prefixes: [/api]}\n        - {name: no-delete, action: deny, methods: [DELETE]}\n",
			req:   authzRequest{method: "DELETE", path: "/api/x"},
			allow: true,
		},
		{
			name:  "catch-all deny last",
			authz: "      default: allow\n      rules:\n        - {name: health, paths: [/healthz]}\n        - {name: rest, action: deny}\n",
			req:   authzRequest{path: "/other"},
			rule:  "rest",
		},
		{
			name:  "CEL claim matches",
			authz: "      rules:\n        - name: admins\n          when: claims.role == \"admin\" && request.method == \"GET\"\n",
			req:   authzRequest{path: "/", claims: `{"role":"admin"}`},
			allow: true,
		},
		{
			name:  "CEL claim other value",
			authz: "      rules:\n        - name: admins\n          when: claims.role == \"admin\"\n",
			req:   authzRequest{path: "/", claims: `{"role":"user"}`},
			rule:  "default",
		},
		{
			name:          "CEL missing claim in a deny rule: fails closed, the rule matches",
			authz:         "      default: allow\n      rules:\n        - name: non-admins\n          action: deny\n          when: claims.role != \"admin\"\n        - name: rest\n",
			req:           authzRequest{path: "/", claims: `{"sub":"bob"}`},
			rule:          "non-admins",
			errorDecision: true,
		},
		{
			name:          "CEL no JWT at all: claims is empty, missing key does not match",
			authz:         "      rules:\n        - name: admins\n          when: claims.role == \"admin\"\n",
			req:           authzRequest{path: "/"},
			rule:          "default",
			errorDecision: true,
		},
		{
			name:  "CEL has() guards a missing claim",
			authz: "      default: allow\n      rules:\n        - name: non-admins\n          action: deny\n          when: '!has(claims.role) || claims.role != \"admin\"'\n",
			req:   authzRequest{path: "/", claims: `{"sub":"bob"}`},
			rule:  "non-admins",
		},
		{
			name:  "CEL list claim",
			authz: "      rules:\n        - name: groups\n          when: '\"ops\" in claims.groups'\n",
			req:   authzRequest{path: "/", claims: `{"groups":["dev","ops"]}`},
			allow: true,
		},
		{
			name:  "CEL header, lower-case name",
			authz: "      rules:\n        - name: team\n          when: request.headers[\"x-team\"] == \"blue\"\n",
			req:   authzRequest{path: "/", headers: http.Header{"X-Team": {"blue"}}},
			allow: true,
		},
		{
			name:  "CEL repeated header joined",
			authz: "      rules:\n        - name: tags\n          when: request.headers[\"x-tag\"] == \"a, b\"\n",
			req:   authzRequest{path: "/", headers: http.Header{"X-Tag": {"a", "b"}}},
			allow: true,
		},
		{
			name:  "CEL header presence",
			authz: "      rules:\n        - name: team\n          when: '\"x-team\" in request.headers'\n",
			req:   authzRequest{path: "/"},
			rule:  "default",
		},
		{
			name:  "CEL query first value",
			authz: "      rules:\n        - name: debug\n          when: request.query[\"debug\"] == \"1\"\n",
			req:   authzRequest{path: "/", query: "debug=1&debug=2"},
			allow: true,
		},
		{
			name:  "CEL auth principal and method",
			authz: "      rules:\n        - name: alice\n          when: auth.principal == \"alice\" && auth.method == \"api_key\"\n",
			req:   authzRequest{path: "/", principal: "alice", authMethod: "api_key"},
			allow: true,
		},
		{
			name:  "CEL anonymous has empty principal",
			authz: "      rules:\n        - name: known\n          when: auth.principal != \"\"\n",
			req:   authzRequest{path: "/"},
			rule:  "default",
		},
		{
			name:  "CEL host, source, route, scheme, path",
			authz: "      rules:\n        - name: all\n          when: >-\n            request.host == \"api.example.com\" && source.address == \"10.0.0.7\" &&\n            route.name == \"r\" && route.service == \"s\" && request.scheme == \"http\" &&\n            request.path.startsWith(\"/v1/\")\n",
			req:   authzRequest{path: "/v1/items", host: "API.example.com:8080", client: "10.0.0.7"},
			allow: true,
		},
		{
			name:  "CEL combined with fields: both must hold",
			authz: "      rules:\n        - name: admins-get\n          methods: [GET]\n          when: claims.role == \"admin\"\n",
			req:   authzRequest{method: "POST", path: "/", claims: `{"role":"admin"}`},
			rule:  "default",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h, reached, rec := authzChain(t, authzPolicyYAML(tt.authz), identityFromHeaders)
			srv := httptest.NewServer(h)
			defer srv.Close()
			resp := tt.req.do(t, srv)
			checkAuthzResponse(t, resp, reached.Load(), tt.allow)

			decisions, logs := rec.snapshot()
			want := "pol/authz/deny"
			if tt.allow {
				want = "pol/authz/allow"
			}
			if len(decisions) == 0 || decisions[len(decisions)-1] != want {
				t.Errorf("decisions %q; want the last to be %q", decisions, want)
			}
			hasError := strings.Contains(strings.Join(decisions, ","), "pol/authz/error")
			if hasError != tt.errorDecision {
				t.Errorf("decisions %q: error decision %t; want %t", decisions, hasError, tt.errorDecision)
			}
			if tt.errorDecision && !strings.Contains(logs, "level=DEBUG") {
				t.Errorf("no debug log of the failed condition in %q", logs)
			}
			denied := strings.Contains(logs, "request denied by authz policy")
			if denied == tt.allow {
				t.Errorf("deny log present %t; want %t:\n%s", denied, !tt.allow, logs)
			}
			if !tt.allow && !strings.Contains(logs, "policy=pol rule="+tt.rule+" ") {
				t.Errorf("deny log does not name policy pol and rule %q:\n%s", tt.rule, logs)
			}
		})
	}
}

// TestAuthzSpanAndLog checks the span attributes of a decision and the
// fields of the deny log line.
func TestAuthzSpanAndLog(t *testing.T) {
	t.Parallel()
	h, reached, rec := authzChain(t, authzPolicyYAML("      rules:\n        - {name: no-delete, action: deny, methods: [DELETE]}\n        - {name: rest}\n"), nil)
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	traced := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, span := tp.Tracer("test").Start(r.Context(), r.Method)
		defer span.End()
		h.ServeHTTP(w, r.WithContext(ctx))
	})
	srv := httptest.NewServer(traced)
	defer srv.Close()

	resp := authzRequest{method: "DELETE", path: "/items/1", client: "192.0.2.9"}.do(t, srv)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("status %d; want 403", resp.StatusCode)
	}
	resp = authzRequest{method: "GET", path: "/items/1"}.do(t, srv)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || reached.Load() != 1 {
		t.Fatalf("GET: status %d, reached %d; want 200, 1", resp.StatusCode, reached.Load())
	}

	spans := sr.Ended()
	if len(spans) != 2 {
		t.Fatalf("%d spans; want 2", len(spans))
	}
	// The 403 body carries the trace ID of the request's span.
	var got struct {
		TraceID string `json:"trace_id"`
	}
	if err := json.Unmarshal(body, &got); err != nil || got.TraceID != spans[0].SpanContext().TraceID().String() {
		t.Errorf("body %q: trace_id; want %s", body, spans[0].SpanContext().TraceID())
	}
	for i, want := range []map[string]string{
		{"meshgate.policy.name": "pol", "meshgate.policy.step": "authz", "meshgate.authz.rule": "no-delete", "meshgate.authz.decision": "deny", "meshgate.policy.decision": "deny"},
		{"meshgate.policy.name": "pol", "meshgate.policy.step": "authz", "meshgate.authz.rule": "rest", "meshgate.authz.decision": "allow", "meshgate.policy.decision": "allow"},
	} {
		attrs := map[string]string{}
		for _, kv := range spanFacts(spans[i]) {
			attrs[string(kv.Key)] = kv.Value.Emit()
		}
		for k, v := range want {
			if attrs[k] != v {
				t.Errorf("span %d: %s = %q; want %q (all: %v)", i, k, attrs[k], v, attrs)
			}
		}
	}

	_, logs := rec.snapshot()
	for _, want := range []string{"level=INFO", "policy=pol", "rule=no-delete", "method=DELETE", "path=/items/1", "client=192.0.2.9"} {
		if !strings.Contains(logs, want) {
			t.Errorf("deny log lacks %q:\n%s", want, logs)
		}
	}
	if strings.Count(logs, "request denied") != 1 {
		t.Errorf("want exactly one deny log line (allow is not logged):\n%s", logs)
	}
}

// TestAuthzNoLogger checks that a chain whose Env has no logger or
// observer still decides.
func TestAuthzNoLogger(t *testing.T) {
	t.Parallel()
	set, err := authzCompile(t, authzPolicyYAML("      rules:\n        - name: c\n          when: claims.role == \"x\"\n"), &Env{})
	if err != nil {
		t.Fatal(err)
	}
	var reached atomic.Int64
	h := set.Chain(RouteInfo{Name: "r", Service: "s"}, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached.Add(1) }))
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp := authzRequest{path: "/"}.do(t, srv)
	checkAuthzResponse(t, resp, reached.Load(), false)
}

// TestAuthzDefaults checks that defaults are written into the spec, for
// /admin/policies.
func TestAuthzDefaults(t *testing.T) {
	t.Parallel()
	set, err := authzCompile(t, authzPolicyYAML("      rules:\n        - {name: a, methods: [GET]}\n        - {name: b, action: deny}\n"), &Env{})
	if err != nil {
		t.Fatal(err)
	}
	spec := set.policies[0].spec.Authz
	if spec.Default != "deny" || spec.Rules[0].Action != "allow" || spec.Rules[1].Action != "deny" {
		t.Errorf("spec after compile: default %q, actions %q, %q; want deny, allow, deny", spec.Default, spec.Rules[0].Action, spec.Rules[1].Action)
	}
}

// authzErrors compiles yaml and returns its problems, one string each.
func authzErrors(t *testing.T, yaml string) []string {
	t.Helper()
	_, err := authzCompile(t, yaml, &Env{})
	if err == nil {
		t.Fatal("compiled without error; want problems")
	}
	var errs config.Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error %v is %T; want config.Errors", err, err)
	}
	out := make([]string, len(errs))
	for i, e := range errs {
		out[i] = e.Error()
	}
	return out
}

func TestAuthzConfigErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		authz string
		want  []string
	}{
		{
			name:  "bad default",
			authz: "      default: maybe\n      rules: []\n",
			want:  []string{`p.yaml:5: policies[0].authz.default: "maybe" is not a decision; want deny or allow`},
		},
		{
			name:  "rule without name",
			authz: "      rules:\n        - methods: [GET]\n",
			want:  []string{`p.yaml:6: policies[0].authz.rules[0].name: required`},
		},
		{
			name:  "invalid rule name",
			authz: "      rules:\n        - name: 'has space'\n",
			want:  []string{`p.yaml:6: policies[0].authz.rules[0].name: "has space" is not a valid name; want letters, digits, '.', '_' and '-', starting with a letter or digit`},
		},
		{
			name:  "duplicate rule name",
			authz: "      rules:\n        - name: a\n          methods: [GET]\n        - name: a\n          methods: [POST]\n",
			want:  []string{`p.yaml:8: policies[0].authz.rules[1].name: duplicate rule name "a"; first defined at p.yaml:6`},
		},
		{
			name:  "bad action",
			authz: "      rules:\n        - name: a\n          action: permit\n",
			want:  []string{`p.yaml:7: policies[0].authz.rules[0].action: "permit" is not an action; want allow or deny`},
		},
		{
			name:  "bad source",
			authz: "      rules:\n        - name: a\n          sources: [10.0.0.1/8, nonsense]\n",
			want: []string{
				`p.yaml:7: policies[0].authz.rules[0].sources[0]: "10.0.0.1/8" has bits set beyond its /8; want 10.0.0.0/8`,
				`p.yaml:7: policies[0].authz.rules[0].sources[1]: "nonsense" is not an IP address or CIDR prefix`,
			},
		},
		{
			name:  "bad method",
			authz: "      rules:\n        - name: a\n          methods: [get]\n",
			want:  []string{`p.yaml:7: policies[0].authz.rules[0].methods[0]: "get" is not a method; want an upper-case HTTP method such as GET`},
		},
		{
			name:  "bad path",
			authz: "      rules:\n        - name: a\n          paths: [admin]\n",
			want:  []string{`p.yaml:7: policies[0].authz.rules[0].paths[0]: "admin" must start with /`},
		},
		{
			name:  "rule after catch-all",
			authz: "      rules:\n        - name: everything\n        - name: never\n          methods: [GET]\n",
			want:  []string{`p.yaml:7: policies[0].authz.rules[1]: rule "never" can never match: rule "everything" before it has no conditions and matches every request`},
		},
		{
			name:  "a rule whose only condition is invalid is not a catch-all",
			authz: "      rules:\n        - name: a\n          methods: [get]\n        - name: b\n",
			want:  []string{`p.yaml:7: policies[0].authz.rules[0].methods[0]: "get" is not a method; want an upper-case HTTP method such as GET`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := authzErrors(t, authzPolicyYAML(tt.authz))
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// TestAuthzGuardedByAppliesTo checks that an authz policy applies only to
// the requests its applies_to selects.
func TestAuthzGuardedByAppliesTo(t *testing.T) {
	t.Parallel()
	yaml := "policies:\n  - name: pol\n    applies_to: {path_prefixes: [/admin]}\n    authz:\n      rules: []\n"
	h, reached, _ := authzChain(t, yaml, nil)
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp := authzRequest{path: "/admin/x"}.do(t, srv)
	checkAuthzResponse(t, resp, reached.Load(), false)
	resp = authzRequest{path: "/public"}.do(t, srv)
	checkAuthzResponse(t, resp, reached.Load(), true)
}

// BenchmarkAuthzCEL measures one authz decision with a CEL rule, as a
// request with a JWT would take it.
func BenchmarkAuthzCEL(b *testing.B) {
	set, err := authzCompile(b, authzPolicyYAML("      rules:\n        - name: admins\n          when: claims.role == \"admin\" && request.method == \"GET\"\n"), &Env{})
	if err != nil {
		b.Fatal(err)
	}
	// The step alone, after the chain's entry and authn: the state is
	// built once, as those steps would have.
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	h := set.policies[0].steps[4](ok)
	st := &requestState{
		route:    RouteInfo{Name: "r", Service: "s"},
		identity: Identity{Method: "jwt", Principal: "alice", Claims: map[string]any{"sub": "alice", "role": "admin"}},
		clientIP: netip.MustParseAddr("10.0.0.1"),
		env:      set.env,
	}
	req := httptest.NewRequest(http.MethodGet, "http://api.example.com/orders/1", nil)
	req = req.WithContext(context.WithValue(req.Context(), stateKey{}, st))
	w := &authzDiscardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		w.status = 0
		h.ServeHTTP(w, req)
		if w.status != http.StatusNoContent {
			b.Fatalf("status %d; want 204", w.status)
		}
	}
}

// authzDiscardWriter is a ResponseWriter that keeps only the status.
type authzDiscardWriter struct {
	h      http.Header
	status int
}

func (w *authzDiscardWriter) Header() http.Header         { return w.h }
func (w *authzDiscardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *authzDiscardWriter) WriteHeader(s int)           { w.status = s }
