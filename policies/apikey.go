package policies

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"net/textproto"
	"strings"

	"github.com/meshgate/meshgate/config"
)

// HashAPIKey returns the hex SHA-256 of an API key: the value of
// api_keys.keys[].sha256 that accepts it ("meshgate hash-key" prints it).
func HashAPIKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// apiKeyVerifier checks the API keys of one policy.
type apiKeyVerifier struct {
	header      string // canonical header name
	headerName  string // as written, for the challenge
	query       string
	hashes      [][sha256.Size]byte
	names       []string
	forwardName string // canonical header name; "" for none
}

// credential returns the key of a request, where it was found, and
// whether the header had more than one value (ambiguous, refused).
func (v *apiKeyVerifier) credential(r *http.Request) (key string, where credPlace, multiple bool) {
	if vals := r.Header[v.header]; len(vals) > 0 {
		return vals[0], inHeader, len(vals) > 1
	}
	if v.query != "" {
		if val, ok := queryParam(r.URL.RawQuery, v.query); ok {
			return val, inQuery, false
		}
	}
	return "", nowhere, false
}

// match returns the name of the key, if it is one of the policy's. The
// key is hashed once and compared with every stored hash in constant
// time, so that the time taken says nothing about which hash, or how
// much of one, matched.
func (v *apiKeyVerifier) match(key string) (string, bool) {
	sum := sha256.Sum256([]byte(key))
	found := -1
	for i := range v.hashes {
		if subtle.ConstantTimeCompare(sum[:], v.hashes[i][:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return "", false
	}
	return v.names[found], true
}

// compileAPIKeys checks a policy's api_keys, writes its defaults and
// builds its verifier; nil when something is wrong (the problems are
// recorded).
func (c *compiler) compileAPIKeys(path string, spec *APIKeys) *apiKeyVerifier {
	bad := false
	fail := func(field, format string, args ...any) {
		c.errorf(field, format, args...)
		bad = true
	}
	f := func(name string) string { return config.Field(path, name) }

	if spec.Header == "" {
		spec.Header = "X-API-Key"
	} else if !isToken(spec.Header) {
		fail(f("header"), "%q is not a valid header name", spec.Header)
	}
	if spec.Query != "" && !isQueryName(spec.Query) {
		fail(f("query"), "%q is not a valid query parameter name; want letters, digits and -._~", spec.Query)
	}
	if spec.ForwardNameHeader != "" {
		switch {
		case !isToken(spec.ForwardNameHeader):
			fail(f("forward_name_header"), "%q is not a valid header name", spec.ForwardNameHeader)
		case strings.EqualFold(spec.ForwardNameHeader, spec.Header):
			fail(f("forward_name_header"), "%q is the header the key comes in", spec.ForwardNameHeader)
		}
	}
	if len(spec.Keys) == 0 && !c.doc.Bad(f("keys")) {
		fail(f("keys"), "want at least one key")
	}
	v := &apiKeyVerifier{query: spec.Query}
	names := make(map[string]int, len(spec.Keys))
	hashes := make(map[[sha256.Size]byte]int, len(spec.Keys))
	for i := range spec.Keys {
		k := &spec.Keys[i]
		kp := config.Index(f("keys"), i)
		switch {
		case k.Name == "":
			fail(config.Field(kp, "name"), "required")
		case !namePattern.MatchString(k.Name):
			fail(config.Field(kp, "name"), "%q is not a valid name; want letters, digits, '.', '_' and '-', starting with a letter or digit", k.Name)
		default:
			if j, dup := names[k.Name]; dup {
				fail(config.Field(kp, "name"), "duplicate key name %q; first used by keys[%d]", k.Name, j)
			}
			names[k.Name] = i
		}
		var sum [sha256.Size]byte
		if len(k.SHA256) != 2*sha256.Size {
			fail(config.Field(kp, "sha256"), "want the 64 hex digits of the key's SHA-256 (meshgate hash-key prints them), got %d characters", len(k.SHA256))
			continue
		}
		if _, err := hex.Decode(sum[:], []byte(k.SHA256)); err != nil {
			fail(config.Field(kp, "sha256"), "want the 64 hex digits of the key's SHA-256 (meshgate hash-key prints them): %v", err)
			continue
		}
		if j, dup := hashes[sum]; dup {
			fail(config.Field(kp, "sha256"), "the same key as keys[%d]", j)
			continue
		}
		hashes[sum] = i
		v.hashes = append(v.hashes, sum)
		v.names = append(v.names, k.Name)
	}
	if bad {
		return nil
	}
	v.header = textproto.CanonicalMIMEHeaderKey(spec.Header)
	v.headerName = spec.Header
	if spec.ForwardNameHeader != "" {
		v.forwardName = textproto.CanonicalMIMEHeaderKey(spec.ForwardNameHeader)
	}
	return v
}
