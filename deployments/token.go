package deployments

import (
	_ "embed"
	"fmt"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

// demoIDPKey is the private key of the demo's stand-in identity provider
// (ES256, kid demo-2026); policies/demo-jwks.json is its public half.
// FOR THE DEMO ONLY: it is public, so a token it signs proves nothing
// outside the demo.
//
//go:embed demo-idp-key.jwk.json
var demoIDPKey []byte

// The claims policies/orders-jwt.yaml expects of a demo token.
const (
	DemoIssuer   = "https://idp.demo.meshgate.local"
	DemoAudience = "shop"
)

// SignDemoToken returns a JWT for sub with the "role" claim, issued at now
// and valid for ttl, signed with the demo key. `meshgate-demo token`
// prints one; tests of the example policies use it too.
func SignDemoToken(sub, role string, now time.Time, ttl time.Duration) (string, error) {
	key, err := jwk.ParseKey(demoIDPKey)
	if err != nil {
		return "", fmt.Errorf("parsing the demo key: %w", err)
	}
	t, err := jwt.NewBuilder().
		Issuer(DemoIssuer).
		Audience([]string{DemoAudience}).
		Subject(sub).
		IssuedAt(now).
		Expiration(now.Add(ttl)).
		Claim("role", role).
		Build()
	if err != nil {
		return "", err
	}
	b, err := jwt.Sign(t, jwt.WithKey(jwa.ES256(), key))
	if err != nil {
		return "", fmt.Errorf("signing: %w", err)
	}
	return string(b), nil
}
