package policies

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"
	"go.uber.org/goleak"

	"github.com/meshgate/meshgate/internal/testproc"
)

const authnIssuer = "https://issuer.example"

// authnKey is a signing key of the tests.
type authnKey struct {
	kid  string
	alg  jwa.SignatureAlgorithm
	priv any
	pub  any
}

// authnKeys are the keys the tests sign with, made once (RSA keys are
// slow to generate).
type authnKeys struct {
	rsaA, rsaB, rsaOther, ec, ed *authnKey
}

var authnKeysOnce = sync.OnceValue(func() *authnKeys {
	newRSA := func(kid string) *authnKey {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		return &authnKey{kid: kid, alg: jwa.RS256(), priv: k, pub: &k.PublicKey}
	}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	edPub, edPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	return &authnKeys{
		rsaA:     newRSA("a"),
		rsaB:     newRSA("b"),
		rsaOther: newRSA("a"), // the kid of A, other key material
		ec:       &authnKey{kid: "ec", alg: jwa.ES256(), priv: ek, pub: &ek.PublicKey},
		ed:       &authnKey{kid: "ed", alg: jwa.EdDSA(), priv: edPriv, pub: edPub},
	}
})

func authnTestKeys(t *testing.T) *authnKeys {
	t.Helper()
	return authnKeysOnce()
}

// jwks returns the JSON Web Key Set of the public keys.
func (*authnKeys) jwks(t *testing.T, keys ...*authnKey) string {
	t.Helper()
	set := jwk.NewSet()
	for _, k := range keys {
		jk, err := jwk.Import(k.pub)
		if err != nil {
			t.Fatal(err)
		}
		if err := jk.Set(jwk.KeyIDKey, k.kid); err != nil {
			t.Fatal(err)
		}
		if err := jk.Set(jwk.KeyUsageKey, "sig"); err != nil {
			t.Fatal(err)
		}
		if err := set.AddKey(jk); err != nil {
			t.Fatal(err)
		}
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// sign makes a token with the key's algorithm and kid.
func (k *authnKeys) sign(t *testing.T, key *authnKey, claims map[string]any) string {
	t.Helper()
	return authnSignWith(t, key.alg, key.priv, key.kid, claims)
}

func authnSignWith(t testing.TB, alg jwa.SignatureAlgorithm, priv any, kid string, claims map[string]any) string {
	t.Helper()
	tok := jwt.New()
	for name, v := range claims {
		if err := tok.Set(name, v); err != nil {
			t.Fatalf("claim %s: %v", name, err)
		}
	}
	jk, err := jwk.Import(priv)
	if err != nil {
		t.Fatal(err)
	}
	if kid != "" {
		if err := jk.Set(jwk.KeyIDKey, kid); err != nil {
			t.Fatal(err)
		}
	}
	b, err := jwt.Sign(tok, jwt.WithKey(alg, jk))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// authnClaims are valid claims with over applied (a nil value removes a
// claim).
func authnClaims(over map[string]any) map[string]any {
	c := map[string]any{
		"iss": authnIssuer,
		"sub": "alice",
		"aud": []string{"orders"},
		"exp": authnNow.Add(time.Hour),
		"iat": authnNow.Add(-time.Minute),
	}
	for k, v := range over {
		if v == nil {
			delete(c, k)
			continue
		}
		c[k] = v
	}
	return c
}

// authnUnsigned makes a token with the given header and claims and an
// empty signature.
func authnUnsigned(t *testing.T, header string, claims map[string]any) string {
	t.Helper()
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(header)) + "." + enc(payload) + "."
}

// authnPublicPEM is the PEM of an RSA public key, the secret of the
// classic algorithm-confusion attack.
func authnPublicPEM(t *testing.T, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func TestAuthnJWT(t *testing.T) {
	t.Parallel()
	k := authnTestKeys(t)
	yaml := `policies:
  - name: jwt
    applies_to: {all: true}
    authn:
      jwt:
        issuer: ` + authnIssuer + `
        audiences: [orders, billing]
        jwks_file: keys.json
        query: access_token
`
	h := authnChain(t, yaml, nil, map[string]string{"keys.json": k.jwks(t, k.rsaA, k.ec, k.ed)}, nil)
	valid := authnClaims(nil)
	bearer := func(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }
	at := func(d time.Duration) time.Time { return authnNow.Add(d) }

	for _, tc := range []struct {
		name   string
		target string
		header http.Header
		msg    string // "" for 200
	}{
		{name: "no token", msg: "missing credentials"},
		{name: "another scheme", header: http.Header{"Authorization": {"Basic dTpw"}}, msg: "missing credentials"},
		{name: "empty bearer", header: http.Header{"Authorization": {"Bearer "}}, msg: "malformed token"},
		{name: "malformed", header: bearer("abc"), msg: "malformed token"},
		{name: "not base64", header: bearer("a.b.c"), msg: "malformed token"},
		{name: "two tokens", header: http.Header{"Authorization": {"Bearer x", "Bearer y"}}, msg: "more than one token"},
		{name: "bad signature", header: bearer(k.sign(t, k.rsaOther, valid)), msg: "bad signature"},
		{name: "tampered payload", header: bearer(authnTamper(t, k.sign(t, k.rsaA, valid))), msg: "bad signature"},
		{name: "wrong issuer", header: bearer(k.sign(t, k.rsaA, authnClaims(map[string]any{"iss": "https://evil.example"}))), msg: "wrong issuer"},
		{name: "no issuer", header: bearer(k.sign(t, k.rsaA, authnClaims(map[string]any{"iss": nil}))), msg: "wrong issuer"},
		{name: "wrong audience", header: bearer(k.sign(t, k.rsaA, authnClaims(map[string]any{"aud": []string{"shop"}}))), msg: "wrong audience"},
		{name: "no audience", header: bearer(k.sign(t, k.rsaA, authnClaims(map[string]any{"aud": nil}))), msg: "wrong audience"},
		{name: "expired beyond skew", header: bearer(k.sign(t, k.rsaA, authnClaims(map[string]any{"exp": at(-31 * time.Second)}))), msg: "token expired"},
		{name: "expired within skew", header: bearer(k.sign(t, k.rsaA, authnClaims(map[string]any{"exp": at(-20 * time.Second)})))},
		{name: "not yet valid", header: bearer(k.sign(t, k.rsaA, authnClaims(map[string]any{"nbf": at(time.Minute)}))), msg: "token not yet valid"},
		{name: "nbf within skew", header: bearer(k.sign(t, k.rsaA, authnClaims(map[string]any{"nbf": at(20 * time.Second)})))},
		{name: "no exp", header: bearer(k.sign(t, k.rsaA, authnClaims(map[string]any{"exp": nil}))), msg: "token has no expiry"},
		{name: "issued in the future", header: bearer(k.sign(t, k.rsaA, authnClaims(map[string]any{"iat": at(time.Hour)}))), msg: "token issued in the future"},
		{name: "alg none", header: bearer(authnUnsigned(t, `{"alg":"none","typ":"JWT"}`, authnClaims(nil))), msg: "algorithm not allowed"},
		{name: "alg None", header: bearer(authnUnsigned(t, `{"alg":"None","kid":"a"}`, authnClaims(nil))), msg: "malformed token"},
		{name: "no alg", header: bearer(authnUnsigned(t, `{"kid":"a"}`, authnClaims(nil))), msg: "malformed token"},
		{name: "alg not allowed", header: bearer(authnSignWith(t, jwa.RS384(), k.rsaA.priv, "a", valid)), msg: "algorithm not allowed"},
		{name: "HS256 with the RSA public key as secret", header: bearer(authnSignWith(t, jwa.HS256(), authnPublicPEM(t, k.rsaA.pub), "a", valid)), msg: "algorithm not allowed"},
		{name: "ES256 token naming the RSA key", header: bearer(authnSignWith(t, jwa.ES256(), k.ec.priv, "a", valid)), msg: "algorithm not allowed"},
		{name: "unknown kid", header: bearer(authnSignWith(t, jwa.RS256(), k.rsaB.priv, "zz", valid)), msg: "unknown signing key"},
		{name: "crit header", header: bearer(authnCrit(t, k)), msg: "malformed token"},
		{name: "RS256", header: bearer(k.sign(t, k.rsaA, valid))},
		{name: "lower-case scheme", header: http.Header{"Authorization": {"bearer " + k.sign(t, k.rsaA, valid)}}},
		{name: "ES256", header: bearer(k.sign(t, k.ec, valid))},
		{name: "EdDSA", header: bearer(k.sign(t, k.ed, valid))},
		{name: "no kid", header: bearer(authnSignWith(t, jwa.EdDSA(), k.ed.priv, "", valid))},
		{name: "second audience", header: bearer(k.sign(t, k.rsaA, authnClaims(map[string]any{"aud": []string{"x", "billing"}})))},
		{name: "query", target: "/?access_token=" + k.sign(t, k.rsaA, valid)},
		{name: "bad token in query", target: "/?access_token=abc", msg: "malformed token"},
		// The header wins over the query.
		{name: "bad header, good query", target: "/?access_token=" + k.sign(t, k.rsaA, valid), header: bearer("abc"), msg: "malformed token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := tc.target
			if target == "" {
				target = "/"
			}
			rec := authnDo(h, target, tc.header)
			switch tc.msg {
			case "":
				authnCheck(t, rec, 200, nil, "")
				seen := authnSeenOf(t, rec.Body.Bytes())
				if seen.Method != "jwt" || seen.Principal != "alice" || seen.Claims["iss"] != authnIssuer {
					t.Errorf("identity %s/%s claims %v", seen.Method, seen.Principal, seen.Claims)
				}
				if _, ok := seen.Claims["exp"].(float64); !ok {
					t.Errorf("exp %T, want a JSON number", seen.Claims["exp"])
				}
			case "missing credentials":
				authnCheck(t, rec, 401, []string{`Bearer realm="meshgate"`}, tc.msg)
			case "more than one token":
				authnCheck(t, rec, 401, []string{`Bearer realm="meshgate", error="invalid_request", error_description="more than one token"`}, tc.msg)
			default:
				authnCheck(t, rec, 401, []string{`Bearer realm="meshgate", error="invalid_token", error_description="` + tc.msg + `"`}, tc.msg)
			}
		})
	}
}

// authnTamper changes the subject of a signed token, keeping its
// signature.
func authnTamper(t *testing.T, tok string) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	payload = []byte(strings.Replace(string(payload), `"alice"`, `"admin"`, 1))
	parts[1] = base64.RawURLEncoding.EncodeToString(payload)
	return strings.Join(parts, ".")
}

// authnCrit makes a token, validly signed, whose "crit" header names an
// extension meshgate does not understand (RFC 7515 §4.1.11: refuse).
func authnCrit(t *testing.T, k *authnKeys) string {
	t.Helper()
	payload, _ := json.Marshal(authnClaims(nil))
	enc := base64.RawURLEncoding.EncodeToString
	signing := enc([]byte(`{"alg":"EdDSA","kid":"ed","crit":["exp-ext"],"exp-ext":1}`)) + "." + enc(payload)
	sig := ed25519.Sign(k.ed.priv.(ed25519.PrivateKey), []byte(signing))
	return signing + "." + enc(sig)
}

// TestAuthnJWTHMAC: a shared secret verifies HS256 tokens only.
func TestAuthnJWTHMAC(t *testing.T) {
	t.Parallel()
	k := authnTestKeys(t)
	secret := "0123456789abcdef0123456789abcdef"
	yaml := `policies:
  - name: hmac
    applies_to: {all: true}
    authn:
      jwt:
        issuer: ` + authnIssuer + `
        hmac_secret_file: secret
        header: X-Token
`
	h := authnChain(t, yaml, nil, map[string]string{"secret": secret + "\n"}, nil)
	for _, tc := range []struct {
		name, tok, msg string
	}{
		{name: "HS256", tok: authnSignWith(t, jwa.HS256(), []byte(secret), "", authnClaims(nil))},
		{name: "HS256 with any kid", tok: authnSignWith(t, jwa.HS256(), []byte(secret), "k1", authnClaims(nil))},
		{name: "wrong secret", tok: authnSignWith(t, jwa.HS256(), []byte(secret+"x"), "", authnClaims(nil)), msg: "bad signature"},
		{name: "HS512 not allowed", tok: authnSignWith(t, jwa.HS512(), []byte(secret), "", authnClaims(nil)), msg: "algorithm not allowed"},
		{name: "RS256 not allowed", tok: k.sign(t, k.rsaA, authnClaims(nil)), msg: "algorithm not allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A custom header carries the bare token.
			rec := authnDo(h, "/", http.Header{"X-Token": {tc.tok}})
			if tc.msg == "" {
				authnCheck(t, rec, 200, nil, "")
				return
			}
			authnCheck(t, rec, 401, []string{`Bearer realm="meshgate", error="invalid_token", error_description="` + tc.msg + `"`}, tc.msg)
		})
	}
	rec := authnDo(h, "/", http.Header{"Authorization": {"Bearer " + authnSignWith(t, jwa.HS256(), []byte(secret), "", authnClaims(nil))}})
	authnCheck(t, rec, 401, []string{`Bearer realm="meshgate"`}, "missing credentials")
}

// TestAuthnKeyTypeMatch: whatever the configured algorithms, a key only
// verifies its own type's algorithms and, when it names one, only that
// one: an HMAC algorithm is never tried with a public key.
func TestAuthnKeyTypeMatch(t *testing.T) {
	t.Parallel()
	k := authnTestKeys(t)
	set, err := jwk.Parse([]byte(k.jwks(t, k.rsaA)))
	if err != nil {
		t.Fatal(err)
	}
	ks, skipped := newKeySet(set)
	if len(skipped) > 0 || len(ks.all) != 1 {
		t.Fatalf("key set %+v, skipped %v", ks, skipped)
	}
	// A JWK that names RS256 does not verify RS512.
	named := *ks
	named.all = []verifyKey{ks.all[0]}
	named.all[0].alg = "RS256"
	named.byKid = map[string][]verifyKey{"a": named.all}

	hs, _ := lookupAlgorithm("HS256")
	rs512, _ := lookupAlgorithm("RS512")
	for _, tc := range []struct {
		name string
		ks   *keySet
		algs []allowedAlg
		tok  string
		want tokenError
	}{
		{"HS256 allowed, RSA key", ks, []allowedAlg{hs}, authnSignWith(t, jwa.HS256(), authnPublicPEM(t, k.rsaA.pub), "a", authnClaims(nil)), tokAlgorithm},
		{"HS256 allowed, RSA key, no kid", ks, []allowedAlg{hs}, authnSignWith(t, jwa.HS256(), authnPublicPEM(t, k.rsaA.pub), "", authnClaims(nil)), tokAlgorithm},
		{"RS512 allowed, key names RS256", &named, []allowedAlg{rs512}, authnSignWith(t, jwa.RS512(), k.rsaA.priv, "a", authnClaims(nil)), tokAlgorithm},
		{"RS512 allowed, key names none", ks, []allowedAlg{rs512}, authnSignWith(t, jwa.RS512(), k.rsaA.priv, "a", authnClaims(nil)), tokOK},
		{"no keys", &keySet{}, []allowedAlg{rs512}, authnSignWith(t, jwa.RS512(), k.rsaA.priv, "a", authnClaims(nil)), tokNoKeys},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := &jwtVerifier{src: staticKeys{tc.ks}, algs: tc.algs, parseOpts: []jwt.ParseOption{jwt.WithVerify(false), jwt.WithClock(jwt.ClockFunc(func() time.Time { return authnNow }))}}
			if _, got := v.verify(context.Background(), tc.tok); got != tc.want {
				t.Errorf("verify: %v (%d), want %v (%d)", got, got, tc.want, tc.want)
			}
		})
	}
}

func TestClaimHeaderValue(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   any
		want string
		ok   bool
	}{
		{nil, "", false},
		{"alice", "alice", true},
		{float64(42), "42", true},
		{float64(1700000000), "1700000000", true},
		{1.5, "1.5", true},
		{true, "true", true},
		{[]any{"a", float64(1), false}, "a,1,false", true},
		{map[string]any{"k": "v"}, `{"k":"v"}`, true},
		{"a\r\nX-Evil: 1", "", false},
		{[]any{"ok", "bad\n"}, "", false},
	} {
		got, ok := claimHeaderValue(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("claimHeaderValue(%#v) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// authnJWKSServer serves a JWKS that tests change, counting fetches.
type authnJWKSServer struct {
	*httptest.Server
	body  atomic.Pointer[string]
	down  atomic.Bool
	hits  atomic.Int64
	delay time.Duration
}

func newAuthnJWKSServer(t *testing.T, body string, delay time.Duration) *authnJWKSServer {
	t.Helper()
	s := &authnJWKSServer{delay: delay}
	s.body.Store(&body)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		if s.delay > 0 {
			time.Sleep(s.delay)
		}
		if s.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write([]byte(*s.body.Load()))
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *authnJWKSServer) set(body string) { s.body.Store(&body) }

func authnJWKSYAML(url, refresh, minRefresh string) string {
	return fmt.Sprintf(`policies:
  - name: jwks
    applies_to: {path_prefixes: [/a]}
    authn:
      jwt:
        issuer: %s
        jwks_url: %s
        refresh_interval: %s
        min_refresh_interval: %s
  - name: jwks-again
    applies_to: {path_prefixes: [/b]}
    authn:
      jwt:
        issuer: %[1]s
        jwks_url: %[2]s
        refresh_interval: %[3]s
        min_refresh_interval: %[4]s
`, authnIssuer, url, refresh, minRefresh)
}

// authnStatus sends a token through h and returns the status and error.
func authnStatus(h http.Handler, path, tok string) (int, string) {
	rec := authnDo(h, path, http.Header{"Authorization": {"Bearer " + tok}})
	var body struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal(rec.Body.Bytes(), &body)
	return rec.Code, body.Error
}

// TestAuthnJWKSRotation: key A works; the server adds B and a B token
// works at once through the refetch its unknown kid triggers; the server
// drops A and, after the next refresh, A tokens fail while B tokens work.
func TestAuthnJWKSRotation(t *testing.T) {
	t.Parallel()
	k := authnTestKeys(t)
	srv := newAuthnJWKSServer(t, k.jwks(t, k.rsaA), 0)
	h := authnChain(t, authnJWKSYAML(srv.URL, "3s", "1s"), nil, nil, nil)
	start := time.Now()
	if n := srv.hits.Load(); n != 1 {
		t.Fatalf("%d fetches at load, want 1 (two policies share the cache)", n)
	}
	tokA := k.sign(t, k.rsaA, authnClaims(nil))
	tokB := k.sign(t, k.rsaB, authnClaims(nil))
	if code, msg := authnStatus(h, "/a", tokA); code != 200 {
		t.Fatalf("A: %d %s", code, msg)
	}

	srv.set(k.jwks(t, k.rsaA, k.rsaB))
	time.Sleep(1100 * time.Millisecond) // past min_refresh_interval
	if code, msg := authnStatus(h, "/b", tokB); code != 200 {
		t.Fatalf("B after rotation: %d %s", code, msg)
	}
	if elapsed := time.Since(start); elapsed < 3*time.Second {
		// Before the periodic refresh: the unknown kid made the fetch.
		if n := srv.hits.Load(); n != 2 {
			t.Errorf("%d fetches, want 2", n)
		}
	}
	for _, p := range []string{"/a", "/b"} {
		for _, tok := range []string{tokA, tokB} {
			if code, msg := authnStatus(h, p, tok); code != 200 {
				t.Fatalf("%s with both keys: %d %s", p, code, msg)
			}
		}
	}

	srv.set(k.jwks(t, k.rsaB))
	deadline := time.Now().Add(8 * time.Second)
	for {
		code, msg := authnStatus(h, "/a", tokA)
		if code == 401 {
			if msg != "unknown signing key" {
				t.Errorf("A after removal: %s", msg)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("A tokens still accepted 8s after A left the key set")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code, msg := authnStatus(h, "/a", tokB); code != 200 {
		t.Fatalf("B after A's removal: %d %s", code, msg)
	}
}

// TestAuthnJWKSRefetchBound: many tokens with unknown kids make one
// fetch per min_refresh_interval; the requests share it or fail fast.
func TestAuthnJWKSRefetchBound(t *testing.T) {
	t.Parallel()
	k := authnTestKeys(t)
	srv := newAuthnJWKSServer(t, k.jwks(t, k.rsaA), 200*time.Millisecond)
	h := authnChain(t, authnJWKSYAML(srv.URL, "1h", "2s"), nil, nil, nil)
	var toks []string
	for i := range 50 {
		toks = append(toks, authnSignWith(t, jwa.RS256(), k.rsaB.priv, fmt.Sprintf("unknown-%d", i), authnClaims(nil)))
	}
	burst := func() {
		var wg sync.WaitGroup
		for _, tok := range toks {
			wg.Go(func() {
				if code, msg := authnStatus(h, "/a", tok); code != 401 || msg != "unknown signing key" {
					t.Errorf("unknown kid: %d %s", code, msg)
				}
			})
		}
		wg.Wait()
	}

	// Within min_refresh_interval of the load: no fetch at all.
	burst()
	if n := srv.hits.Load(); n != 1 {
		t.Errorf("%d fetches after a burst right after load, want 1", n)
	}
	time.Sleep(2100 * time.Millisecond)
	begin := time.Now()
	burst()
	if n := srv.hits.Load(); n != 2 {
		t.Errorf("%d fetches after a burst past min_refresh_interval, want 2", n)
	}
	burst()
	if time.Since(begin) < 2*time.Second {
		if n := srv.hits.Load(); n != 2 {
			t.Errorf("%d fetches after a second burst, want still 2", n)
		}
	}
	// Known keys still work, without fetching.
	if code, msg := authnStatus(h, "/a", k.sign(t, k.rsaA, authnClaims(nil))); code != 200 {
		t.Errorf("A: %d %s", code, msg)
	}
}

// TestAuthnJWKSDownAtStart: a key server down at load does not fail the
// load; tokens get 401 until it answers, then pass without a reload.
func TestAuthnJWKSDownAtStart(t *testing.T) {
	t.Parallel()
	k := authnTestKeys(t)
	srv := newAuthnJWKSServer(t, k.jwks(t, k.rsaA), 0)
	srv.down.Store(true)
	var logs testproc.Output
	start := time.Now()
	h := authnChain(t, authnJWKSYAML(srv.URL, "5m", "1s"), authnEnv(&logs), nil, nil)
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("load took %s with the key server down", d)
	}
	if !strings.Contains(logs.String(), "fetching JWKS failed") || !strings.Contains(logs.String(), "503") {
		t.Errorf("no warning logged: %s", logs.String())
	}
	tok := k.sign(t, k.rsaA, authnClaims(nil))
	rec := authnDo(h, "/a", http.Header{"Authorization": {"Bearer " + tok}})
	authnCheck(t, rec, 401, []string{`Bearer realm="meshgate", error="invalid_token", error_description="signing keys unavailable"`}, "signing keys unavailable")

	srv.down.Store(false)
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, _ := authnStatus(h, "/a", tok)
		if code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %d 10s after the key server came up", code)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestAuthnJWKSNoLeak: closing the resources stops every goroutine of a
// JWKS cache, and validating fetches nothing and starts nothing. Not
// parallel: goleak looks at every goroutine.
func TestAuthnJWKSNoLeak(t *testing.T) {
	opts := goleak.IgnoreCurrent()
	k := authnTestKeys(t)
	srv := newAuthnJWKSServer(t, k.jwks(t, k.rsaA), 0)
	tr := &http.Transport{}
	env := authnEnv(nil)
	env.HTTPClient = &http.Client{Transport: tr}
	yaml := authnJWKSYAML(srv.URL, "1s", "1s")

	res := newResources()
	set, err := compileSources([]Source{{Name: "p.yaml", Dir: t.TempDir(), Data: []byte(yaml)}}, env, res, false, false)
	if err != nil {
		t.Fatal(err)
	}
	h := set.Chain(RouteInfo{Name: "r"}, authnEcho())
	// Exercise the refetch path too.
	time.Sleep(1100 * time.Millisecond)
	if code, _ := authnStatus(h, "/a", authnSignWith(t, jwa.RS256(), k.rsaB.priv, "nope", authnClaims(nil))); code != 401 {
		t.Errorf("unknown kid: %d", code)
	}
	if err := res.close(); err != nil {
		t.Fatal(err)
	}

	hits := srv.hits.Load()
	if _, err := Validate([]Source{{Name: "p.yaml", Dir: t.TempDir(), Data: []byte(yaml)}}, false); err != nil {
		t.Fatal(err)
	}
	if n := srv.hits.Load(); n != hits {
		t.Errorf("validate fetched the JWKS (%d fetches)", n-hits)
	}
	srv.Close()
	tr.CloseIdleConnections()
	goleak.VerifyNone(t, opts)
}

func BenchmarkAuthnJWT(b *testing.B) {
	k := authnKeysOnce()
	dir := b.TempDir()
	set := jwk.NewSet()
	jk, _ := jwk.Import(k.rsaA.pub)
	_ = jk.Set(jwk.KeyIDKey, "a")
	_ = set.AddKey(jk)
	data, _ := json.Marshal(set)
	yaml := `policies:
  - name: jwt
    applies_to: {all: true}
    authn:
      jwt: {issuer: ` + authnIssuer + `, jwks_file: ` + dir + `/keys.json, forward_claims: {sub: X-User-Id}}
`
	if err := os.WriteFile(dir+"/keys.json", data, 0o600); err != nil {
		b.Fatal(err)
	}
	s, err := compileSources([]Source{{Name: "p.yaml", Dir: dir, Data: []byte(yaml)}}, authnEnv(nil), newResources(), false, false)
	if err != nil {
		b.Fatal(err)
	}
	h := s.Chain(RouteInfo{Name: "r"}, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	tok := authnSignWith(b, jwa.RS256(), k.rsaA.priv, "a", authnClaims(nil))
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Header["Authorization"] = []string{"Bearer " + tok}
		h.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatalf("status %d", w.Code)
		}
	}
}

// TestAuthnJWTVerifiedCache checks the cache of verified tokens: a token
// is served from it only while it has not expired and only with the key
// set that verified it.
func TestAuthnJWTVerifiedCache(t *testing.T) {
	t.Parallel()
	k := authnTestKeys(t)
	var now atomic.Pointer[time.Time]
	start := authnNow
	now.Store(&start)
	env := authnEnv(nil)
	env.Now = func() time.Time { return *now.Load() }
	srv := newAuthnJWKSServer(t, k.jwks(t, k.rsaA), 0)
	set, err := authnCompile(t, "", authnJWKSYAML(srv.URL, "1s", "1s"), env, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := set.Chain(RouteInfo{Name: "r", Service: "s"}, authnEcho())
	tok := k.sign(t, k.rsaA, authnClaims(map[string]any{"exp": authnNow.Add(time.Minute)}))
	for i := range 3 {
		if status, body := authnStatus(h, "/a", tok); status != 200 {
			t.Fatalf("request %d: %d %s", i, status, body)
		}
	}
	// Past exp and the 30s skew, the cached token is refused.
	later := authnNow.Add(time.Minute + 31*time.Second)
	now.Store(&later)
	if status, body := authnStatus(h, "/a", tok); status != 401 || !strings.Contains(body, "token expired") {
		t.Fatalf("expired cached token: %d %s", status, body)
	}
	now.Store(&start)
	if status, _ := authnStatus(h, "/a", tok); status != 200 {
		t.Fatalf("token before its exp again: %d", status)
	}
	// The issuer drops key A: once the set is refreshed, the token that
	// verified under the old set is checked again, and refused.
	srv.set(k.jwks(t, k.rsaB))
	deadline := time.Now().Add(5 * time.Second)
	for {
		status, body := authnStatus(h, "/a", tok)
		if status == 401 {
			if !strings.Contains(body, "unknown signing key") {
				t.Errorf("after rotation: %s", body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the cached token was still accepted 5s after its key left the set")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestAuthnJWKSEmptyRefreshKeepsKeys: a refresh that returns no usable key
// (an empty set, or only keys meshgate refuses) keeps the keys in use.
func TestAuthnJWKSEmptyRefreshKeepsKeys(t *testing.T) {
	t.Parallel()
	k := authnTestKeys(t)
	srv := newAuthnJWKSServer(t, k.jwks(t, k.rsaA), 0)
	h := authnChain(t, authnJWKSYAML(srv.URL, "1s", "1s"), nil, nil, nil)
	tokA := k.sign(t, k.rsaA, authnClaims(nil))
	if code, msg := authnStatus(h, "/a", tokA); code != 200 {
		t.Fatalf("A: %d %s", code, msg)
	}
	srv.set(`{"keys":[]}`)
	before := srv.hits.Load()
	deadline := time.Now().Add(5 * time.Second)
	for srv.hits.Load() < before+2 { // two refreshes served the empty set
		if time.Now().After(deadline) {
			t.Fatal("no refresh within 5s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, msg := authnStatus(h, "/a", tokA); code != 200 {
		t.Errorf("A after an empty refresh: %d %s, want 200", code, msg)
	}
}
