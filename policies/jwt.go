package policies

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/meshgate/meshgate/config"
)

// JWT defaults and bounds (types.go documents them).
const (
	defaultClockSkew          = 30 * time.Second
	maxClockSkew              = 5 * time.Minute
	defaultRefreshInterval    = 5 * time.Minute
	defaultMinRefreshInterval = 10 * time.Second
	minRefreshBound           = time.Second
	minHMACSecret             = 32
	// maxTokenSize bounds the tokens meshgate parses; real ones are a few
	// hundred bytes to a few KiB.
	maxTokenSize = 16 << 10
	// maxJWKSSize bounds a JWKS document, fetched or read.
	maxJWKSSize = 1 << 20
	// minRSABits is the smallest RSA modulus accepted (RFC 7518 §3.3).
	minRSABits = 2048
)

// JWKS fetching: the first fetch is short so that a load is not held up
// by a slow key server; later ones may take longer. Failures are retried
// with back-off from jwksRetryMin up to jwksRetryMax (never beyond the
// refresh interval).
const (
	jwksInitialTimeout = 3 * time.Second
	jwksFetchTimeout   = 5 * time.Second
	jwksRetryMin       = time.Second
	jwksRetryMax       = time.Minute
)

// keyKind is the kind of key an algorithm verifies with.
type keyKind uint8

const (
	kindRSA keyKind = iota + 1
	kindP256
	kindP384
	kindP521
	kindEd25519
	kindHMAC
)

// jwtAlgorithms are the signature algorithms meshgate accepts, with the
// kind of key each needs, in the order messages list them.
var jwtAlgorithms = []struct {
	name string
	kind keyKind
}{
	{"RS256", kindRSA}, {"RS384", kindRSA}, {"RS512", kindRSA},
	{"PS256", kindRSA}, {"PS384", kindRSA}, {"PS512", kindRSA},
	{"ES256", kindP256}, {"ES384", kindP384}, {"ES512", kindP521},
	{"EdDSA", kindEd25519},
	{"HS256", kindHMAC}, {"HS384", kindHMAC}, {"HS512", kindHMAC},
}

// allowedAlg is one algorithm a verifier accepts.
type allowedAlg struct {
	alg  jwa.SignatureAlgorithm
	kind keyKind
}

// tokenError is why a token was refused. Its text is safe to send to the
// client (in the JSON body and in the WWW-Authenticate error_description):
// it never contains the token or key material.
type tokenError uint8

const (
	tokOK tokenError = iota
	tokMalformed
	tokBadSignature
	tokUnknownKey
	tokNoKeys
	tokAlgorithm
	tokExpired
	tokNotYetValid
	tokIssuedInFuture
	tokIssuer
	tokAudience
	tokNoExpiry
	tokClaims
	numTokenErrors
)

var tokenErrorText = [numTokenErrors]string{
	tokOK:             "",
	tokMalformed:      "malformed token",
	tokBadSignature:   "bad signature",
	tokUnknownKey:     "unknown signing key",
	tokNoKeys:         "signing keys unavailable",
	tokAlgorithm:      "algorithm not allowed",
	tokExpired:        "token expired",
	tokNotYetValid:    "token not yet valid",
	tokIssuedInFuture: "token issued in the future",
	tokIssuer:         "wrong issuer",
	tokAudience:       "wrong audience",
	tokNoExpiry:       "token has no expiry",
	tokClaims:         "invalid claims",
}

func (e tokenError) Error() string { return tokenErrorText[e] }

// verifyKey is a public key (or HMAC secret) ready for verification:
// parsed and exported once, when the key set is loaded.
type verifyKey struct {
	kid  string
	alg  string // the JWK's "alg"; "" when it has none
	kind keyKind
	key  any // *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey or []byte
}

// usableFor reports whether the key may verify a signature made with alg.
// The key's type must be the algorithm's (so that an HMAC algorithm is
// never tried with a public key: RFC 8725 §2.1), and a key that names its
// algorithm only serves that one.
func (k *verifyKey) usableFor(a allowedAlg) bool {
	return k.kind == a.kind && (k.alg == "" || k.alg == a.alg.String())
}

// keySet is an immutable set of verification keys.
type keySet struct {
	all   []verifyKey
	byKid map[string][]verifyKey
}

// lookup returns the keys to try for a token's kid; none when the token
// names a kid the set lacks. A token without a kid, or a set whose keys
// have no kids, tries every key.
func (ks *keySet) lookup(kid string, hasKid bool) []verifyKey {
	if !hasKid || len(ks.byKid) == 0 {
		return ks.all
	}
	return ks.byKid[kid]
}

// newKeySet converts a JWK set; it returns, for each key it skips, why.
// Symmetric keys are never taken from a JWKS: with them a public key set
// could verify HMAC tokens.
func newKeySet(set jwk.Set) (*keySet, []string) {
	ks := &keySet{byKid: make(map[string][]verifyKey)}
	var skipped []string
	for i := range set.Len() {
		key, _ := set.Key(i)
		kid, _ := key.KeyID()
		vk, err := toVerifyKey(key)
		if err != nil {
			skipped = append(skipped, fmt.Sprintf("key %d (kid %q): %v", i, kid, err))
			continue
		}
		vk.kid = kid
		ks.all = append(ks.all, vk)
		if kid != "" {
			ks.byKid[kid] = append(ks.byKid[kid], vk)
		}
	}
	return ks, skipped
}

// toVerifyKey exports the public key of a JWK.
func toVerifyKey(key jwk.Key) (verifyKey, error) {
	var vk verifyKey
	if use, ok := key.KeyUsage(); ok && use != "" && use != jwk.ForSignature.String() {
		return vk, fmt.Errorf("use %q is not for signatures", use)
	}
	if a, ok := key.Algorithm(); ok {
		vk.alg = a.String()
		if vk.alg == jwa.NoSignature().String() {
			return vk, errors.New(`alg "none"`)
		}
	}
	if key.KeyType() == jwa.OctetSeq() {
		return vk, errors.New("symmetric keys are not accepted from a key set; use hmac_secret_file")
	}
	pub, err := jwk.PublicKeyOf(key)
	if err != nil {
		return vk, fmt.Errorf("no public key: %w", err)
	}
	var raw any
	if err := jwk.Export(pub, &raw); err != nil {
		return vk, err
	}
	switch raw := raw.(type) {
	case *rsa.PublicKey:
		if raw.N.BitLen() < minRSABits {
			return vk, fmt.Errorf("RSA key of %d bits; want at least %d", raw.N.BitLen(), minRSABits)
		}
		vk.kind, vk.key = kindRSA, raw
	case *ecdsa.PublicKey:
		switch raw.Curve.Params().Name {
		case "P-256":
			vk.kind = kindP256
		case "P-384":
			vk.kind = kindP384
		case "P-521":
			vk.kind = kindP521
		default:
			return vk, fmt.Errorf("unsupported curve %s", raw.Curve.Params().Name)
		}
		vk.key = raw
	case ed25519.PublicKey:
		vk.kind, vk.key = kindEd25519, raw
	default:
		return vk, fmt.Errorf("unsupported key type %q", pub.KeyType())
	}
	return vk, nil
}

// keySource gives a verifier its keys.
type keySource interface {
	// keys returns the current set; nil while none has been loaded.
	keys() *keySet
	// refetch is called for a token with a kid the current set lacks: it
	// may fetch the set again (bounded) and returns the set to use.
	refetch(ctx context.Context) *keySet
}

// staticKeys are keys read at load: a JWKS file or an HMAC secret.
type staticKeys struct{ ks *keySet }

func (s staticKeys) keys() *keySet                   { return s.ks }
func (s staticKeys) refetch(context.Context) *keySet { return s.ks }

// jwtVerifier verifies the tokens of one policy's jwt.
type jwtVerifier struct {
	src  keySource
	algs []allowedAlg
	// parseOpts validate the claims of a verified payload.
	parseOpts []jwt.ParseOption

	header string // canonical header name
	bearer bool   // the header is Authorization, with the Bearer scheme
	query  string

	claims []forwardClaim

	// verified remembers tokens whose signature and claims checked out,
	// so that a client sending the same token on every request (the
	// common case) pays for the signature once, as Envoy's jwt_authn
	// cache does. An entry is used only with the key set that verified it
	// and only until the token expires.
	verified *shardedLRU[string, *verifiedToken]
	now      func() time.Time
	skew     time.Duration
}

// cached returns the cache entry of token, if any.
func (v *jwtVerifier) cached(token string) (*verifiedToken, bool) {
	if v.verified == nil {
		return nil, false
	}
	return v.verified.get(token)
}

// verifiedTokens bounds the verified-token cache of each jwt step.
const verifiedTokens = 4096

// verifiedToken is a cache entry: who the token names, the key set it
// was verified with, and when it expires (zero: no exp claim).
type verifiedToken struct {
	id   Identity
	keys *keySet
	exp  time.Time
}

// forwardClaim sets a header upstream from a claim.
type forwardClaim struct {
	claim  string
	header string // canonical
}

var _ jws.KeyProvider = (*jwtVerifier)(nil)

// FetchKeys gives jws.Verify the keys to try for a signature: only for an
// allowed algorithm, and only keys of that algorithm's type.
func (v *jwtVerifier) FetchKeys(ctx context.Context, sink jws.KeySink, sig *jws.Signature, _ *jws.Message) error {
	hdr := sig.ProtectedHeaders()
	if hdr == nil {
		return tokMalformed
	}
	alg, ok := hdr.Algorithm()
	if !ok {
		return tokMalformed
	}
	var a allowedAlg
	found := false
	for _, x := range v.algs {
		if x.alg.String() == alg.String() {
			a, found = x, true
			break
		}
	}
	if !found {
		return tokAlgorithm
	}
	kid, hasKid := hdr.KeyID()
	ks := v.src.keys()
	var cands []verifyKey
	if ks != nil {
		cands = ks.lookup(kid, hasKid)
	}
	if len(cands) == 0 {
		// An unknown kid may be a key the issuer just rotated in; the
		// source refetches its set at most every min_refresh_interval.
		if ks = v.src.refetch(ctx); ks != nil {
			cands = ks.lookup(kid, hasKid)
		}
		if len(cands) == 0 {
			if ks == nil || len(ks.all) == 0 {
				return tokNoKeys
			}
			return tokUnknownKey
		}
	}
	n := 0
	for i := range cands {
		if cands[i].usableFor(a) {
			sink.Key(a.alg, cands[i].key)
			n++
		}
	}
	if n == 0 {
		// The keys named cannot make this algorithm's signatures.
		return tokAlgorithm
	}
	return nil
}

// verify checks a compact JWS token and its claims and returns who it
// names.
func (v *jwtVerifier) verify(ctx context.Context, token string) (Identity, tokenError) {
	if token == "" || len(token) > maxTokenSize || strings.Count(token, ".") != 2 {
		return Identity{}, tokMalformed
	}
	ks := v.src.keys()
	if e, ok := v.cached(token); ok {
		// nbf and iat checked out before and time only moves on; exp
		// may have passed since.
		if e.keys == ks && (e.exp.IsZero() || !v.now().After(e.exp.Add(v.skew))) {
			return e.id, tokOK
		}
		v.verified.remove(token)
	}
	payload, err := jws.Verify([]byte(token),
		jws.WithCompact(),
		jws.WithKeyProvider(v),
		jws.WithContext(ctx),
		// A "crit" header names extensions the signer requires the
		// verifier to understand; meshgate understands none (RFC 7515
		// §4.1.11).
		jws.WithCritValidation(true),
		jws.WithAlgorithmMatch(true),
	)
	if err != nil {
		var te tokenError
		switch {
		case errors.As(err, &te):
			return Identity{}, te
		case errors.Is(err, jws.VerificationError()):
			return Identity{}, tokBadSignature
		default:
			return Identity{}, tokMalformed
		}
	}
	if len(payload) == 0 || payload[0] != '{' {
		// Not a JWT claims set (a nested token or another payload).
		return Identity{}, tokMalformed
	}
	parsed, err := jwt.Parse(payload, v.parseOpts...)
	if err != nil {
		return Identity{}, claimsError(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		return Identity{}, tokMalformed
	}
	sub, _ := claims["sub"].(string)
	id := Identity{Method: "jwt", Principal: sub, Claims: claims}
	if v.verified != nil && ks != nil && ks == v.src.keys() {
		exp, _ := parsed.Expiration()
		v.verified.add(token, &verifiedToken{id: id, keys: ks, exp: exp})
	}
	return id, tokOK
}

// claimsError classifies a claim validation failure.
func claimsError(err error) tokenError {
	var te tokenError
	switch {
	case errors.As(err, &te):
		return te
	case errors.Is(err, jwt.TokenExpiredError()):
		return tokExpired
	case errors.Is(err, jwt.TokenNotYetValidError()):
		return tokNotYetValid
	case errors.Is(err, jwt.InvalidIssuedAtError()):
		return tokIssuedInFuture
	case errors.Is(err, jwt.InvalidIssuerError()):
		return tokIssuer
	case errors.Is(err, jwt.InvalidAudienceError()):
		return tokAudience
	case errors.Is(err, jwt.MissingRequiredClaimError()):
		return tokNoExpiry // exp is the only claim required
	case errors.Is(err, jwt.ValidateError()):
		return tokClaims
	default:
		return tokMalformed
	}
}

// audienceValidator accepts a token whose "aud" contains one of want.
func audienceValidator(want []string) jwt.Validator {
	return jwt.ValidatorFunc(func(_ context.Context, t jwt.Token) error {
		aud, _ := t.Audience()
		for _, a := range aud {
			if slices.Contains(want, a) {
				return nil
			}
		}
		return tokAudience
	})
}

// credential returns the token of a request, where it was found, and
// whether the header had more than one value (ambiguous, refused).
func (v *jwtVerifier) credential(r *http.Request) (tok string, where credPlace, multiple bool) {
	if vals := r.Header[v.header]; len(vals) > 0 {
		val := vals[0]
		if !v.bearer {
			return strings.TrimSpace(val), inHeader, len(vals) > 1
		}
		// RFC 6750 §2.1; the scheme is case-insensitive (RFC 9110
		// §11.1). Another scheme (Basic) is not a bearer token: it is
		// left for the upstream.
		if len(val) >= 6 && strings.EqualFold(val[:6], "Bearer") && (len(val) == 6 || val[6] == ' ') {
			return strings.TrimSpace(val[6:]), inHeader, len(vals) > 1
		}
	}
	if v.query != "" {
		if val, ok := queryParam(r.URL.RawQuery, v.query); ok {
			return val, inQuery, false
		}
	}
	return "", nowhere, false
}

// forwardClaims sets the forward_claims headers of a verified token. The
// client's own headers of those names were removed already.
func (v *jwtVerifier) forwardClaims(h http.Header, claims map[string]any) {
	for _, fc := range v.claims {
		val, ok := claimHeaderValue(claims[fc.claim])
		if ok {
			h[fc.header] = []string{val}
		}
	}
}

// claimHeaderValue renders a claim as a header value: strings as they
// are, numbers and booleans as JSON, lists joined with ",". A missing
// claim, or one whose value could not be sent safely in a header (control
// characters), sets nothing.
func claimHeaderValue(c any) (string, bool) {
	var s string
	switch c := c.(type) {
	case nil:
		return "", false
	case string:
		s = c
	case []any:
		parts := make([]string, 0, len(c))
		for _, e := range c {
			p, ok := claimHeaderValue(e)
			if !ok {
				return "", false
			}
			parts = append(parts, p)
		}
		s = strings.Join(parts, ",")
	default:
		b, err := json.Marshal(c)
		if err != nil {
			return "", false
		}
		s = string(b)
	}
	for i := 0; i < len(s); i++ {
		if b := s[i]; b < ' ' && b != '\t' || b == 0x7f {
			return "", false
		}
	}
	return s, true
}

// compileJWT checks a policy's jwt, writes its defaults and builds its
// verifier; nil when something is wrong (the problems are recorded).
func (c *compiler) compileJWT(path string, spec *JWT) *jwtVerifier {
	bad := false
	fail := func(field, format string, args ...any) {
		c.errorf(field, format, args...)
		bad = true
	}
	f := func(name string) string { return config.Field(path, name) }

	if spec.Issuer == "" {
		fail(f("issuer"), `required: the "iss" every token must carry`)
	}
	for i, a := range spec.Audiences {
		if a == "" {
			fail(config.Index(f("audiences"), i), "empty audience")
		}
	}

	// Exactly one key source.
	var sources []string
	for _, s := range []struct{ name, val string }{
		{"jwks_url", spec.JWKSURL}, {"jwks_file", spec.JWKSFile}, {"hmac_secret_file", spec.HMACSecretFile},
	} {
		if s.val == "" {
			continue
		}
		if len(sources) > 0 {
			fail(f(s.name), "only one key source is allowed; %s is given too", sources[0])
		}
		sources = append(sources, s.name)
	}
	if len(sources) == 0 {
		fail(path, "want exactly one key source: jwks_url, jwks_file or hmac_secret_file")
	}
	hmac := spec.HMACSecretFile != "" && spec.JWKSURL == "" && spec.JWKSFile == ""

	// Algorithms.
	if len(spec.Algorithms) == 0 {
		if hmac {
			spec.Algorithms = []string{"HS256"}
		} else {
			spec.Algorithms = []string{"RS256", "ES256", "EdDSA"}
		}
	}
	var algs []allowedAlg
	for i, name := range spec.Algorithms {
		fp := config.Index(f("algorithms"), i)
		a, ok := lookupAlgorithm(name)
		switch {
		case strings.EqualFold(name, "none"):
			fail(fp, `"none" is never accepted: tokens must be signed`)
		case !ok:
			fail(fp, "%q is not a supported algorithm; want one of %s", name, algorithmNames())
		case slices.ContainsFunc(algs, func(x allowedAlg) bool { return x.alg == a.alg }):
			fail(fp, "%q is listed twice", name)
		case a.kind == kindHMAC && len(sources) > 0 && !hmac:
			fail(fp, "%q is an HMAC algorithm: it needs hmac_secret_file, not public keys (accepting it with public keys allows algorithm confusion)", name)
		case a.kind != kindHMAC && hmac:
			fail(fp, "%q needs public keys (jwks_url or jwks_file); hmac_secret_file allows HS256, HS384, HS512", name)
		default:
			algs = append(algs, a)
		}
	}

	// Durations.
	if !c.doc.IsSet(f("clock_skew")) {
		spec.ClockSkew = config.Duration(defaultClockSkew)
	} else if spec.ClockSkew.D() > maxClockSkew {
		fail(f("clock_skew"), "%s is more than the maximum %s", spec.ClockSkew, config.Duration(maxClockSkew))
	}
	if spec.JWKSURL != "" {
		if spec.RefreshInterval == 0 {
			spec.RefreshInterval = config.Duration(defaultRefreshInterval)
		} else if spec.RefreshInterval.D() < minRefreshBound {
			fail(f("refresh_interval"), "%s is less than the minimum 1s", spec.RefreshInterval)
		}
		if spec.MinRefreshInterval == 0 {
			spec.MinRefreshInterval = config.Duration(defaultMinRefreshInterval)
		} else if spec.MinRefreshInterval.D() < minRefreshBound {
			fail(f("min_refresh_interval"), "%s is less than the minimum 1s", spec.MinRefreshInterval)
		}
	} else {
		if spec.RefreshInterval != 0 {
			fail(f("refresh_interval"), "applies only to jwks_url")
		}
		if spec.MinRefreshInterval != 0 {
			fail(f("min_refresh_interval"), "applies only to jwks_url")
		}
	}

	// Where the token is.
	if spec.Header == "" {
		spec.Header = "Authorization"
	} else if !isToken(spec.Header) {
		fail(f("header"), "%q is not a valid header name", spec.Header)
	}
	if spec.Query != "" && !isQueryName(spec.Query) {
		fail(f("query"), "%q is not a valid query parameter name; want letters, digits and -._~", spec.Query)
	}

	// Forwarded claims, in a stable order.
	claimNames := make([]string, 0, len(spec.ForwardClaims))
	for claim := range spec.ForwardClaims {
		claimNames = append(claimNames, claim)
	}
	sort.Strings(claimNames)
	var claims []forwardClaim
	byHeader := make(map[string]string)
	for _, claim := range claimNames {
		h := spec.ForwardClaims[claim]
		fp := config.Key(f("forward_claims"), claim)
		switch {
		case claim == "":
			fail(fp, "empty claim name")
		case !isToken(h):
			fail(fp, "%q is not a valid header name", h)
		case strings.EqualFold(h, spec.Header):
			fail(fp, "%q is the header the token comes in", h)
		default:
			ch := textproto.CanonicalMIMEHeaderKey(h)
			if other, dup := byHeader[ch]; dup {
				fail(fp, "header %q is also set from claim %q", h, other)
				continue
			}
			byHeader[ch] = claim
			claims = append(claims, forwardClaim{claim: claim, header: ch})
		}
	}

	// Keys. Files are read now, so that a missing or bad file is a
	// problem of this load; the URL is checked, and fetched unless
	// validating.
	var src keySource
	switch {
	case spec.JWKSURL != "":
		if err := checkJWKSURL(spec.JWKSURL); err != nil {
			fail(f("jwks_url"), "%v", err)
		}
	case spec.JWKSFile != "":
		data, ok := c.readKeyFile(f("jwks_file"), spec.JWKSFile)
		if !ok {
			bad = true
			break
		}
		set, err := jwk.Parse(data)
		if err != nil {
			fail(f("jwks_file"), "%q is not a JSON Web Key Set: %v", spec.JWKSFile, err)
			break
		}
		ks, skipped := newKeySet(set)
		if len(ks.all) == 0 {
			msg := fmt.Sprintf("%q has no usable signing key (RSA of 2048 bits or more, EC P-256/P-384/P-521, Ed25519)", spec.JWKSFile)
			if len(skipped) > 0 {
				msg += ": " + strings.Join(skipped, "; ")
			}
			fail(f("jwks_file"), "%s", msg)
			break
		}
		src = staticKeys{ks}
	case spec.HMACSecretFile != "":
		data, ok := c.readKeyFile(f("hmac_secret_file"), spec.HMACSecretFile)
		if !ok {
			bad = true
			break
		}
		// A trailing newline (echo, editors) is not part of the secret.
		secret := []byte(strings.TrimRight(string(data), "\r\n"))
		if len(secret) < minHMACSecret {
			fail(f("hmac_secret_file"), "the secret in %q is %d bytes; want at least %d", spec.HMACSecretFile, len(secret), minHMACSecret)
			break
		}
		vk := verifyKey{kind: kindHMAC, key: secret}
		src = staticKeys{&keySet{all: []verifyKey{vk}}}
	}
	if bad {
		return nil
	}

	if spec.JWKSURL != "" {
		if c.validateOnly {
			// meshgate validate fetches nothing and starts nothing.
			src = staticKeys{}
		} else {
			cache, err := c.acquireJWKS(spec)
			if err != nil {
				c.errorf(f("jwks_url"), "%v", err)
				return nil
			}
			src = cache
		}
	}

	opts := []jwt.ParseOption{
		jwt.WithVerify(false), // the signature was verified by jws.Verify
		jwt.WithValidate(true),
		jwt.WithIssuer(spec.Issuer),
		jwt.WithAcceptableSkew(spec.ClockSkew.D()),
		jwt.WithClock(jwt.ClockFunc(c.env.Now)),
	}
	if len(spec.Audiences) > 0 {
		opts = append(opts, jwt.WithValidator(audienceValidator(slices.Clone(spec.Audiences))))
	}
	if !spec.AllowMissingExp {
		// A token without exp would be good for ever (RFC 8725 §3.10).
		opts = append(opts, jwt.WithRequiredClaim("exp"))
	}
	header := textproto.CanonicalMIMEHeaderKey(spec.Header)
	return &jwtVerifier{
		src:       src,
		algs:      algs,
		parseOpts: opts,
		now:       c.env.Now,
		skew:      spec.ClockSkew.D(),
		verified:  newShardedLRU[string, *verifiedToken](verifiedTokens, maphash.String),
		header:    header,
		bearer:    header == "Authorization",
		query:     spec.Query,
		claims:    claims,
	}
}

// isQueryName reports whether s is a query parameter name meshgate
// accepts: RFC 3986 unreserved characters, so that it needs no escaping.
func isQueryName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	return true
}

// lookupAlgorithm returns the algorithm of a name, as written in a
// token's "alg" (case-sensitive, RFC 7515 §4.1.1).
func lookupAlgorithm(name string) (allowedAlg, bool) {
	for _, a := range jwtAlgorithms {
		if a.name == name {
			alg, ok := jwa.LookupSignatureAlgorithm(name)
			if !ok {
				return allowedAlg{}, false
			}
			return allowedAlg{alg: alg, kind: a.kind}, true
		}
	}
	return allowedAlg{}, false
}

func algorithmNames() string {
	names := make([]string, len(jwtAlgorithms))
	for i, a := range jwtAlgorithms {
		names[i] = a.name
	}
	return strings.Join(names, ", ")
}

// checkJWKSURL checks the syntax of a jwks_url.
func checkJWKSURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an http or https URL", s)
	}
	if u.Fragment != "" {
		return fmt.Errorf("%q has a fragment; remove it", s)
	}
	return nil
}

// readKeyFile reads a key file named in a policy: relative to the policy
// file's directory, absolute for policies from Consul KV.
func (c *compiler) readKeyFile(field, name string) ([]byte, bool) {
	p := name
	if !filepath.IsAbs(p) {
		if c.dir == "" {
			c.errorf(field, "%q is relative, but this policy has no directory (it comes from Consul KV); give an absolute path", name)
			return nil, false
		}
		p = filepath.Join(c.dir, p)
	}
	fh, err := os.Open(p)
	if err != nil {
		c.errorf(field, "cannot read %q: %v", name, pathErr(err))
		return nil, false
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, maxJWKSSize+1))
	if err != nil {
		c.errorf(field, "cannot read %q: %v", name, pathErr(err))
		return nil, false
	}
	if len(data) > maxJWKSSize {
		c.errorf(field, "%q is larger than %s", name, config.Size(maxJWKSSize))
		return nil, false
	}
	return data, true
}

// pathErr drops the path from an *fs.PathError, which the message names
// already as the user wrote it.
func pathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// acquireJWKS returns the shared cache of a JWKS URL, created (and
// fetched) when no set in force uses it with the same refresh settings.
func (c *compiler) acquireJWKS(spec *JWT) (*jwksCache, error) {
	key := fmt.Sprintf("jwks:%s refresh=%s min_refresh=%s", spec.JWKSURL, spec.RefreshInterval, spec.MinRefreshInterval)
	logger := c.env.Logger
	if logger == nil {
		logger = slog.Default()
	}
	res, err := c.acquire(key, func() (io.Closer, error) {
		return startJWKSCache(spec.JWKSURL, c.env.HTTPClient, logger, spec.RefreshInterval.D(), spec.MinRefreshInterval.D()), nil
	})
	if err != nil {
		return nil, err
	}
	cache, ok := res.(*jwksCache)
	if !ok {
		return nil, fmt.Errorf("internal: resource %q is a %T", key, res)
	}
	return cache, nil
}

// jwksCache keeps the keys of a JWKS URL: fetched when created, refreshed
// every refresh interval by one goroutine, and refetched for a token with
// an unknown kid at most once per minimum refresh interval, however many
// such tokens arrive. Requests read the current set without locks; a
// failed refresh keeps the keys in use.
type jwksCache struct {
	url        string
	logURL     string // without credentials
	client     *http.Client
	logger     *slog.Logger
	refresh    time.Duration
	minRefresh time.Duration

	ks atomic.Pointer[keySet]

	mu          sync.Mutex
	lastAttempt time.Time     // start of the latest fetch, or of the one requested
	inflight    chan struct{} // closed when the fetch under way or requested ends

	kick      chan struct{} // asks the loop for a fetch now
	cancel    context.CancelFunc
	done      chan struct{} // closed when the loop has returned
	closeOnce sync.Once
}

var (
	_ keySource = (*jwksCache)(nil)
	_ io.Closer = (*jwksCache)(nil)
)

// startJWKSCache fetches the set once, briefly, and starts the refresh
// loop. A failed first fetch is logged and retried in the background;
// until one succeeds tokens are refused with 401.
func startJWKSCache(rawURL string, client *http.Client, logger *slog.Logger, refresh, minRefresh time.Duration) *jwksCache {
	logURL := redactURL(rawURL)
	ctx, cancel := context.WithCancel(context.Background())
	c := &jwksCache{
		url:        rawURL,
		logURL:     logURL,
		client:     client,
		logger:     logger,
		refresh:    refresh,
		minRefresh: minRefresh,
		kick:       make(chan struct{}, 1),
		cancel:     cancel,
		done:       make(chan struct{}),
	}
	ictx, icancel := context.WithTimeout(ctx, jwksInitialTimeout)
	err := c.fetch(ictx)
	icancel()
	next := refresh
	if err != nil {
		logger.Warn("fetching JWKS failed; tokens are refused until a retry succeeds", "url", logURL, "error", err)
		next = jwksRetryMin
	}
	go c.run(ctx, next, err != nil)
	return c
}

func (c *jwksCache) keys() *keySet { return c.ks.Load() }

// refetch asks for a fetch for a token with an unknown kid and waits for
// it, unless one started less than the minimum refresh interval ago: then
// it returns the current set at once. Concurrent callers share one fetch.
func (c *jwksCache) refetch(ctx context.Context) *keySet {
	c.mu.Lock()
	ch := c.inflight
	if ch == nil {
		if time.Since(c.lastAttempt) < c.minRefresh {
			c.mu.Unlock()
			return c.ks.Load()
		}
		ch = make(chan struct{})
		c.inflight = ch
		c.lastAttempt = time.Now()
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
	c.mu.Unlock()
	select {
	case <-ch:
	case <-ctx.Done():
	case <-c.done:
	}
	return c.ks.Load()
}

// run refreshes the set until the cache is closed.
func (c *jwksCache) run(ctx context.Context, next time.Duration, failing bool) {
	defer close(c.done)
	backoff := jwksRetryMin
	if failing {
		backoff = min(2*jwksRetryMin, c.maxRetry())
	}
	t := time.NewTimer(next)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-c.kick:
		}
		err := c.fetch(ctx)
		if ctx.Err() != nil {
			return
		}
		switch {
		case err != nil:
			if c.ks.Load() == nil {
				c.logger.Warn("fetching JWKS failed; tokens are refused until a retry succeeds", "url", c.logURL, "error", err, "retry_in", backoff)
			} else {
				c.logger.Warn("refreshing JWKS failed; keeping the keys in use", "url", c.logURL, "error", err, "retry_in", backoff)
			}
			next = backoff
			backoff = min(2*backoff, c.maxRetry())
		default:
			if failing {
				c.logger.Info("fetched JWKS", "url", c.logURL)
			}
			next = c.refresh
			backoff = jwksRetryMin
		}
		failing = err != nil
		t.Reset(next)
	}
}

func (c *jwksCache) maxRetry() time.Duration { return min(jwksRetryMax, c.refresh) }

// fetch gets the set and, when it is good, puts it in force. Requests
// waiting for a refetch are released when it ends.
func (c *jwksCache) fetch(ctx context.Context) error {
	c.mu.Lock()
	c.lastAttempt = time.Now()
	if c.inflight == nil {
		c.inflight = make(chan struct{})
	}
	ch := c.inflight
	// This fetch answers a pending request for one too.
	select {
	case <-c.kick:
	default:
	}
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		close(ch)
		c.inflight = nil
		c.mu.Unlock()
	}()

	ks, err := c.get(ctx)
	if err != nil {
		return err
	}
	c.ks.Store(ks)
	return nil
}

// get fetches and parses the set.
func (c *jwksCache) get(ctx context.Context) (*keySet, error) {
	ctx, cancel := context.WithTimeout(ctx, jwksFetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("status %s", resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading the key set: %w", err)
	}
	if len(data) > maxJWKSSize {
		return nil, fmt.Errorf("the key set is larger than %s", config.Size(maxJWKSSize))
	}
	set, err := jwk.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("parsing the key set: %w", err)
	}
	ks, skipped := newKeySet(set)
	if len(skipped) > 0 {
		c.logger.Warn("JWKS keys skipped", "url", c.logURL, "skipped", strings.Join(skipped, "; "))
	}
	if len(ks.all) == 0 {
		// An empty or unusable set is an error, not a rotation: the keys
		// in use stay rather than every token being refused.
		return nil, errors.New("the key set has no usable signing key")
	}
	return ks, nil
}

// Close stops the refresh loop and waits for it.
func (c *jwksCache) Close() error {
	c.closeOnce.Do(func() {
		c.cancel()
		<-c.done
	})
	return nil
}
