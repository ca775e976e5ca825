package config

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files (testdata/invalid/*.golden, meshgate.schema.json)")

// TestInvalidGolden loads every testdata/invalid/NAME.yaml and compares
// the error output with NAME.golden. Run with -update to rewrite them,
// then check the line numbers by eye.
func TestInvalidGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/invalid/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 20 {
		t.Fatalf("want at least 20 invalid cases, found %d", len(files))
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c, err := Load(file)
			if err == nil {
				t.Fatalf("Load(%s) succeeded, want errors", file)
			}
			if c != nil {
				t.Errorf("Load(%s) returned a config along with errors", file)
			}
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error is %T, want Errors: %v", err, err)
			}
			for i, e := range errs {
				if !strings.HasPrefix(e.String(), file+":") {
					t.Errorf("error %d does not start with %q: %s", i, file+":", e)
				}
				if i > 0 && errs[i-1].Line > e.Line {
					t.Errorf("errors not sorted by line: %d after %d", e.Line, errs[i-1].Line)
				}
			}
			got := err.Error() + "\n"
			golden := strings.TrimSuffix(file, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./config -run TestInvalidGolden -update)", err)
			}
			if got != string(want) {
				t.Errorf("errors differ from %s\ngot:\n%s\nwant:\n%s", golden, got, want)
			}
		})
	}
}

// TestValidFiles checks that every file under testdata/valid loads and
// that the loaded config validates again as a Go value.
func TestValidFiles(t *testing.T) {
	files, err := filepath.Glob("testdata/valid/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no valid test files")
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			t.Parallel()
			c, err := Load(file)
			if err != nil {
				t.Fatalf("Load(%s): %v", file, err)
			}
			if errs := c.Validate(); errs != nil {
				t.Errorf("Validate after Load: %v", errs)
			}
		})
	}
}

func TestMinimalDefaults(t *testing.T) {
	t.Parallel()
	c, err := Load("testdata/valid/minimal.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Listeners: []Listener{{Name: ":8080", Address: ":8080"}},
		Admin:     Admin{Address: "127.0.0.1:9901"},
		Server: Server{
			ReadHeaderTimeout: Duration(10 * time.Second),
			IdleTimeout:       Duration(120 * time.Second),
			MaxHeaderBytes:    64 << 10,
			MaxBodyBytes:      10 << 20,
			GracePeriod:       Duration(30 * time.Second),
			PathNormalization: PathNormalization{EscapedSlashes: "reject"},
		},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("minimal.yaml loaded as\n%+v\nwant\n%+v", c, want)
	}
}

func TestFullValues(t *testing.T) {
	t.Parallel()
	c, err := Load("testdata/valid/full.yaml")
	if err != nil {
		t.Fatal(err)
	}

	// TLS paths are resolved against the file's directory.
	if got, want := c.Listeners[0].TLS.CertFile, filepath.Join("testdata", "tls", "test-only-cert.pem"); got != want {
		t.Errorf("cert_file = %q, want %q", got, want)
	}
	if got, want := c.Listeners[0].TLS.KeyFile, filepath.Join("testdata", "tls", "test-only-key.pem"); got != want {
		t.Errorf("key_file = %q, want %q", got, want)
	}
	// Explicit values are kept, including a zero drain delay's opposite.
	if got, want := c.Server, (Server{
		ReadHeaderTimeout: Duration(5 * time.Second),
		IdleTimeout:       Duration(90 * time.Second),
		MaxHeaderBytes:    32 << 10,
		MaxBodyBytes:      50_000_000,
		TrustedHops:       2, IgnoreIncomingTraceContext: true,
		DrainDelay:        Duration(5 * time.Second),
		GracePeriod:       Duration(45 * time.Second),
		PathNormalization: PathNormalization{EscapedSlashes: "decode", KeepRepeatedSlashes: true},
	}); got != want {
		t.Errorf("server = %+v, want %+v", got, want)
	}
	if got, want := *c.Policies.Redis, (Redis{Address: "127.0.0.1:6379", Username: "meshgate", PasswordEnv: "REDIS_PASSWORD", DB: 2, TLS: true, Timeout: Duration(250 * time.Millisecond)}); got != want {
		t.Errorf("policies.redis = %+v, want %+v", got, want)
	}
	if got, want := c.Policies.Dir, filepath.Join("testdata", "valid", "policies"); got != want {
		t.Errorf("policies.dir = %q, want %q (relative to the config file)", got, want)
	}
	if got := c.Policies.ConsulKVPrefix; got != "meshgate/policies" {
		t.Errorf("policies.consul_kv_prefix = %q", got)
	}
	if got := c.Admin.Address; got != "127.0.0.1:9902" {
		t.Errorf("admin.address = %q", got)
	}

	products := c.Services["products"]
	if got, want := products.Instances[0], (Instance{
		ID: "products-1", Address: "10.0.0.11", Port: 8080, Weight: 3,
		Tags: []string{"blue", "v2"}, Meta: map[string]string{"zone": "eu-west-1a", "version": "2"},
		Health: "passing",
	}); !reflect.DeepEqual(got, want) {
		t.Errorf("products instance 0 = %+v, want %+v", got, want)
	}
	// Defaults inside list items: id from address:port (IPv6 bracketed), weight 1.
	if got := products.Instances[1]; got.ID != "products.internal:8080" || got.Weight != 1 || got.Health != "warning" {
		t.Errorf("products instance 1 = %+v", got)
	}
	if got := products.Instances[2].ID; got != "[fd00::12]:8081" {
		t.Errorf("IPv6 instance id = %q, want [fd00::12]:8081", got)
	}
	if got := products.LoadBalancer; got.Policy != "consistent_hash" || got.HashOn == nil || got.HashOn.Header != "X-User-ID" {
		t.Errorf("products load_balancer = %+v", got)
	}
	if got, want := products.Timeouts, (Timeouts{
		Connect: Duration(500 * time.Millisecond), ResponseHeader: Duration(10 * time.Second), IdleConn: Duration(2 * time.Minute),
	}); got != want {
		t.Errorf("products timeouts = %+v, want %+v", got, want)
	}

	if got, want := products.Retry, (Retry{
		Attempts: 4, Statuses: []int{429, 502, 503}, PerTryTimeout: Duration(3 * time.Second),
		BackoffBase: Duration(50 * time.Millisecond), BackoffMax: Duration(500 * time.Millisecond),
		RetryAfterMax: Duration(2 * time.Second), ReplayLimit: 1 << 20,
		Budget: RetryBudget{Ratio: 0.1, MinPerSecond: 5, Window: Duration(30 * time.Second)},
	}); !reflect.DeepEqual(got, want) {
		t.Errorf("products retry = %+v, want %+v", got, want)
	}
	if got, want := products.CircuitBreaker, (CircuitBreaker{
		ConsecutiveFailures: 10, FailureRatio: 0.25, MinRequests: 50,
		Window: Duration(30 * time.Second), OpenTime: Duration(5 * time.Second), HalfOpenRequests: 3,
	}); got != want {
		t.Errorf("products circuit_breaker = %+v, want %+v", got, want)
	}
	if got, want := products.OutlierDetection, (OutlierDetection{
		ConsecutiveFailures: 3, BaseEjectionTime: Duration(10 * time.Second), MaxEjectionTime: Duration(2 * time.Minute), MaxEjectionPercent: 34,
	}); got != want {
		t.Errorf("products outlier_detection = %+v, want %+v", got, want)
	}
	if products.MaxConcurrentRequests != 500 || c.Listeners[1].MaxConcurrentRequests != 2000 || c.Listeners[0].MaxConcurrentRequests != 0 {
		t.Errorf("max_concurrent_requests: service %d, listeners %d and %d",
			products.MaxConcurrentRequests, c.Listeners[0].MaxConcurrentRequests, c.Listeners[1].MaxConcurrentRequests)
	}
	if r := c.Routes[2]; r.Timeout != Duration(15*time.Second) || !r.RetryNonIdempotent {
		t.Errorf("routes[2] timeout = %v, retry_non_idempotent = %v", r.Timeout, r.RetryNonIdempotent)
	}
	if r := c.Routes[0]; r.Timeout != 0 || r.RetryNonIdempotent {
		t.Errorf("routes[0] timeout = %v, retry_non_idempotent = %v; want no defaults", r.Timeout, r.RetryNonIdempotent)
	}

	// A service that sets only some fields gets defaults for the rest.
	carts := c.Services["carts"]
	// An explicit empty statuses list is kept: retry no status.
	if got := carts.Retry; got.Attempts != 1 || got.Statuses == nil || len(got.Statuses) != 0 ||
		got.PerTryTimeout != DefaultResponseHeaderTimeout || got.Budget.Ratio != DefaultRetryBudgetRatio {
		t.Errorf("carts retry = %+v", got)
	}
	if cb, od := carts.CircuitBreaker, carts.OutlierDetection; !cb.Disabled || !od.Disabled ||
		cb.ConsecutiveFailures != DefaultBreakerConsecutiveFailures || od.MaxEjectionPercent != DefaultMaxEjectionPercent {
		t.Errorf("carts circuit_breaker = %+v, outlier_detection = %+v", cb, od)
	}
	if carts.Protocol != "h2c" || carts.MaxIdleConnsPerInstance != 256 ||
		carts.Timeouts != (Timeouts{Connect: Duration(2 * time.Second), ResponseHeader: Duration(30 * time.Second), IdleConn: Duration(90 * time.Second)}) {
		t.Errorf("carts = %+v", carts)
	}
	if users := c.Services["users.v1"]; users.Protocol != "http1" || users.LoadBalancer.Policy != "least_request" {
		t.Errorf("users.v1 = %+v", users)
	}

	// Routes: host lower-cased, default name and path prefix.
	if got := c.Routes[0].Match.Host; got != "api.example.com" {
		t.Errorf("routes[0].match.host = %q, want lower case", got)
	}
	if got := c.Routes[0].Match.PathPrefix; got != "" {
		t.Errorf("routes[0] has path; path_prefix defaulted to %q", got)
	}
	if got := c.Routes[2].Name; got != "route-2" {
		t.Errorf("routes[2].name = %q, want route-2", got)
	}
	if got := c.Routes[3]; got.Name != "route-3" || got.Match.PathPrefix != "/" || got.Service != "users.v1" {
		t.Errorf("routes[3] = %+v, want the default name and path_prefix /", got)
	}
	// An aggregate route: no service; a part without a timeout takes the
	// aggregate's.
	agg := c.Routes[4]
	if agg.Name != "order-view" || agg.Service != "" || agg.Aggregate == nil {
		t.Fatalf("routes[4] = %+v, want the aggregate route order-view", agg)
	}
	a := agg.Aggregate
	if a.Timeout != Duration(5*time.Second) || len(a.Parts) != 2 {
		t.Fatalf("routes[4].aggregate = %+v, want timeout 5s and 2 parts", a)
	}
	if p := a.Parts[0]; p.Name != "order" || p.Path != `"/orders/" + .request.segments[2]` || p.Timeout != Duration(2*time.Second) || p.Optional || len(p.Needs) != 0 {
		t.Errorf("parts[0] = %+v", p)
	}
	if p := a.Parts[1]; p.Name != "user" || p.Path != `"/users/\(.parts.order.user_id)"` || p.Timeout != Duration(5*time.Second) || !p.Optional || !slices.Equal(p.Needs, []string{"order"}) {
		t.Errorf("parts[1] = %+v, want the aggregate's timeout 5s, optional, needs [order]", p)
	}
}

// TestFullUsesEveryField makes sure the reference files stay complete:
// every field of every type is set somewhere in full.yaml, and every field
// of discovery and register in full.yaml or consul.yaml (one shows
// register.check.path, the other its alternative check.url).
func TestFullUsesEveryField(t *testing.T) {
	t.Parallel()
	full := fieldsSet(t, "testdata/valid/full.yaml")
	consul := fieldsSet(t, "testdata/valid/consul.yaml")
	for _, typ := range []reflect.Type{
		reflect.TypeFor[Config](), reflect.TypeFor[Listener](), reflect.TypeFor[TLS](), reflect.TypeFor[Admin](),
		reflect.TypeFor[Server](), reflect.TypeFor[Service](), reflect.TypeFor[Instance](), reflect.TypeFor[LoadBalancer](),
		reflect.TypeFor[HashOn](), reflect.TypeFor[Timeouts](), reflect.TypeFor[Route](), reflect.TypeFor[Match](),
		reflect.TypeFor[Retry](), reflect.TypeFor[RetryBudget](), reflect.TypeFor[CircuitBreaker](), reflect.TypeFor[OutlierDetection](),
		reflect.TypeFor[Aggregate](), reflect.TypeFor[AggregatePart](),
	} {
		for i := range typ.NumField() {
			if key := typ.Name() + "." + typ.Field(i).Name; !full[key] {
				t.Errorf("full.yaml does not set %s", key)
			}
		}
	}
	for _, typ := range []reflect.Type{
		reflect.TypeFor[Discovery](), reflect.TypeFor[Consul](), reflect.TypeFor[ConsulRoutes](),
		reflect.TypeFor[Register](), reflect.TypeFor[RegisterCheck](),
	} {
		for i := range typ.NumField() {
			key := typ.Name() + "." + typ.Field(i).Name
			if !full[key] && !consul[key] {
				t.Errorf("neither full.yaml nor consul.yaml sets %s", key)
			}
			if key != "RegisterCheck.Path" && !consul[key] {
				t.Errorf("consul.yaml does not set %s", key)
			}
		}
	}
}

// fieldsSet loads file and returns "Type.Field" for every field that is
// not zero somewhere in the result.
func fieldsSet(t *testing.T, file string) map[string]bool {
	t.Helper()
	c, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	seen := make(map[string]bool)
	var walk func(v reflect.Value)
	walk = func(v reflect.Value) {
		switch v.Kind() {
		case reflect.Pointer:
			if !v.IsNil() {
				walk(v.Elem())
			}
		case reflect.Slice:
			for i := range v.Len() {
				walk(v.Index(i))
			}
		case reflect.Map:
			for _, k := range v.MapKeys() {
				walk(v.MapIndex(k))
			}
		case reflect.Struct:
			for i := range v.NumField() {
				f := v.Type().Field(i)
				if !v.Field(i).IsZero() {
					seen[v.Type().Name()+"."+f.Name] = true
				}
				walk(v.Field(i))
			}
		}
	}
	walk(reflect.ValueOf(c))
	return seen
}

// TestConsulValues checks that every key of consul.yaml is read into its
// field: the file sets only non-default values, so no default can stand in.
func TestConsulValues(t *testing.T) {
	t.Parallel()
	c, err := Load("testdata/valid/consul.yaml")
	if err != nil {
		t.Fatal(err)
	}
	wantConsul := &Consul{
		Address:      "https://consul.service.internal:8501",
		Token:        "3f9c1c2e-5b7a-4d2e-9a41-0c7d1f2b8e66",
		Datacenter:   "eu-west-1",
		Stale:        true,
		AllowWarning: true,
		Tags:         []string{"production", "v2"},
		Wait:         Duration(2 * time.Minute),
		MinInterval:  Duration(250 * time.Millisecond),
		MaxBackoff:   Duration(time.Minute),
		Routes:       ConsulRoutes{Enabled: true, TagPrefix: "route:", MetaKey: "http-route", StripPrefix: true},
	}
	if !reflect.DeepEqual(c.Discovery.Consul, wantConsul) {
		t.Errorf("discovery.consul = %+v\nwant %+v", c.Discovery.Consul, wantConsul)
	}
	wantRegister := &Register{
		Name:    "orders",
		ID:      "orders-sidecar-1",
		Address: "fd00::5",
		Port:    9000,
		Tags:    []string{"mesh", "grpc"},
		Meta:    map[string]string{"version": "1.4.2", "team": "checkout"},
		Weight:  5,
		// No path: the URL replaces it, so the default does not apply.
		Check:                   RegisterCheck{URL: "http://127.0.0.1:9000/ready?full=1", Interval: Duration(5 * time.Second), Timeout: Duration(time.Second)},
		TTL:                     Duration(30 * time.Second),
		DeregisterCriticalAfter: Duration(5 * time.Minute),
	}
	if !reflect.DeepEqual(c.Register, wantRegister) {
		t.Errorf("register = %+v\nwant %+v", c.Register, wantRegister)
	}
}

// TestConsulDefaults checks the defaults of discovery.consul and register
// as a file gets them, and that the connection is left as the file says:
// the CONSUL_HTTP_* variables are read by discovery, not here.
func TestConsulDefaults(t *testing.T) {
	t.Setenv("CONSUL_HTTP_ADDR", "10.9.9.9:8500")
	t.Setenv("CONSUL_HTTP_TOKEN", "from-the-environment")
	c, err := Parse("consul.yaml", []byte(`
listeners: [{address: ":8080"}]
discovery:
  consul: {}
register:
  name: web
  address: "fd00::5"
  port: 8080
`))
	if err != nil {
		t.Fatal(err)
	}
	wantConsul := &Consul{
		Wait:        Duration(5 * time.Minute),
		MinInterval: Duration(100 * time.Millisecond),
		MaxBackoff:  Duration(30 * time.Second),
		Routes:      ConsulRoutes{TagPrefix: "meshgate.route=", MetaKey: "meshgate-route"},
	}
	if !reflect.DeepEqual(c.Discovery.Consul, wantConsul) {
		t.Errorf("discovery.consul = %+v\nwant %+v", c.Discovery.Consul, wantConsul)
	}
	wantRegister := &Register{
		Name:    "web",
		ID:      "web-fd00--5-8080",
		Address: "fd00::5",
		Port:    8080,
		Weight:  1,
		Check: RegisterCheck{
			Path:     "/healthz",
			Interval: Duration(10 * time.Second),
			Timeout:  Duration(2 * time.Second),
		},
		TTL:                     Duration(10 * time.Second),
		DeregisterCriticalAfter: Duration(time.Minute),
	}
	if !reflect.DeepEqual(c.Register, wantRegister) {
		t.Errorf("register = %+v\nwant %+v", c.Register, wantRegister)
	}

	// Explicit values win, an explicit min_interval of 0 included, and a
	// check URL leaves the path empty.
	c, err = Parse("consul.yaml", []byte(`
listeners: [{address: ":8080"}]
discovery:
  consul:
    min_interval: 0
    routes: {tag_prefix: "r=", meta_key: r}
register:
  name: web
  address: web.internal
  port: 8080
  weight: 7
  check: {url: "http://web.internal:8081/health", interval: 3s}
`))
	if err != nil {
		t.Fatal(err)
	}
	if cc := c.Discovery.Consul; cc.MinInterval != 0 || cc.Routes.TagPrefix != "r=" || cc.Routes.MetaKey != "r" || cc.Wait != DefaultConsulWait {
		t.Errorf("discovery.consul = %+v", cc)
	}
	if r := c.Register; r.ID != "web-web.internal-8080" || r.Weight != 7 || r.Check != (RegisterCheck{
		URL: "http://web.internal:8081/health", Interval: Duration(3 * time.Second), Timeout: DefaultRegisterCheckTimeout,
	}) {
		t.Errorf("register = %+v", r)
	}

	// Without the sections, nothing is made up.
	c, err = Parse("minimal.yaml", []byte(`listeners: [{address: ":8080"}]`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Discovery.Consul != nil || c.Register != nil {
		t.Errorf("discovery.consul = %+v, register = %+v; want both nil", c.Discovery.Consul, c.Register)
	}
}

// defaultResilience returns the retry, circuit_breaker and
// outlier_detection defaults of a service whose response_header timeout
// is rh.
func defaultResilience(rh Duration) (Retry, CircuitBreaker, OutlierDetection) {
	return Retry{
			Attempts:      3,
			Statuses:      []int{502, 503, 504},
			PerTryTimeout: rh,
			BackoffBase:   Duration(25 * time.Millisecond),
			BackoffMax:    Duration(250 * time.Millisecond),
			RetryAfterMax: Duration(time.Second),
			ReplayLimit:   64 << 10,
			Budget:        RetryBudget{Ratio: 0.2, MinPerSecond: 10, Window: Duration(10 * time.Second)},
		}, CircuitBreaker{
			ConsecutiveFailures: 5,
			FailureRatio:        0.5,
			MinRequests:         20,
			Window:              Duration(10 * time.Second),
			OpenTime:            Duration(10 * time.Second),
			HalfOpenRequests:    1,
		}, OutlierDetection{
			ConsecutiveFailures: 5,
			BaseEjectionTime:    Duration(30 * time.Second),
			MaxEjectionTime:     Duration(5 * time.Minute),
			MaxEjectionPercent:  50,
		}
}

// TestResilienceDefaults checks the defaults of retry, circuit_breaker,
// outlier_detection and the limits as a file gets them: written out as
// numbers, not through the constants, so that a changed constant shows.
func TestResilienceDefaults(t *testing.T) {
	t.Parallel()
	c, err := Parse("resilience.yaml", []byte(`
listeners: [{address: ":8080"}]
services:
  plain: {}
  fast:
    timeouts: {response_header: 2s}
    retry: {budget: {}}
    circuit_breaker: {disabled: true}
  zeros:
    retry:
      statuses: []
      retry_after_max: 0
      replay_limit: 0
      budget: {ratio: 0, min_per_second: 0}
    outlier_detection: {max_ejection_percent: 0}
  nulls:
    retry: {attempts: ~, statuses: ~, per_try_timeout: ~}
    circuit_breaker: ~
routes:
  - service: plain
`))
	if err != nil {
		t.Fatal(err)
	}
	for name, rh := range map[string]Duration{"plain": Duration(30 * time.Second), "fast": Duration(2 * time.Second), "nulls": Duration(30 * time.Second)} {
		s := c.Services[name]
		retry, cb, od := defaultResilience(rh)
		cb.Disabled = name == "fast"
		if !reflect.DeepEqual(s.Retry, retry) {
			t.Errorf("%s: retry = %+v\nwant %+v", name, s.Retry, retry)
		}
		if s.CircuitBreaker != cb {
			t.Errorf("%s: circuit_breaker = %+v\nwant %+v", name, s.CircuitBreaker, cb)
		}
		if s.OutlierDetection != od {
			t.Errorf("%s: outlier_detection = %+v\nwant %+v", name, s.OutlierDetection, od)
		}
		if s.MaxConcurrentRequests != 0 {
			t.Errorf("%s: max_concurrent_requests = %d, want 0 (no limit)", name, s.MaxConcurrentRequests)
		}
	}

	// Explicit zeros that mean something are kept.
	zeros := c.Services["zeros"]
	retry, _, od := defaultResilience(Duration(30 * time.Second))
	retry.Statuses = []int{}
	retry.RetryAfterMax, retry.ReplayLimit, retry.Budget.Ratio, retry.Budget.MinPerSecond = 0, 0, 0, 0
	od.MaxEjectionPercent = 0
	if !reflect.DeepEqual(zeros.Retry, retry) {
		t.Errorf("zeros: retry = %+v\nwant %+v", zeros.Retry, retry)
	}
	if zeros.OutlierDetection != od {
		t.Errorf("zeros: outlier_detection = %+v\nwant %+v", zeros.OutlierDetection, od)
	}

	// Listeners and routes get no limits.
	if l, r := c.Listeners[0], c.Routes[0]; l.MaxConcurrentRequests != 0 || r.Timeout != 0 || r.RetryNonIdempotent {
		t.Errorf("listener %+v, route %+v; want no limits", l, r)
	}

	// The default statuses are not shared between services.
	c.Services["plain"].Retry.Statuses[0] = 500
	if got := c.Services["fast"].Retry.Statuses[0]; got != 502 {
		t.Errorf("changing one service's statuses changed another's: %d", got)
	}
}

func TestDefaultRegisterID(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, address string
		port          int
		want          string
	}{
		{"web", "10.0.0.5", 8080, "web-10.0.0.5-8080"},
		{"web", "fd00::1", 8080, "web-fd00--1-8080"},
		{"web", "::ffff:10.0.0.5", 80, "web---ffff-10.0.0.5-80"},
		{"api.v1", "api.internal", 443, "api.v1-api.internal-443"},
	} {
		if got := DefaultRegisterID(tc.name, tc.address, tc.port); got != tc.want {
			t.Errorf("DefaultRegisterID(%q, %q, %d) = %q, want %q", tc.name, tc.address, tc.port, got, tc.want)
		}
	}
}

// TestExplicitZeroKept checks that defaults apply only to fields the file
// leaves out: an explicit zero that is valid stays zero.
func TestExplicitZeroKept(t *testing.T) {
	t.Parallel()
	c, err := Parse("zero.yaml", []byte(`
listeners: [{address: ":8080"}]
server:
  drain_delay: 0
  trusted_hops: 0
  read_header_timeout: ~   # null: unset, so the default applies
services:
  s:
    instances:
      - {address: 10.0.0.1, port: 80, weight: 0}
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Server.DrainDelay != 0 || c.Server.TrustedHops != 0 {
		t.Errorf("server = %+v", c.Server)
	}
	if c.Server.ReadHeaderTimeout != DefaultReadHeaderTimeout {
		t.Errorf("read_header_timeout: ~ gave %v, want the default", c.Server.ReadHeaderTimeout)
	}
	if w := c.Services["s"].Instances[0].Weight; w != 1 {
		t.Errorf("weight 0 became %d, want 1", w)
	}

	// An explicit zero that is not valid is reported, not replaced.
	_, err = Parse("zero.yaml", []byte("listeners: [{address: \":8080\"}]\nserver:\n  grace_period: 0s\n"))
	if got, want := errString(err), "zero.yaml:3: server.grace_period: must be greater than 0, got 0s; want a duration such as 10s"; got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

func TestParseErrorDetails(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{
			name: "missing field reported at the enclosing mapping",
			yaml: "listeners:\n  - name: a\n",
			want: "f.yaml:2: listeners[0].address: is required; want host:port such as \":8080\" or \"127.0.0.1:8080\"",
		},
		{
			name: "map keys that are not plain words are quoted in the path",
			yaml: "listeners: [{address: \":1\"}]\nservices:\n  a.b:\n    protocol: x\n",
			want: `f.yaml:4: services["a.b"].protocol: unknown protocol "x"; want one of: http1, h2c`,
		},
		{
			name: "newlines in values stay escaped",
			yaml: "listeners: [{address: \":1\"}]\n\"bad\\nkey\": 1\n",
			want: `f.yaml:2: unknown field "bad\nkey"; allowed: admin, discovery, listeners, policies, register, routes, server, services, telemetry`,
		},
		{
			name: "syntax error without a line from yaml.v3 gets one",
			yaml: "listeners:\n  - address: \":1\"\nserver: a: b\n",
			want: "f.yaml:3: invalid YAML: mapping values are not allowed in this context",
		},
		{
			name: "alias explosion is bounded",
			yaml: aliasBomb(),
			want: "f.yaml:",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse("f.yaml", []byte(tc.yaml))
			got := errString(err)
			if tc.want == "f.yaml:" {
				if !strings.Contains(got, "too complex") {
					t.Errorf("got %s, want a too complex error", got)
				}
				return
			}
			if got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

// aliasBomb returns a small document whose aliases expand to ~10^8 values.
func aliasBomb() string {
	var b strings.Builder
	b.WriteString("listeners: [{address: \":1\"}]\nservices:\n  s:\n    instances:\n")
	b.WriteString("      - &i0 {address: a, port: 1, tags: &t0 [x, x, x, x, x, x, x, x, x, x]}\n")
	b.WriteString("routes:\n")
	// Lists of lists cannot nest in the Go types, so grow the tags list
	// through merges of merges instead.
	b.WriteString("  - &r0 {service: s, match: {methods: &m0 [A, A, A, A, A, A, A, A, A, A]}}\n")
	for i := 1; i <= 8; i++ {
		b.WriteString("  - &r" + strconv.Itoa(i) + " {<<: [")
		for j := 0; j < 10; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString("*r" + strconv.Itoa(i-1))
		}
		b.WriteString("]}\n")
	}
	return b.String()
}

func TestLoadErrors(t *testing.T) {
	t.Parallel()
	_, err := Load("testdata/does-not-exist.yaml")
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load of a missing file: %v, want os.ErrNotExist", err)
	}
	var errs Errors
	if errors.As(err, &errs) {
		t.Errorf("a read error should not be Errors")
	}
}

func TestFieldErrorString(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		e    FieldError
		want string
	}{
		{FieldError{File: "a.yaml", Line: 3, Field: "server.idle_timeout", Msg: "bad"}, "a.yaml:3: server.idle_timeout: bad"},
		{FieldError{File: "a.yaml", Field: "x", Msg: "bad"}, "a.yaml: x: bad"},
		{FieldError{File: "a.yaml", Line: 1, Msg: "invalid YAML"}, "a.yaml:1: invalid YAML"},
		{FieldError{Field: "routes[0].service", Msg: "bad"}, "routes[0].service: bad"},
		{FieldError{Line: 2, Field: "x", Msg: "bad"}, "line 2: x: bad"},
	} {
		if got := tc.e.String(); got != tc.want {
			t.Errorf("String() = %q, want %q", got, tc.want)
		}
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
	errs := Errors{{File: "a", Line: 1, Msg: "x"}, {File: "a", Line: 2, Msg: "y"}}
	if got := errs.Error(); got != "a:1: x\na:2: y" {
		t.Errorf("Errors.Error() = %q", got)
	}
	var fe *FieldError
	if !errors.As(error(errs), &fe) || fe.Msg != "x" {
		t.Errorf("errors.As did not find the first *FieldError")
	}
	if Errors(nil).Err() != nil || (Errors{}).Err() != nil {
		t.Errorf("empty Errors.Err() is not nil")
	}
	if errs.Err() == nil {
		t.Errorf("non-empty Errors.Err() is nil")
	}
}

func TestSidecarAnchorsAndZeros(t *testing.T) {
	t.Parallel()
	c, err := Load("testdata/valid/sidecar.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Admin.Address != AdminOff {
		t.Errorf("admin.address = %q, want off", c.Admin.Address)
	}
	if c.Server.DrainDelay != 0 || c.Server.TrustedHops != 0 || c.Server.MaxBodyBytes != 1<<20 {
		t.Errorf("server = %+v", c.Server)
	}
	if c.Server.GracePeriod != DefaultGracePeriod {
		t.Errorf("grace_period = %v, want the default", c.Server.GracePeriod)
	}
	if w := c.Services["orders"].Instances[0].Weight; w != 1 {
		t.Errorf("weight 0 became %d, want 1", w)
	}
	// The anchor is used as is by orders and merged into inventory's.
	if got, want := c.Services["orders"].Timeouts, (Timeouts{
		Connect: Duration(250 * time.Millisecond), ResponseHeader: Duration(2 * time.Second), IdleConn: DefaultIdleConnTimeout,
	}); got != want {
		t.Errorf("orders timeouts = %+v, want %+v", got, want)
	}
	if got, want := c.Services["inventory"].Timeouts, (Timeouts{
		Connect: Duration(250 * time.Millisecond), ResponseHeader: Duration(2 * time.Second), IdleConn: Duration(30 * time.Second),
	}); got != want {
		t.Errorf("inventory timeouts = %+v, want %+v", got, want)
	}
	if n := len(c.Services["inventory"].Instances); n != 0 {
		t.Errorf("inventory has %d instances, want none", n)
	}
}
