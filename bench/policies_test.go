package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"
	"go.yaml.in/yaml/v3"
)

// benchPolicyGate enforces the bench policy the way meshgate_policies
// must: 401 without a valid token, 403 unless role is admin and the
// method GET, and a RateLimit-Policy header on what it lets through. It
// stands in for meshgate in the fake and in TestCheckEnforced.
func benchPolicyGate(set jwk.Set, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="meshgate"`)
			http.Error(w, "no token", http.StatusUnauthorized)
			return
		}
		tok, err := jwt.Parse([]byte(raw), jwt.WithKeySet(set), jwt.WithIssuer(benchIssuer), jwt.WithAudience(benchAudience))
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="meshgate", error="invalid_token"`)
			http.Error(w, "bad token", http.StatusUnauthorized)
			return
		}
		var role string
		if err := tok.Get("role", &role); err != nil || role != benchRole || r.Method != http.MethodGet {
			http.Error(w, "denied", http.StatusForbidden)
			return
		}
		w.Header().Set("RateLimit-Policy", `"per-client";q=100000000;w=1`)
		next.ServeHTTP(w, r)
	})
}

func TestNewCredentials(t *testing.T) {
	t.Parallel()
	now := time.Now().Truncate(time.Second)
	creds, err := newCredentials(now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if got := creds.AuthHeader(); got != "Authorization: Bearer "+creds.Token {
		t.Errorf("AuthHeader = %q", got)
	}

	set, err := jwk.Parse(creds.JWKS)
	if err != nil {
		t.Fatalf("JWKS does not parse: %v\n%s", err, creds.JWKS)
	}
	if set.Len() != 1 {
		t.Fatalf("JWKS holds %d keys, want 1", set.Len())
	}
	key, _ := set.Key(0)
	if kid, _ := key.KeyID(); kid != benchKeyID {
		t.Errorf("JWKS kid = %q, want %q", kid, benchKeyID)
	}
	if alg, _ := key.Algorithm(); alg != jwa.ES256() {
		t.Errorf("JWKS alg = %v, want ES256", alg)
	}
	if _, private := key.(jwk.ECDSAPrivateKey); private || bytes.Contains(creds.JWKS, []byte(`"d"`)) {
		t.Errorf("JWKS holds the private key:\n%s", creds.JWKS)
	}

	msg, err := jws.Parse([]byte(creds.Token))
	if err != nil {
		t.Fatal(err)
	}
	hdr := msg.Signatures()[0].ProtectedHeaders()
	if kid, _ := hdr.KeyID(); kid != benchKeyID {
		t.Errorf("token kid = %q, want %q", kid, benchKeyID)
	}
	if alg, _ := hdr.Algorithm(); alg != jwa.ES256() {
		t.Errorf("token alg = %v, want ES256", alg)
	}

	tok, err := jwt.Parse([]byte(creds.Token), jwt.WithKeySet(set), jwt.WithIssuer(benchIssuer), jwt.WithAudience(benchAudience))
	if err != nil {
		t.Fatalf("token does not verify against the JWKS: %v", err)
	}
	var role string
	if err := tok.Get("role", &role); err != nil || role != benchRole {
		t.Errorf("role = %q (%v), want %q", role, err, benchRole)
	}
	if sub, _ := tok.Subject(); sub != benchSubject {
		t.Errorf("sub = %q, want %q", sub, benchSubject)
	}
	if exp, _ := tok.Expiration(); !exp.Equal(now.Add(time.Hour)) {
		t.Errorf("exp = %v, want %v", exp, now.Add(time.Hour))
	}

	// Each run has its own key: another run's token does not verify.
	other, err := newCredentials(now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jwt.Parse([]byte(other.Token), jwt.WithKeySet(set)); err == nil {
		t.Error("a token signed with another run's key verifies against this run's JWKS")
	}
}

func TestTokenTTL(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		o       options
		targets int
		want    time.Duration
	}{
		"default run is an hour": {
			o: options{rounds: 3, duration: 10 * time.Second, warmup: 2 * time.Second}, targets: 8, want: time.Hour,
		},
		"long run outlives its token unless extended": {
			o: options{rounds: 10, duration: time.Minute, warmup: 10 * time.Second}, targets: 8, want: 2 * 10 * 8 * 70 * time.Second,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if got := tokenTTL(tc.o, tc.targets); got != tc.want {
				t.Errorf("tokenTTL = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestPolicyFile checks the generated policy's structure; the
// meshgate_policies smoke run and TestPolicyFileValidates check that
// meshgate accepts it.
func TestPolicyFile(t *testing.T) {
	t.Parallel()
	var f struct {
		Policies []struct {
			Name      string
			AppliesTo map[string]any `yaml:"applies_to"`
			Authn     struct {
				JWT struct {
					Issuer    string
					Audiences []string
					JWKSFile  string `yaml:"jwks_file"`
				}
			}
			Authz struct {
				Default string
				Rules   []struct{ Name, When string }
			}
			RateLimits []struct {
				Name, Key, Per string
				Requests       int
				Scope          string
			} `yaml:"rate_limits"`
		}
	}
	if err := yaml.Unmarshal([]byte(policyFile()), &f); err != nil {
		t.Fatalf("policy file is not YAML: %v\n%s", err, policyFile())
	}
	if len(f.Policies) != 1 {
		t.Fatalf("%d policies, want 1", len(f.Policies))
	}
	p := f.Policies[0]
	if len(p.AppliesTo) != 1 || p.AppliesTo["all"] != true {
		t.Errorf("applies_to = %v, want all: true", p.AppliesTo)
	}
	if j := p.Authn.JWT; j.Issuer != "https://bench.meshgate.test" || len(j.Audiences) != 1 || j.Audiences[0] != "bench" || j.JWKSFile != "jwks.json" {
		t.Errorf("authn.jwt = %+v", j)
	}
	if p.Authz.Default != "deny" || len(p.Authz.Rules) != 1 || p.Authz.Rules[0].Name != "admins-read" ||
		p.Authz.Rules[0].When != `claims.role == "admin" && request.method == "GET"` {
		t.Errorf("authz = %+v", p.Authz)
	}
	if len(p.RateLimits) != 1 {
		t.Fatalf("rate_limits = %+v", p.RateLimits)
	}
	if rl := p.RateLimits[0]; rl.Name != "per-client" || rl.Key != "principal" || rl.Requests != 100_000_000 || rl.Per != "1s" || rl.Scope != "" {
		t.Errorf("rate_limits[0] = %+v, want a local per-principal limit of 100000000/1s", rl)
	}
}

// TestPolicyFileValidates runs `meshgate validate` on the generated config
// and policies. It builds meshgate, and skips when that fails: the
// policies package is then broken, which its own tests report.
func TestPolicyFileValidates(t *testing.T) {
	if testing.Short() {
		t.Skip("builds meshgate")
	}
	t.Parallel()
	dir := t.TempDir()
	bin := filepath.Join(dir, "meshgate")
	var out bytes.Buffer
	build := exec.Command("go", "build", "-o", bin, "github.com/meshgate/meshgate/cmd/meshgate")
	build.Stdout, build.Stderr = &out, &out
	if err := build.Run(); err != nil {
		t.Skipf("meshgate does not build: %v\n%s", err, out.String())
	}
	creds, err := newCredentials(time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	policies := filepath.Join(dir, policiesDirName)
	if err := writePolicies(policies, creds); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "meshgate.yaml")
	writeFile(t, file, meshgateConfig("127.0.0.1:18000", "127.0.0.1:18009", testBackends, policies))
	out.Reset()
	validate := exec.Command(bin, "validate", file)
	validate.Stdout, validate.Stderr = &out, &out
	if err := validate.Run(); err != nil {
		t.Fatalf("meshgate validate rejects the bench config and policy: %v\n%s\n--- policy ---\n%s", err, out.String(), policyFile())
	}
}

func TestWritePolicies(t *testing.T) {
	t.Parallel()
	creds, err := newCredentials(time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), policiesDirName)
	if err := writePolicies(dir, creds); err != nil {
		t.Fatal(err)
	}
	// jwks_file is relative to the policy file, so both sit in dir.
	for name, want := range map[string]string{"bench.yaml": policyFile(), "jwks.json": string(creds.JWKS)} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != want {
			t.Errorf("%s =\n%s\nwant\n%s", name, b, want)
		}
	}
}

func TestCheckEnforced(t *testing.T) {
	t.Parallel()
	creds, err := newCredentials(time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	set, err := jwk.Parse(creds.JWKS)
	if err != nil {
		t.Fatal(err)
	}
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("{}")) })
	tests := map[string]struct {
		handler http.Handler
		wantErr string // "" for none
	}{
		"the whole chain": {handler: benchPolicyGate(set, ok)},
		"no policies at all": {
			handler: ok,
			wantErr: "without the token: got 200 OK, want 401",
		},
		"401 without WWW-Authenticate": {
			handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("Authorization") == "" {
					w.WriteHeader(http.StatusUnauthorized)
					return
				}
				benchPolicyGate(set, ok).ServeHTTP(w, r)
			}),
			wantErr: "no WWW-Authenticate header",
		},
		"token refused": {
			handler: benchPolicyGate(jwk.NewSet(), ok),
			wantErr: "with the token: got 401 Unauthorized, want 200",
		},
		"no rate limit step": {
			handler: benchPolicyGate(set, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Del("RateLimit-Policy")
				w.Write([]byte("{}"))
			})),
			wantErr: "no RateLimit-Policy header",
		},
		"no authz step": {
			handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				r.Method = http.MethodGet // every method passes as GET
				benchPolicyGate(set, ok).ServeHTTP(w, r)
			}),
			wantErr: "with the token but not GET: got 200 OK, want 403",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(tc.handler)
			defer srv.Close()
			err := checkEnforced(context.Background(), srv.URL+"/", creds.Token)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("checkEnforced: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("checkEnforced error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}
