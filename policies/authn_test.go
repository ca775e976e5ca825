package policies

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/internal/testproc"
)

// authnNow is the clock of the authn tests.
var authnNow = time.Unix(1_700_000_000, 0)

// authnEnv returns an Env with the test clock and a logger into buf (nil:
// discard).
func authnEnv(buf *testproc.Output) *Env {
	var lg *slog.Logger
	if buf != nil {
		lg = slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	} else {
		lg = slog.New(slog.DiscardHandler)
	}
	return &Env{Logger: lg, Now: func() time.Time { return authnNow }}
}

// authnCompile compiles one policy file in dir (written with files) and
// closes its resources when the test ends.
func authnCompile(t *testing.T, dir, yaml string, env *Env, files map[string]string) (*Set, error) {
	t.Helper()
	if dir == "" && len(files) > 0 {
		t.Fatal("files need a dir")
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if env == nil {
		env = authnEnv(nil)
	}
	res := newResources()
	t.Cleanup(func() {
		if err := res.close(); err != nil {
			t.Errorf("closing resources: %v", err)
		}
	})
	return compileSources([]Source{{Name: "p.yaml", Dir: dir, Data: []byte(yaml)}}, env, res, false, false)
}

// authnChain compiles the policy and returns its chain for route r in
// front of final (nil: authnEcho).
func authnChain(t *testing.T, yaml string, env *Env, files map[string]string, final http.Handler) http.Handler {
	t.Helper()
	set, err := authnCompile(t, t.TempDir(), yaml, env, files)
	if err != nil {
		t.Fatalf("compiling:\n%v", err)
	}
	if final == nil {
		final = authnEcho()
	}
	return set.Chain(RouteInfo{Name: "r", Service: "s"}, final)
}

// authnSeen is what authnEcho reports about the request it got.
type authnSeen struct {
	Method    string              `json:"method"`
	Principal string              `json:"principal"`
	Claims    map[string]any      `json:"claims"`
	Header    map[string][]string `json:"header"`
	RawQuery  string              `json:"raw_query"`
}

// authnEcho answers 200 with the identity and the request as it reached
// it.
func authnEcho() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := stateOf(r).identity
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(authnSeen{Method: id.Method, Principal: id.Principal, Claims: id.Claims, Header: r.Header, RawQuery: r.URL.RawQuery})
	})
}

// authnDo sends a request through h and returns the recorder.
func authnDo(h http.Handler, target string, header http.Header) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, target, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// authnCheck asserts a response's status, WWW-Authenticate values and
// JSON error message (for a 401).
func authnCheck(t *testing.T, rec *httptest.ResponseRecorder, status int, challenges []string, msg string) {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("status %d, want %d; body %s", rec.Code, status, rec.Body)
	}
	got := rec.Header().Values("WWW-Authenticate")
	if strings.Join(got, "\n") != strings.Join(challenges, "\n") {
		t.Errorf("WWW-Authenticate:\n%q\nwant\n%q", got, challenges)
	}
	if status == http.StatusOK {
		return
	}
	var body struct {
		Error  string `json:"error"`
		Status int    `json:"status"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("body %q: %v", rec.Body, err)
	}
	if body.Error != msg || body.Status != status {
		t.Errorf("body %+v, want error %q status %d", body, msg, status)
	}
	if strings.Contains(rec.Body.String(), "eyJ") {
		t.Errorf("the body contains a token: %s", rec.Body)
	}
}

// authnSeenOf decodes what authnEcho saw.
func authnSeenOf(t *testing.T, body []byte) authnSeen {
	t.Helper()
	var s authnSeen
	if err := json.Unmarshal(body, &s); err != nil {
		t.Fatalf("decoding %q: %v", body, err)
	}
	return s
}

const (
	authnKeyCI    = "ci-secret-key-0123456789"
	authnKeyAdmin = "admin-secret-key-9876543210"
)

var authnAPIKeysYAML = `policies:
  - name: keys
    applies_to: {all: true}
    authn:
      api_keys:
        query: api_key
        forward_name_header: X-Key-Name
        keys:
          - name: ci
            sha256: ` + HashAPIKey(authnKeyCI) + `
          - name: admin
            sha256: ` + strings.ToUpper(HashAPIKey(authnKeyAdmin)) + `
`

func TestHashAPIKey(t *testing.T) {
	t.Parallel()
	// printf abc | sha256sum
	if got, want := HashAPIKey("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"; got != want {
		t.Errorf("HashAPIKey(abc) = %s, want %s", got, want)
	}
}

func TestAuthnAPIKeys(t *testing.T) {
	t.Parallel()
	h := authnChain(t, authnAPIKeysYAML, nil, nil, nil)
	challenge := []string{`APIKey realm="meshgate", header="X-API-Key", query="api_key"`}
	for _, tc := range []struct {
		name      string
		target    string
		header    http.Header
		status    int
		msg       string
		principal string
	}{
		{name: "missing", target: "/", status: 401, msg: "missing credentials"},
		{name: "wrong key in header", target: "/", header: http.Header{"X-Api-Key": {"nope"}}, status: 401, msg: "invalid API key"},
		{name: "empty key in header", target: "/", header: http.Header{"X-Api-Key": {""}}, status: 401, msg: "invalid API key"},
		{name: "wrong key in query", target: "/?api_key=nope", status: 401, msg: "invalid API key"},
		{name: "two keys in header", target: "/", header: http.Header{"X-Api-Key": {authnKeyCI, authnKeyCI}}, status: 401, msg: "more than one API key"},
		{name: "hash instead of key", target: "/", header: http.Header{"X-Api-Key": {HashAPIKey(authnKeyCI)}}, status: 401, msg: "invalid API key"},
		{name: "right key in header", target: "/", header: http.Header{"X-Api-Key": {authnKeyCI}}, status: 200, principal: "ci"},
		{name: "upper-case hash in the policy", target: "/", header: http.Header{"X-Api-Key": {authnKeyAdmin}}, status: 200, principal: "admin"},
		{name: "right key in query", target: "/?x=1&api_key=" + url.QueryEscape(authnKeyAdmin), status: 200, principal: "admin"},
		{name: "escaped query key name", target: "/?api%5Fkey=" + authnKeyCI, status: 200, principal: "ci"},
		// The header is tried first; a wrong one is refused whatever the
		// query says.
		{name: "wrong header, right query", target: "/?api_key=" + authnKeyCI, header: http.Header{"X-Api-Key": {"nope"}}, status: 401, msg: "invalid API key"},
		{name: "other parameter name", target: "/?apikey=" + authnKeyCI, status: 401, msg: "missing credentials"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := authnDo(h, tc.target, tc.header)
			if tc.status != 200 {
				authnCheck(t, rec, tc.status, challenge, tc.msg)
				return
			}
			authnCheck(t, rec, 200, nil, "")
			seen := authnSeenOf(t, rec.Body.Bytes())
			if seen.Method != "api_key" || seen.Principal != tc.principal {
				t.Errorf("identity %s/%s, want api_key/%s", seen.Method, seen.Principal, tc.principal)
			}
			if got := seen.Header["X-Key-Name"]; len(got) != 1 || got[0] != tc.principal {
				t.Errorf("X-Key-Name %q, want %q", got, tc.principal)
			}
			if _, ok := seen.Header["X-Api-Key"]; ok || strings.Contains(seen.RawQuery, "api") {
				t.Errorf("the key went upstream: header %v, query %q", seen.Header, seen.RawQuery)
			}
		})
	}
}

// TestAuthnBothKinds: valid credentials of either kind pass; invalid ones
// of either kind are refused even when the other kind is valid.
func TestAuthnBothKinds(t *testing.T) {
	t.Parallel()
	k := authnTestKeys(t)
	yaml := `policies:
  - name: both
    applies_to: {all: true}
    authn:
      jwt:
        issuer: ` + authnIssuer + `
        jwks_file: keys.json
      api_keys:
        keys:
          - {name: ci, sha256: ` + HashAPIKey(authnKeyCI) + `}
`
	h := authnChain(t, yaml, nil, map[string]string{"keys.json": k.jwks(t, k.rsaA)}, nil)
	good := k.sign(t, k.rsaA, authnClaims(nil))
	expired := k.sign(t, k.rsaA, authnClaims(map[string]any{"exp": authnNow.Add(-time.Hour).Unix()}))
	apiCh := `APIKey realm="meshgate", header="X-API-Key"`
	for _, tc := range []struct {
		name       string
		header     http.Header
		status     int
		challenges []string
		msg        string
		method     string
	}{
		{name: "none", status: 401, challenges: []string{`Bearer realm="meshgate"`, apiCh}, msg: "missing credentials"},
		{name: "key", header: http.Header{"X-Api-Key": {authnKeyCI}}, status: 200, method: "api_key"},
		{name: "token", header: http.Header{"Authorization": {"Bearer " + good}}, status: 200, method: "jwt"},
		{name: "key and token", header: http.Header{"Authorization": {"Bearer " + good}, "X-Api-Key": {authnKeyCI}}, status: 200, method: "jwt"},
		{name: "good key, expired token", header: http.Header{"Authorization": {"Bearer " + expired}, "X-Api-Key": {authnKeyCI}}, status: 401,
			challenges: []string{`Bearer realm="meshgate", error="invalid_token", error_description="token expired"`, apiCh}, msg: "token expired"},
		{name: "bad key, good token", header: http.Header{"Authorization": {"Bearer " + good}, "X-Api-Key": {"nope"}}, status: 401,
			challenges: []string{`Bearer realm="meshgate"`, apiCh}, msg: "invalid API key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := authnDo(h, "/", tc.header)
			authnCheck(t, rec, tc.status, tc.challenges, tc.msg)
			if tc.status == 200 {
				if seen := authnSeenOf(t, rec.Body.Bytes()); seen.Method != tc.method {
					t.Errorf("method %q, want %q", seen.Method, tc.method)
				}
			}
		})
	}
}

// TestAuthnOptional: without credentials the request passes as
// anonymous, with the client's own identity headers removed; invalid
// credentials are still refused.
func TestAuthnOptional(t *testing.T) {
	t.Parallel()
	k := authnTestKeys(t)
	yaml := `policies:
  - name: opt
    applies_to: {all: true}
    authn:
      optional: true
      jwt:
        issuer: ` + authnIssuer + `
        jwks_file: keys.json
        forward_claims: {sub: X-User-Id}
`
	h := authnChain(t, yaml, nil, map[string]string{"keys.json": k.jwks(t, k.rsaA)}, nil)

	rec := authnDo(h, "/", http.Header{"X-User-Id": {"admin"}})
	authnCheck(t, rec, 200, nil, "")
	seen := authnSeenOf(t, rec.Body.Bytes())
	if seen.Method != "" || seen.Principal != "" || seen.Claims != nil {
		t.Errorf("anonymous identity %+v", seen)
	}
	if v, ok := seen.Header["X-User-Id"]; ok {
		t.Errorf("the client's X-User-Id %q went upstream", v)
	}

	rec = authnDo(h, "/", http.Header{"Authorization": {"Bearer not.a.token"}})
	authnCheck(t, rec, 401, []string{`Bearer realm="meshgate", error="invalid_token", error_description="malformed token"`}, "malformed token")

	rec = authnDo(h, "/", http.Header{"Authorization": {"Bearer " + k.sign(t, k.rsaA, authnClaims(nil))}, "X-User-Id": {"admin"}})
	authnCheck(t, rec, 200, nil, "")
	if seen := authnSeenOf(t, rec.Body.Bytes()); seen.Method != "jwt" || seen.Principal != "alice" || strings.Join(seen.Header["X-User-Id"], ",") != "alice" {
		t.Errorf("identity %s/%s, X-User-Id %q; want jwt/alice, alice", seen.Method, seen.Principal, seen.Header["X-User-Id"])
	}
}

// TestAuthnForwarding runs a real upstream behind a reverse proxy behind
// the chain: it must see the claims as headers and no credentials.
func TestAuthnForwarding(t *testing.T) {
	t.Parallel()
	k := authnTestKeys(t)
	upstream := httptest.NewServer(authnEcho())
	t.Cleanup(upstream.Close)
	u, _ := url.Parse(upstream.URL)
	proxy := httputil.NewSingleHostReverseProxy(u)

	yaml := `policies:
  - name: fwd
    applies_to: {path_prefixes: [/api]}
    authn:
      jwt:
        issuer: ` + authnIssuer + `
        jwks_file: keys.json
        query: access_token
        forward_claims:
          sub: X-User-Id
          roles: X-Roles
          n: X-N
          admin: X-Admin
          email: X-Email
          bad: X-Bad
      api_keys:
        query: api_key
        forward_name_header: X-Key-Name
        keys:
          - {name: ci, sha256: ` + HashAPIKey(authnKeyCI) + `}
  - name: keep
    applies_to: {path_prefixes: [/keep]}
    authn:
      forward_credentials: true
      jwt:
        issuer: ` + authnIssuer + `
        jwks_file: keys.json
`
	front := httptest.NewServer(authnChain(t, yaml, nil, map[string]string{"keys.json": k.jwks(t, k.rsaA)}, proxy))
	t.Cleanup(front.Close)

	tok := k.sign(t, k.rsaA, authnClaims(map[string]any{
		"roles": []string{"reader", "writer"},
		"n":     42,
		"admin": true,
		"bad":   "a\nb",
	}))
	get := func(t *testing.T, path string, header http.Header) authnSeen {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, front.URL+path, nil)
		for k, v := range header {
			req.Header[k] = v
		}
		resp, err := front.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, buf.String())
		}
		return authnSeenOf(t, buf.Bytes())
	}
	one := func(s authnSeen, h string) string { return strings.Join(s.Header[h], "|") }

	t.Run("token in header", func(t *testing.T) {
		s := get(t, "/api/x?a=1", http.Header{
			"Authorization": {"Bearer " + tok},
			"X-User-Id":     {"mallory"},
			"X-Email":       {"mallory@example.com"},
			"X-Bad":         {"spoofed"},
		})
		for h, want := range map[string]string{"X-User-Id": "alice", "X-Roles": "reader,writer", "X-N": "42", "X-Admin": "true", "Authorization": "", "X-Email": "", "X-Bad": ""} {
			if got := one(s, h); got != want {
				t.Errorf("%s: %q, want %q", h, got, want)
			}
		}
		if s.RawQuery != "a=1" {
			t.Errorf("query %q, want a=1", s.RawQuery)
		}
	})
	t.Run("token in query", func(t *testing.T) {
		s := get(t, "/api/x?a=1&access_token="+tok+"&b=%20x&access_token=again", nil)
		if s.RawQuery != "a=1&b=%20x" {
			t.Errorf("query %q, want a=1&b=%%20x", s.RawQuery)
		}
		if one(s, "X-User-Id") != "alice" {
			t.Errorf("X-User-Id %q", one(s, "X-User-Id"))
		}
	})
	t.Run("key in query", func(t *testing.T) {
		s := get(t, "/api/x?api_key="+authnKeyCI+"&z=9", http.Header{"X-Key-Name": {"admin"}, "X-User-Id": {"mallory"}})
		if s.RawQuery != "z=9" || one(s, "X-Key-Name") != "ci" || one(s, "X-User-Id") != "" {
			t.Errorf("query %q, X-Key-Name %q, X-User-Id %q; want z=9, ci, none", s.RawQuery, one(s, "X-Key-Name"), one(s, "X-User-Id"))
		}
	})
	t.Run("basic credentials for the upstream stay", func(t *testing.T) {
		s := get(t, "/api/x", http.Header{"Authorization": {"Basic dTpw"}, "X-Api-Key": {authnKeyCI}})
		if one(s, "Authorization") != "Basic dTpw" || one(s, "X-Api-Key") != "" {
			t.Errorf("Authorization %q, X-Api-Key %q", one(s, "Authorization"), one(s, "X-Api-Key"))
		}
	})
	t.Run("forward_credentials", func(t *testing.T) {
		s := get(t, "/keep", http.Header{"Authorization": {"Bearer " + tok}})
		if one(s, "Authorization") != "Bearer "+tok {
			t.Errorf("Authorization %q, want the token", one(s, "Authorization"))
		}
	})
}

func TestQueryParamHelpers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		raw, name, value string
		found            bool
		removed          string
	}{
		{"", "k", "", false, ""},
		{"k=v", "k", "v", true, ""},
		{"a=1&k=v%20w&b=2", "k", "v w", true, "a=1&b=2"},
		{"a=1&kk=v", "k", "", false, "a=1&kk=v"},
		{"k=1&k=2", "k", "1", true, ""},
		{"%6B=x&a=1", "k", "x", true, "a=1"},
		{"k", "k", "", true, ""},
		{"a=%zz&k=%zz", "k", "%zz", true, "a=%zz"},
	} {
		v, ok := queryParam(tc.raw, tc.name)
		if v != tc.value || ok != tc.found {
			t.Errorf("queryParam(%q, %q) = %q, %v; want %q, %v", tc.raw, tc.name, v, ok, tc.value, tc.found)
		}
		if got := removeQueryParam(tc.raw, tc.name); got != tc.removed {
			t.Errorf("removeQueryParam(%q, %q) = %q, want %q", tc.raw, tc.name, got, tc.removed)
		}
	}
}

// TestAuthnCompileErrors checks the problems of bad authn sections, with
// their file, line and field.
func TestAuthnCompileErrors(t *testing.T) {
	t.Parallel()
	hash := HashAPIKey("k")
	for _, tc := range []struct {
		name  string
		dir   string // "": from Consul KV
		files map[string]string
		yaml  string
		want  []string
	}{
		{
			name: "jwt fields",
			dir:  "dir",
			yaml: `policies:
  - name: a
    applies_to: {all: true}
    authn:
      jwt:
        jwks_url: ftp://keys.example/jwks
        jwks_file: keys.json
        algorithms: [RS256, none, HS256, XX256, RS256]
        clock_skew: 10m
        header: "Bad Header"
        query: "a&b"
        audiences: [""]
        forward_claims: {sub: "X User"}
`,
			want: []string{
				`p.yaml:5: policies[0].authn.jwt.issuer: required: the "iss" every token must carry`,
				`p.yaml:6: policies[0].authn.jwt.jwks_url: "ftp://keys.example/jwks" is not an http or https URL`,
				`p.yaml:7: policies[0].authn.jwt.jwks_file: only one key source is allowed; jwks_url is given too`,
				`p.yaml:8: policies[0].authn.jwt.algorithms[1]: "none" is never accepted: tokens must be signed`,
				`p.yaml:8: policies[0].authn.jwt.algorithms[2]: "HS256" is an HMAC algorithm: it needs hmac_secret_file, not public keys (accepting it with public keys allows algorithm confusion)`,
				`p.yaml:8: policies[0].authn.jwt.algorithms[3]: "XX256" is not a supported algorithm; want one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA, HS256, HS384, HS512`,
				`p.yaml:8: policies[0].authn.jwt.algorithms[4]: "RS256" is listed twice`,
				`p.yaml:9: policies[0].authn.jwt.clock_skew: 10m0s is more than the maximum 5m0s`,
				`p.yaml:10: policies[0].authn.jwt.header: "Bad Header" is not a valid header name`,
				`p.yaml:11: policies[0].authn.jwt.query: "a&b" is not a valid query parameter name; want letters, digits and -._~`,
				`p.yaml:12: policies[0].authn.jwt.audiences[0]: empty audience`,
				`p.yaml:13: policies[0].authn.jwt.forward_claims.sub: "X User" is not a valid header name`,
			},
		},
		{
			name: "key sources",
			dir:  "dir",
			files: map[string]string{
				"short.secret": "too short\n",
				"bad.json":     `{"keys": [{"kty": "oct", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"}]}`,
				"notjson.json": `nope`,
			},
			yaml: `policies:
  - name: none
    applies_to: {all: true}
    authn:
      jwt: {issuer: i}
  - name: missing
    applies_to: {all: true}
    authn:
      jwt: {issuer: i, jwks_file: missing.json}
  - name: short
    applies_to: {all: true}
    authn:
      jwt: {issuer: i, hmac_secret_file: short.secret, algorithms: [HS256, RS256], refresh_interval: 1m}
  - name: symmetric
    applies_to: {all: true}
    authn:
      jwt: {issuer: i, jwks_file: bad.json}
  - name: url
    applies_to: {all: true}
    authn:
      jwt: {issuer: i, jwks_url: "https://", refresh_interval: 500ms, min_refresh_interval: 1ms}
  - name: notjson
    applies_to: {all: true}
    authn:
      jwt: {issuer: i, jwks_file: notjson.json}
  - name: empty
    applies_to: {all: true}
    authn: {optional: true}
`,
			want: []string{
				`p.yaml:5: policies[0].authn.jwt: want exactly one key source: jwks_url, jwks_file or hmac_secret_file`,
				`p.yaml:9: policies[1].authn.jwt.jwks_file: cannot read "missing.json": no such file or directory`,
				`p.yaml:13: policies[2].authn.jwt.algorithms[1]: "RS256" needs public keys (jwks_url or jwks_file); hmac_secret_file allows HS256, HS384, HS512`,
				`p.yaml:13: policies[2].authn.jwt.refresh_interval: applies only to jwks_url`,
				`p.yaml:13: policies[2].authn.jwt.hmac_secret_file: the secret in "short.secret" is 9 bytes; want at least 32`,
				`p.yaml:17: policies[3].authn.jwt.jwks_file: "bad.json" has no usable signing key (RSA of 2048 bits or more, EC P-256/P-384/P-521, Ed25519): key 0 (kid ""): symmetric keys are not accepted from a key set; use hmac_secret_file`,
				`p.yaml:21: policies[4].authn.jwt.refresh_interval: 500ms is less than the minimum 1s`,
				`p.yaml:21: policies[4].authn.jwt.min_refresh_interval: 1ms is less than the minimum 1s`,
				`p.yaml:21: policies[4].authn.jwt.jwks_url: "https://" is not an http or https URL`,
				`p.yaml:25: policies[5].authn.jwt.jwks_file: "notjson.json" is not a JSON Web Key Set: `,
				`p.yaml:28: policies[6].authn: want jwt, api_keys or both`,
			},
		},
		{
			name: "consul kv needs absolute paths",
			yaml: `policies:
  - name: kv
    applies_to: {all: true}
    authn:
      jwt:
        issuer: i
        hmac_secret_file: secret
        forward_claims: {email: authorization}
`,
			want: []string{
				`p.yaml:7: policies[0].authn.jwt.hmac_secret_file: "secret" is relative, but this policy has no directory (it comes from Consul KV); give an absolute path`,
				`p.yaml:8: policies[0].authn.jwt.forward_claims.email: "authorization" is the header the token comes in`,
			},
		},
		{
			name:  "api keys",
			dir:   "dir",
			files: map[string]string{"s": strings.Repeat("x", 32)},
			yaml: `policies:
  - name: k
    applies_to: {all: true}
    authn:
      api_keys:
        header: "X Key"
        query: "a b"
        forward_name_header: "a:b"
        keys:
          - name: ci
            sha256: abc
          - name: ci
            sha256: ` + hash + `
          - name: "-bad"
            sha256: ` + strings.ToUpper(hash) + `
          - sha256: ` + strings.Repeat("zz", 32) + `
  - name: nokeys
    applies_to: {all: true}
    authn:
      api_keys: {keys: []}
  - name: clash
    applies_to: {all: true}
    authn:
      jwt: {issuer: i, hmac_secret_file: s, header: X-API-Key}
      api_keys: {keys: [{name: a, sha256: ` + hash + `}]}
`,
			want: []string{
				`p.yaml:6: policies[0].authn.api_keys.header: "X Key" is not a valid header name`,
				`p.yaml:7: policies[0].authn.api_keys.query: "a b" is not a valid query parameter name; want letters, digits and -._~`,
				`p.yaml:8: policies[0].authn.api_keys.forward_name_header: "a:b" is not a valid header name`,
				`p.yaml:11: policies[0].authn.api_keys.keys[0].sha256: want the 64 hex digits of the key's SHA-256 (meshgate hash-key prints them), got 3 characters`,
				`p.yaml:12: policies[0].authn.api_keys.keys[1].name: duplicate key name "ci"; first used by keys[0]`,
				`p.yaml:14: policies[0].authn.api_keys.keys[2].name: "-bad" is not a valid name; want letters, digits, '.', '_' and '-', starting with a letter or digit`,
				`p.yaml:15: policies[0].authn.api_keys.keys[2].sha256: the same key as keys[1]`,
				`p.yaml:16: policies[0].authn.api_keys.keys[3].name: required`,
				`p.yaml:16: policies[0].authn.api_keys.keys[3].sha256: want the 64 hex digits of the key's SHA-256 (meshgate hash-key prints them): encoding/hex: invalid byte: U+007A 'z'`,
				`p.yaml:20: policies[1].authn.api_keys.keys: want at least one key`,
				`p.yaml:24: policies[2].authn.jwt.header: "X-API-Key" is also api_keys.header; give each kind of credential its own header`,
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := ""
			if tc.dir != "" {
				dir = t.TempDir()
			}
			_, err := authnCompile(t, dir, tc.yaml, nil, tc.files)
			var errs config.Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error %v (%T), want config.Errors", err, err)
			}
			var got []string
			for _, e := range errs {
				got = append(got, e.String())
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d problems, want %d:\n%s", len(got), len(tc.want), strings.Join(got, "\n"))
			}
			for i := range got {
				if got[i] != tc.want[i] && !(strings.HasSuffix(tc.want[i], ": ") && strings.HasPrefix(got[i], tc.want[i])) {
					t.Errorf("problem %d:\n got %s\nwant %s", i, got[i], tc.want[i])
				}
			}
		})
	}
}

// TestAuthnDefaults: compiling writes the effective values into the spec,
// for /admin/policies.
func TestAuthnDefaults(t *testing.T) {
	t.Parallel()
	k := authnTestKeys(t)
	set, err := authnCompile(t, t.TempDir(), `policies:
  - name: d
    applies_to: {all: true}
    authn:
      jwt: {issuer: i, jwks_file: keys.json}
      api_keys: {keys: [{name: a, sha256: `+HashAPIKey("k")+`}]}
`, nil, map[string]string{"keys.json": k.jwks(t, k.rsaA)})
	if err != nil {
		t.Fatal(err)
	}
	a := set.policies[0].spec.Authn
	j := a.JWT
	if strings.Join(j.Algorithms, ",") != "RS256,ES256,EdDSA" || j.ClockSkew.D() != 30*time.Second || j.Header != "Authorization" ||
		j.RefreshInterval != 0 || j.MinRefreshInterval != 0 || a.APIKeys.Header != "X-API-Key" {
		t.Errorf("defaults: %+v %+v", j, a.APIKeys)
	}
}

// TestAuthnAPIKeyAllocs: an API key check is one hash and few
// allocations.
func TestAuthnAPIKeyAllocs(t *testing.T) {
	yaml := strings.Replace(authnAPIKeysYAML, "    authn:\n", "    authn:\n      forward_credentials: true\n", 1)
	yaml = strings.Replace(yaml, "        forward_name_header: X-Key-Name\n", "", 1)
	h := authnChain(t, yaml, nil, nil, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header["X-Api-Key"] = []string{authnKeyCI}
	w := httptest.NewRecorder()
	allocs := testing.AllocsPerRun(100, func() { h.ServeHTTP(w, req) })
	// The chain's entry makes the request state and its context (3);
	// the key check itself at most 2 more.
	if allocs > 5 {
		t.Errorf("%v allocations per request, want at most 5", allocs)
	}
}

func BenchmarkAuthnAPIKey(b *testing.B) {
	yaml := strings.Replace(authnAPIKeysYAML, "    authn:\n", "    authn:\n      forward_credentials: true\n", 1)
	set, err := compileSources([]Source{{Name: "p.yaml", Dir: b.TempDir(), Data: []byte(yaml)}}, authnEnv(nil), newResources(), false, false)
	if err != nil {
		b.Fatal(err)
	}
	h := set.Chain(RouteInfo{Name: "r"}, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header["X-Api-Key"] = []string{authnKeyCI}
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, req)
	}
}

// authnObserver records decisions as "policy/step/decision".
type authnObserver struct {
	mu  sync.Mutex
	got []string
}

func (o *authnObserver) Decision(_ context.Context, policy, step, decision string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.got = append(o.got, policy+"/"+step+"/"+decision)
}

// TestAuthnObserved: every decision is counted and put on the request's
// span, with the principal on success and never the credential.
func TestAuthnObserved(t *testing.T) {
	t.Parallel()
	obs := &authnObserver{}
	env := authnEnv(nil)
	env.Observer = obs
	yaml := strings.Replace(authnAPIKeysYAML, "    authn:\n", "    authn:\n      optional: true\n", 1)
	h := authnChain(t, yaml, env, nil, nil)
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })

	for _, key := range []string{authnKeyCI, "wrong", ""} {
		ctx, span := tp.Tracer("test").Start(context.Background(), "req")
		req := httptest.NewRequest(http.MethodGet, "/", nil).WithContext(ctx)
		if key != "" {
			req.Header.Set("X-API-Key", key)
		}
		h.ServeHTTP(httptest.NewRecorder(), req)
		span.End()
	}
	want := []string{"keys/authn/allow", "keys/authn/invalid_api_key", "keys/authn/anonymous"}
	if strings.Join(obs.got, " ") != strings.Join(want, " ") {
		t.Errorf("decisions %v, want %v", obs.got, want)
	}
	spans := sr.Ended()
	if len(spans) != 3 {
		t.Fatalf("%d spans", len(spans))
	}
	for i, wantAttrs := range []map[string]string{
		{"meshgate.policy.name": "keys", "meshgate.policy.decision": "allow", "meshgate.authn.method": "api_key", "meshgate.authn.principal": "ci"},
		{"meshgate.policy.name": "keys", "meshgate.policy.decision": "invalid_api_key", "meshgate.authn.error": "invalid API key"},
		{"meshgate.policy.name": "keys", "meshgate.policy.decision": "anonymous", "meshgate.authn.method": "", "meshgate.authn.principal": ""},
	} {
		got := map[string]string{}
		for _, kv := range spanFacts(spans[i]) {
			got[string(kv.Key)] = kv.Value.Emit()
			if strings.Contains(kv.Value.Emit(), authnKeyCI) {
				t.Errorf("span %d carries the key in %s", i, kv.Key)
			}
		}
		for k, v := range wantAttrs {
			if g, ok := got[k]; !ok || g != v {
				t.Errorf("span %d: %s = %q, want %q (all: %v)", i, k, g, v, got)
			}
		}
	}
}
