package policies

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestOwnedHeadersClearedOnEveryRequest: a header a policy sets upstream
// (here the API key's name) is removed from the client's request even when
// the policy's selector lets the request past its authn step, so that the
// upstream can trust it.
func TestOwnedHeadersClearedOnEveryRequest(t *testing.T) {
	yaml := `policies:
  - name: writes
    applies_to: {routes: [r], methods: [POST]}
    authn:
      api_keys:
        forward_name_header: X-Client
        keys: [{name: ci, sha256: ` + HashAPIKey("secret") + `}]
`
	set, err := compileSources([]Source{{Name: "p.yaml", Data: []byte(yaml)}}, &Env{}, newResources(), false, false)
	if err != nil {
		t.Fatal(err)
	}
	var seen http.Header
	h := set.Chain(RouteInfo{Name: "r", Service: "s"}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = r.Header.Clone()
	}))
	for _, tc := range []struct {
		method, key, want string
	}{
		{"GET", "", ""},          // not selected: the forged header is gone anyway
		{"POST", "secret", "ci"}, // authenticated: meshgate's own value
	} {
		seen = nil
		r := httptest.NewRequest(tc.method, "/", nil)
		r.Header.Set("X-Client", "admin")
		if tc.key != "" {
			r.Header.Set("X-API-Key", tc.key)
		}
		h.ServeHTTP(httptest.NewRecorder(), r)
		if seen == nil {
			t.Fatalf("%s did not reach the upstream", tc.method)
		}
		if got := seen.Get("X-Client"); got != tc.want {
			t.Errorf("%s: upstream saw X-Client %q, want %q", tc.method, got, tc.want)
		}
	}
	// A route no policy applies to is not touched.
	other := set.Chain(RouteInfo{Name: "other", Service: "s"}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = r.Header.Clone()
	}))
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("X-Client", "kept")
	other.ServeHTTP(httptest.NewRecorder(), r)
	if seen.Get("X-Client") != "kept" {
		t.Errorf("a route without policies lost X-Client")
	}
}
