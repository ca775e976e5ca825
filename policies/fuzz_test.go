package policies

import (
	"errors"
	"strings"
	"testing"

	"github.com/meshgate/meshgate/config"
)

// FuzzLoadPolicies feeds arbitrary documents to the policy loader as
// meshgate validate would (nothing fetched or started): it must never
// panic, and every problem must be placed in the file with a line.
func FuzzLoadPolicies(f *testing.F) {
	seeds := []string{
		"policies: []\n",
		"policies:\n  - name: a\n    applies_to: {all: true}\n    authz: {default: deny, rules: []}\n",
		"policies:\n  - name: a\n    applies_to: {routes: [r], path_prefixes: [/admin]}\n    authz:\n      rules:\n        - name: r1\n          when: claims.role == \"admin\"\n",
		"policies:\n  - name: a\n    applies_to: {all: true}\n    rate_limits: [{name: l, key: 'header:X-Key', requests: 10, per: 1s, burst: 5}]\n",
		"policies:\n  - name: a\n    applies_to: {all: true}\n    authn: {api_keys: {keys: [{name: k, sha256: " + strings.Repeat("ab", 32) + "}]}}\n",
		"policies:\n  - name: a\n    applies_to: {all: true}\n    authn: {jwt: {issuer: i, jwks_url: 'https://idp.test/jwks'}}\n",
		"policies:\n  - name: a\n    applies_to: {all: true}\n    transforms: {request: {path: {pattern: '^/v1/(.*)', replacement: '/$1'}}, response: {json: {deny: [user.email]}}}\n",
		"policies:\n  - name: a\n    applies_to: {all: true}\n    ip: {allow: [10.0.0.0/8]}\n    cors: {allowed_origins: ['https://*.example.com']}\n    max_body_size: 1MiB\n",
		"policies: &a [*a]\n",
		"policies:\n  - name: a\n    applies_to: {all: true}\n    authz:\n      rules:\n        - name: r\n          when: |\n            request.method ==\n              1\n",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		set, err := compileSources([]Source{{Name: "p.yaml", Dir: t.TempDir(), Data: data}}, &Env{}, newResources(), true, true)
		if err == nil {
			if set == nil {
				t.Fatal("no set and no error")
			}
			return
		}
		var errs config.Errors
		if !errors.As(err, &errs) || len(errs) == 0 {
			t.Fatalf("error is not config.Errors: %v", err)
		}
		for _, e := range errs {
			if e.File != "p.yaml" || e.Line < 1 {
				t.Fatalf("problem not placed in the file: %q", e.String())
			}
		}
	})
}
