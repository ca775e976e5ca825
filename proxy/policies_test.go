package proxy

import (
	"fmt"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/meshgate/meshgate/discovery"
	"github.com/meshgate/meshgate/internal/testproc"
	"github.com/meshgate/meshgate/policies"
)

// rawRequest sends a request with the path exactly as given (Go's client
// would not send some of these).
func rawRequest(t *testing.T, front *httptest.Server, path string) (int, string) {
	t.Helper()
	status, body, err := testproc.RawGet(strings.TrimPrefix(front.URL, "http://"), path)
	if err != nil {
		t.Fatal(err)
	}
	return status, body
}

// TestPathNormalisation checks that routing and the upstream see the
// normalised path, under both escaped-slash policies.
func TestPathNormalisation(t *testing.T) {
	t.Parallel()
	admin, public := named("admin"), named("public")
	t.Cleanup(admin.Close)
	t.Cleanup(public.Close)
	for _, tc := range []struct {
		mode  string
		cases [][3]string // path, want status, want body (a substring)
	}{
		{"reject", [][3]string{
			{"/public/../admin/x", "200", "/admin/x"},
			{"//admin//x", "200", "/admin/x"},
			{"/admin/./x/", "200", "/admin/x/"},
			{"/%61dmin/x", "200", "/admin/x"},
			{"/admin%2Fx", "400", `"error":"encoded slash in path is not allowed","status":400`},
			{"/admin%5cx", "400", `"status":400`},
			{"/admin/%zz", "400", ""}, // refused by net/http's request parser already
			{"/admin/a%3Fb", "200", "/admin/a%3Fb"},
		}},
		{"decode", [][3]string{
			{"/admin%2Fx", "200", "/admin/x"},
			{"/admin%2F..%2Fpub", "200", "/pub"},
		}},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, parseConfig(t, `
listeners: [{address: "127.0.0.1:0"}]
server: {path_normalization: {escaped_slashes: `+tc.mode+`}}
services:
  admin: {instances: [`+strings.Trim(instancesYAML(t, admin), " -\n")+`]}
  public: {instances: [`+strings.Trim(instancesYAML(t, public), " -\n")+`]}
routes:
  - {match: {path_prefix: /admin}, service: admin}
  - {match: {path_prefix: /}, service: public}
`))
			for _, c := range tc.cases {
				status, body := rawRequest(t, h.front, c[0])
				if fmt.Sprint(status) != c[1] || !strings.Contains(body, c[2]) {
					t.Errorf("GET %s: %d %q, want %s with %q", c[0], status, body, c[1], c[2])
				}
			}
		})
	}
}

// TestPolicyChainLinked puts a policy set in force and out again: the
// route's requests run through the chain, the status it answers with is
// what the access accounting sees, and removing the set unlinks it.
func TestPolicyChainLinked(t *testing.T) {
	t.Parallel()
	back := named("svc")
	t.Cleanup(back.Close)
	h := newHarness(t, parseConfig(t, `
listeners: [{address: "127.0.0.1:0"}]
services:
  svc:
    instances:
`+instancesYAML(t, back)+`
routes:
  - {name: locked, match: {path_prefix: /locked}, service: svc}
  - {name: open, match: {path_prefix: /}, service: svc}
`))
	mgr := policies.NewManager(policies.Env{ClientIP: h.gw.ClientIP})
	t.Cleanup(func() { mgr.Close() })
	err := mgr.Load([]policies.Source{{Name: "p.yaml", Data: []byte(`policies:
  - name: lock
    applies_to: {routes: [locked]}
    authz: {default: deny, rules: []}
`)}}, false, h.gw.SetPolicies)
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]int{"/locked/x": 403, "/x": 200} {
		status, body := rawRequest(t, h.front, path)
		if status != want {
			t.Errorf("GET %s: %d %q, want %d", path, status, body, want)
		}
		if want == 403 && !strings.Contains(body, `"status":403`) {
			t.Errorf("GET %s: body %q is not the JSON error", path, body)
		}
	}
	if err := h.gw.SetPolicies(nil); err != nil {
		t.Fatal(err)
	}
	if status, _ := rawRequest(t, h.front, "/locked/x"); status != 200 {
		t.Errorf("after removing the policies: %d, want 200", status)
	}
}

func TestClientIP(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		hops int
		xff  []string
		want string
	}{
		{0, []string{"203.0.113.9"}, "192.0.2.1"},
		{1, []string{"203.0.113.9"}, "203.0.113.9"},
		{1, []string{"198.51.100.7, 203.0.113.9"}, "203.0.113.9"},
		{2, []string{"198.51.100.7, 203.0.113.9"}, "198.51.100.7"},
		{2, []string{"198.51.100.7", "203.0.113.9"}, "198.51.100.7"}, // two header lines
		{3, []string{"198.51.100.7, 203.0.113.9"}, "192.0.2.1"},      // fewer entries than hops
		{1, []string{"not-an-ip"}, "192.0.2.1"},
		{1, []string{"[2001:db8::1]:443"}, "2001:db8::1"},
		{1, nil, "192.0.2.1"},
	} {
		cfg := parseConfig(t, fmt.Sprintf("listeners: [{address: \"127.0.0.1:0\"}]\nserver: {trusted_hops: %d}\nservices: {}\n", tc.hops))
		gw, err := New(cfg, Options{Store: discovery.NewStore()})
		if err != nil {
			t.Fatal(err)
		}
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = "192.0.2.1:5555"
		if tc.xff != nil {
			r.Header["X-Forwarded-For"] = tc.xff
		}
		if got := gw.ClientIP(r); got != netip.MustParseAddr(tc.want) {
			t.Errorf("hops %d, X-Forwarded-For %q: %s, want %s", tc.hops, tc.xff, got, tc.want)
		}
	}
}
