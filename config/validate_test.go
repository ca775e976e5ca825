package config

import (
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// goConfig returns a small valid Config built in Go, with defaults set.
func goConfig() *Config {
	c := &Config{
		Listeners: []Listener{{Address: ":8080"}},
		Services: map[string]Service{
			"products": {Instances: []Instance{{Address: "10.0.0.1", Port: 8080}}},
		},
		Routes: []Route{{Match: Match{PathPrefix: "/products"}, Service: "products"}},
	}
	c.SetDefaults()
	return c
}

func TestSetDefaults(t *testing.T) {
	t.Parallel()
	c := goConfig()
	if errs := c.Validate(); errs != nil {
		t.Fatalf("Validate: %v", errs)
	}
	if c.Listeners[0].Name != ":8080" || c.Admin.Address != DefaultAdminAddress {
		t.Errorf("listener/admin defaults: %+v %+v", c.Listeners[0], c.Admin)
	}
	if c.Server != (Server{
		ReadHeaderTimeout: Duration(10 * time.Second), IdleTimeout: Duration(120 * time.Second),
		MaxHeaderBytes: 64 << 10, MaxBodyBytes: 10 << 20, GracePeriod: Duration(30 * time.Second),
		PathNormalization: PathNormalization{EscapedSlashes: "reject"},
	}) {
		t.Errorf("server defaults: %+v", c.Server)
	}
	s := c.Services["products"]
	if s.Protocol != "http1" || s.LoadBalancer.Policy != "round_robin" || s.MaxIdleConnsPerInstance != 256 ||
		s.Timeouts != (Timeouts{Connect: Duration(2 * time.Second), ResponseHeader: Duration(30 * time.Second), IdleConn: Duration(90 * time.Second)}) {
		t.Errorf("service defaults: %+v", s)
	}
	if retry, cb, od := defaultResilience(Duration(30 * time.Second)); !reflect.DeepEqual(s.Retry, retry) ||
		s.CircuitBreaker != cb || s.OutlierDetection != od || s.MaxConcurrentRequests != 0 {
		t.Errorf("service resilience defaults: %+v %+v %+v", s.Retry, s.CircuitBreaker, s.OutlierDetection)
	}
	if in := s.Instances[0]; in.ID != "10.0.0.1:8080" || in.Weight != 1 || in.Health != "passing" {
		t.Errorf("instance defaults: %+v", in)
	}
	if r := c.Routes[0]; r.Name != "route-0" || r.Match.PathPrefix != "/products" || r.Timeout != 0 {
		t.Errorf("route defaults: %+v", r)
	}

	// In Go, an empty non-nil statuses list is kept; the per-try timeout
	// follows a response_header set before SetDefaults.
	c.Services["x"] = Service{Timeouts: Timeouts{ResponseHeader: Duration(time.Second)}, Retry: Retry{Statuses: []int{}}}
	c.SetDefaults()
	if r := c.Services["x"].Retry; r.Statuses == nil || len(r.Statuses) != 0 || r.PerTryTimeout != Duration(time.Second) {
		t.Errorf("retry = %+v", r)
	}

	// Defaults leave set values alone and are idempotent.
	c.Server.IdleTimeout = Duration(time.Second)
	c.SetDefaults()
	if c.Server.IdleTimeout != Duration(time.Second) {
		t.Errorf("SetDefaults replaced a set value")
	}
}

// consulConfig returns goConfig with discovery.consul and register, with
// defaults set.
func consulConfig() *Config {
	c := goConfig()
	c.Discovery.Consul = &Consul{Address: "127.0.0.1:8500", Tags: []string{"v2"}}
	c.Register = &Register{Name: "edge", Address: "10.0.0.9", Port: 8080, Meta: map[string]string{"team": "core"}}
	c.SetDefaults()
	return c
}

func TestSetDefaultsConsul(t *testing.T) {
	t.Parallel()
	c := consulConfig()
	if errs := c.Validate(); errs != nil {
		t.Fatalf("Validate: %v", errs)
	}
	if got, want := *c.Discovery.Consul, (Consul{
		Address: "127.0.0.1:8500", Tags: []string{"v2"},
		Wait: DefaultConsulWait, MinInterval: DefaultConsulMinInterval, MaxBackoff: DefaultConsulMaxBackoff,
		Routes: ConsulRoutes{TagPrefix: DefaultConsulRouteTagPrefix, MetaKey: DefaultConsulRouteMetaKey},
	}); !reflect.DeepEqual(got, want) {
		t.Errorf("consul defaults: %+v\nwant %+v", got, want)
	}
	r := c.Register
	if r.ID != "edge-10.0.0.9-8080" || r.Weight != DefaultRegisterWeight || r.TTL != DefaultRegisterTTL ||
		r.DeregisterCriticalAfter != DefaultDeregisterCriticalAfter ||
		r.Check != (RegisterCheck{Path: DefaultRegisterCheckPath, Interval: DefaultRegisterCheckInterval, Timeout: DefaultRegisterCheckTimeout}) {
		t.Errorf("register defaults: %+v", r)
	}

	// A check URL is not combined with a default path.
	c.Register.Check = RegisterCheck{URL: "http://10.0.0.9:8081/health"}
	c.SetDefaults()
	if c.Register.Check.Path != "" {
		t.Errorf("check.path defaulted to %q next to check.url", c.Register.Check.Path)
	}
	// No ID is made from an incomplete identity.
	c.Register = &Register{Name: "edge"}
	c.SetDefaults()
	if c.Register.ID != "" {
		t.Errorf("id defaulted to %q without address and port", c.Register.ID)
	}
	// SetDefaults does not read the environment either.
	if c.Discovery.Consul.Token != "" || c.Discovery.Consul.Datacenter != "" {
		t.Errorf("connection defaults: %+v", c.Discovery.Consul)
	}
}

func TestValidateConsul(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		modify func(c *Config)
		want   []string // "field: message" prefixes, in order
	}{
		{
			name:   "valid",
			modify: func(*Config) {},
		},
		{
			name: "zero values that need SetDefaults",
			modify: func(c *Config) {
				c.Discovery.Consul = &Consul{}
				c.Register = &Register{Name: "edge", Address: "10.0.0.9", Port: 8080}
			},
			want: []string{
				"discovery.consul.wait: 0s is out of range; want 1s to 10m",
				"discovery.consul.max_backoff: 0s is out of range; want 250ms to 10m",
				"discovery.consul.routes.tag_prefix: must not be empty",
				"discovery.consul.routes.meta_key: must not be empty",
				`register.id: must not be empty; remove it to default to "name-address-port"`,
				"register.weight: 0 is out of range; want 1 to 10000",
				`register.check.path: "" must start with "/"`,
				"register.check.interval: must be at least 1s, got 0s",
				"register.check.timeout: must be greater than 0, got 0s",
				"register.ttl: must be at least 1s, got 0s",
				"register.deregister_critical_after: must be at least 1m (Consul's minimum), got 0s",
			},
		},
		{
			name: "min_interval 0 is allowed",
			modify: func(c *Config) {
				c.Discovery.Consul.MinInterval = 0
			},
		},
		{
			name: "negative and too long durations",
			modify: func(c *Config) {
				c.Discovery.Consul.MinInterval = -1
				c.Discovery.Consul.Wait = Duration(11 * time.Minute)
				c.Discovery.Consul.MaxBackoff = Duration(time.Hour)
			},
			want: []string{
				"discovery.consul.wait: 11m is out of range; want 1s to 10m",
				"discovery.consul.min_interval: -1ns is out of range; want 0s to 1m",
				"discovery.consul.max_backoff: 1h is out of range; want 250ms to 10m",
			},
		},
		{
			name: "register without consul",
			modify: func(c *Config) {
				c.Discovery.Consul = nil
			},
			want: []string{"register: register needs discovery.consul"},
		},
		{
			name: "token is checked but never shown",
			modify: func(c *Config) {
				c.Discovery.Consul.Token = "secret-token\n"
			},
			want: []string{"discovery.consul.token: must not contain spaces or control characters (the value is not shown)"},
		},
		{
			name: "meta limits",
			modify: func(c *Config) {
				c.Register.Meta = map[string]string{strings.Repeat("k", 129): "v", "long": strings.Repeat("v", 513)}
				for i := range MaxMetaPairs {
					c.Register.Meta["k"+strconv.Itoa(i)] = "v"
				}
			},
			want: []string{
				"register.meta: has 66 entries; Consul allows at most 64",
				"register.meta." + strings.Repeat("k", 129) + ": meta key",
				"register.meta.long: the value is 513 bytes long; Consul allows at most 512",
			},
		},
		{
			name: "check url alone",
			modify: func(c *Config) {
				c.Register.Check.Path = ""
				c.Register.Check.URL = "https://edge.internal:8443/healthz"
			},
		},
		{
			name: "register fields",
			modify: func(c *Config) {
				c.Register.Name = strings.Repeat("a", 65)
				c.Register.ID = "edge 1"
				c.Register.Address = "[fd00::1]"
				c.Register.Port = -1
				c.Register.Weight = 10001
				c.Register.Tags = []string{"a", "", "a"}
			},
			want: []string{
				"register.name: service name",
				`register.address: invalid address "[fd00::1]"; write IPv6 addresses without brackets`,
				"register.port: -1 is out of range",
				`register.id: invalid id "edge 1"`,
				"register.weight: 10001 is out of range; want 1 to 10000",
				"register.tags[1]: must not be empty",
				`register.tags[2]: duplicate tag "a", already at register.tags[0]`,
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := consulConfig()
			tc.modify(c)
			errs := c.Validate()
			if len(errs) != len(tc.want) {
				t.Fatalf("got %d errors, want %d:\n%v", len(errs), len(tc.want), errs)
			}
			for i, e := range errs {
				if !strings.HasPrefix(e.String(), tc.want[i]) {
					t.Errorf("error %d = %q, want prefix %q", i, e, tc.want[i])
				}
				if strings.Contains(e.String(), "secret-token") {
					t.Errorf("error %d shows the token: %q", i, e)
				}
			}
		})
	}
}

func TestValidateGoConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		modify func(c *Config)
		want   []string // "field: message" prefixes, in order
	}{
		{
			name:   "valid",
			modify: func(*Config) {},
		},
		{
			name:   "no listeners",
			modify: func(c *Config) { c.Listeners = nil },
			want:   []string{"listeners: at least one listener is required"},
		},
		{
			name: "zero values that need SetDefaults",
			modify: func(c *Config) {
				c.Server.ReadHeaderTimeout = 0
				c.Admin.Address = ""
				c.Listeners[0].Name = ""
			},
			want: []string{
				"listeners[0].name: must not be empty",
				"admin.address: must not be empty",
				"server.read_header_timeout: must be greater than 0, got 0s",
			},
		},
		{
			name: "missing required fields say is required",
			modify: func(c *Config) {
				c.Listeners[0].Address = ""
				c.Services["products"].Instances[0].Port = 0
				c.Routes[0].Service = ""
			},
			want: []string{
				"listeners[0].address: is required",
				"services.products.instances[0].port: is required",
				"routes[0].service: is required",
			},
		},
		{
			name: "negative values",
			modify: func(c *Config) {
				c.Server.DrainDelay = -1
				c.Server.TrustedHops = -1
				c.Server.MaxBodyBytes = -5
			},
			want: []string{
				"server.drain_delay: must not be negative",
				"server.max_body_bytes: must be greater than 0",
				"server.trusted_hops: -1 is out of range",
			},
		},
		{
			name: "weight 0 is allowed and means 1",
			modify: func(c *Config) {
				c.Services["products"].Instances[0].Weight = 0
			},
		},
		{
			name: "unknown service and bad route",
			modify: func(c *Config) {
				c.Routes = append(c.Routes, Route{Name: "x", Service: "nope", Match: Match{Path: "/a", PathPrefix: "/b", Methods: []string{"get"}}, StripPrefix: true})
			},
			want: []string{
				`routes[1].service: unknown service "nope"; declared services: products`,
				"routes[1].match.path_prefix: path and path_prefix are mutually exclusive",
				`routes[1].match.methods[0]: method "get" must be upper case`,
				"routes[1].strip_prefix: needs match.path_prefix",
			},
		},
		{
			name: "admin off",
			modify: func(c *Config) {
				c.Admin.Address = AdminOff
			},
		},
		{
			name: "tls file problems",
			modify: func(c *Config) {
				c.Listeners[0].TLS = &TLS{CertFile: "testdata/tls/test-only-cert.pem"}
				c.Listeners = append(c.Listeners, Listener{Name: "b", Address: ":8443", TLS: &TLS{CertFile: "testdata/tls/test-only-key.pem", KeyFile: "testdata/tls/test-only-key.pem"}})
			},
			want: []string{
				"listeners[0].tls.key_file: is required",
				"listeners[1].tls: cert_file and key_file are not a usable certificate and key",
			},
		},
		{
			name: "resilience limits",
			modify: func(c *Config) {
				s := c.Services["products"]
				s.Retry = Retry{
					Attempts: 11, Statuses: []int{503, 404, 503}, PerTryTimeout: -1,
					BackoffBase: Duration(2 * time.Minute), BackoffMax: Duration(time.Millisecond),
					RetryAfterMax: -1, ReplayLimit: -1,
					Budget: RetryBudget{Ratio: math.NaN(), MinPerSecond: -1, Window: Duration(time.Hour)},
				}
				s.CircuitBreaker = CircuitBreaker{FailureRatio: math.Inf(1), Window: Duration(time.Millisecond), OpenTime: Duration(2 * time.Hour)}
				s.OutlierDetection = OutlierDetection{
					ConsecutiveFailures: 1001, BaseEjectionTime: Duration(time.Minute), MaxEjectionTime: Duration(time.Second), MaxEjectionPercent: 101,
				}
				s.MaxConcurrentRequests = -1
				c.Services["products"] = s
				c.Listeners[0].MaxConcurrentRequests = -5
				c.Routes[0].Timeout = -1
			},
			want: []string{
				"listeners[0].max_concurrent_requests: must not be negative, got -5; 0 means no limit",
				"services.products.retry.attempts: 11 is out of range; want 1 to 10 (1 disables retries)",
				"services.products.retry.statuses[1]: status 404 cannot be retried; want 408, 429 or a status from 500 to 599",
				"services.products.retry.statuses[2]: duplicate status 503, already at services.products.retry.statuses[0]",
				"services.products.retry.per_try_timeout: must be greater than 0, got -1ns",
				"services.products.retry.backoff_base: 2m is too long; want at most 1m",
				"services.products.retry.retry_after_max: -1ns is out of range; want 0s to 1m",
				"services.products.retry.replay_limit: -1 is out of range; want 0 to 16MiB",
				"services.products.retry.budget.ratio: NaN is out of range; want 0 to 1",
				"services.products.retry.budget.min_per_second: -1 is out of range; want 0 to 10000",
				"services.products.retry.budget.window: 1h is out of range; want 1s to 5m",
				"services.products.circuit_breaker.consecutive_failures: 0 is out of range; want 1 to 1000",
				"services.products.circuit_breaker.failure_ratio: +Inf is out of range; want more than 0 and at most 1",
				"services.products.circuit_breaker.min_requests: 0 is out of range; want 1 to 100000",
				"services.products.circuit_breaker.window: 1ms is out of range; want 100ms to 1h",
				"services.products.circuit_breaker.open_time: 2h is out of range; want 100ms to 1h",
				"services.products.circuit_breaker.half_open_requests: 0 is out of range; want 1 to 100",
				"services.products.outlier_detection.consecutive_failures: 1001 is out of range; want 1 to 1000",
				"services.products.outlier_detection.max_ejection_time: 1s must not be shorter than services.products.outlier_detection.base_ejection_time, which is 1m;",
				"services.products.outlier_detection.max_ejection_percent: 101 is out of range; want 0 to 100",
				"services.products.max_concurrent_requests: must not be negative, got -1; 0 means no limit",
				"routes[0].timeout: -1ns is out of range; want 0s (no overall limit) to 1h",
			},
		},
		{
			name: "resilience zeros that are allowed",
			modify: func(c *Config) {
				s := c.Services["products"]
				s.Retry.Statuses = nil
				s.Retry.RetryAfterMax, s.Retry.ReplayLimit = 0, 0
				s.Retry.Budget.Ratio, s.Retry.Budget.MinPerSecond = 0, 0
				s.OutlierDetection.MaxEjectionPercent = 0
				s.Retry.Attempts = 1
				s.Retry.BackoffMax = s.Retry.BackoffBase
				s.Retry.PerTryTimeout = MaxPerTryTimeout
				s.CircuitBreaker.FailureRatio = 1
				c.Services["products"] = s
				c.Routes[0].Timeout = MaxRouteTimeout
			},
		},
		{
			name: "tls pair ok",
			modify: func(c *Config) {
				c.Listeners[0].TLS = &TLS{CertFile: "testdata/tls/test-only-cert.pem", KeyFile: "testdata/tls/test-only-key.pem"}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := goConfig()
			tc.modify(c)
			errs := c.Validate()
			if len(errs) != len(tc.want) {
				t.Fatalf("got %d errors, want %d:\n%v", len(errs), len(tc.want), errs)
			}
			for i, e := range errs {
				if e.File != "" || e.Line != 0 {
					t.Errorf("error %d has a place: %+v", i, e)
				}
				if !strings.HasPrefix(e.String(), tc.want[i]) {
					t.Errorf("error %d = %q, want prefix %q", i, e, tc.want[i])
				}
			}
			if (errs.Err() == nil) != (len(tc.want) == 0) {
				t.Errorf("Err() = %v", errs.Err())
			}
		})
	}
}

func TestValidateNil(t *testing.T) {
	t.Parallel()
	var c *Config
	if errs := c.Validate(); len(errs) != 1 {
		t.Errorf("nil config: %v", errs)
	}
}

func TestValidators(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		fn   func(string) bool
		ok   []string
		bad  []string
	}{
		{
			name: "listen address",
			fn:   func(s string) bool { return checkListenAddress(s) == "" },
			ok:   []string{":8080", "127.0.0.1:0", "[::1]:443", "localhost:65535", "[fe80::1%eth0]:80", "0.0.0.0:80"},
			bad:  []string{"8080", ":http", ":65536", ":-1", "a b:80", "::1:80", "127.0.0.1:", ":+80"},
		},
		{
			name: "service name",
			fn:   validServiceName,
			ok:   []string{"a", "products", "users.v1", "a_b-c", "9lives"},
			bad:  []string{"", "-a", ".a", "_a", "a b", "a/b", "ä"},
		},
		{
			name: "token",
			fn:   validToken,
			ok:   []string{"X-User-ID", "GET", "session_id", "x!#$%&'*+.^_`|~"},
			bad:  []string{"", "a b", "a:b", "a\tb", "é", "a(b)"},
		},
		{
			name: "instance host",
			fn:   func(s string) bool { return validIP(s) || validHostname(s, true) },
			ok:   []string{"10.0.0.1", "::1", "fe80::1%eth0", "products", "products.internal", "products.internal.", "my_service", strings.Repeat("a", 63)},
			bad:  []string{"", "[::1]", "a..b", "-a", "a-", "a b", strings.Repeat("a", 64), strings.Repeat("a.", 127) + "aa"},
		},
		{
			name: "path",
			fn:   func(s string) bool { return checkPath(s) == "" },
			ok:   []string{"/", "/api", "/api/", "/a/b/c", "/%20", "/a.b", "/..a"},
			bad:  []string{"", "api", "/a?b", "/a#b", "//", "/a//b", "/./a", "/a/..", "/a b", "/a\x00"},
		},
		{
			name: "consul address",
			fn:   func(s string) bool { return checkConsulAddress(s) == "" },
			ok: []string{
				"127.0.0.1:8500", "consul:8500", "[::1]:8500", "consul.service.consul.:8501",
				"http://127.0.0.1:8500", "https://consul.example.com", "https://consul.example.com:8501/consul/", "http://[fd00::1]:8500",
			},
			bad: []string{
				"", "consul", "127.0.0.1", ":8500", "consul:0", "consul:65536", "consul:http", "a b:8500",
				"ftp://consul:8500", "unix:///var/run/consul.sock", "HTTP://consul:8500", "http://", "http:///v1",
				"http://user:pw@consul:8500", "http://consul:8500?dc=1", "http://consul:8500/#x", "http://consul:99999", "http://a_b-:1",
			},
		},
		{
			name: "meta key",
			fn:   func(s string) bool { return checkMetaKey(s) == "" },
			ok:   []string{"version", "meshgate-route", "a_b", "Consul-x", "x-consul-", strings.Repeat("k", 128)},
			bad:  []string{"", "consul-", "consul-version", "a.b", "a b", "a=b", "ä", strings.Repeat("k", 129)},
		},
		{
			name: "datacenter",
			fn:   validDatacenter,
			ok:   []string{"dc1", "eu-west-1", "a.b_c"},
			bad:  []string{"", "eu west", "dc/1", "dc:1"},
		},
		{
			name: "check url",
			fn:   func(s string) bool { return checkCheckURL(s) == "" },
			ok:   []string{"http://10.0.0.5:8080/healthz", "https://web.internal/health?full=1", "http://[::1]:80/"},
			bad:  []string{"", "/healthz", "10.0.0.5:8080/healthz", "ftp://a/b", "http://", "http://a:0/", "http://a/b c", "http://:80/x"},
		},
		{
			name: "route host",
			fn:   func(s string) bool { return checkRouteHost(s) == "" },
			ok:   []string{"example.com", "*.example.com", "API.example.com", "localhost", "10.0.0.1"},
			bad:  []string{"", "*", "*.", "a.*.com", "example.com:80", "::1", "a b", "**.a"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for _, s := range tc.ok {
				if !tc.fn(s) {
					t.Errorf("%q rejected", s)
				}
			}
			for _, s := range tc.bad {
				if tc.fn(s) {
					t.Errorf("%q accepted", s)
				}
			}
		})
	}
}

func TestDurText(t *testing.T) {
	t.Parallel()
	for d, want := range map[Duration]string{
		0:                                   "0s",
		Duration(250 * time.Millisecond):    "250ms",
		Duration(time.Second):               "1s",
		Duration(time.Minute):               "1m",
		Duration(90 * time.Second):          "1m30s",
		Duration(10 * time.Minute):          "10m",
		Duration(time.Hour):                 "1h",
		Duration(time.Hour + time.Minute):   "1h1m",
		Duration(time.Hour + 5*time.Second): "1h0m5s",
	} {
		if got := durText(d); got != want {
			t.Errorf("durText(%v) = %q, want %q", time.Duration(d), got, want)
		}
	}
}

func TestDefaultService(t *testing.T) {
	t.Parallel()
	s := DefaultService()
	if s.LoadBalancer.Policy != DefaultPolicy || s.Protocol != DefaultProtocol || s.Timeouts.Connect != DefaultConnectTimeout ||
		s.MaxIdleConnsPerInstance != DefaultMaxIdleConnsPerInstance || len(s.Instances) != 0 {
		t.Errorf("DefaultService() = %+v", s)
	}
	retry, cb, od := defaultResilience(DefaultResponseHeaderTimeout)
	if !reflect.DeepEqual(s.Retry, retry) || s.CircuitBreaker != cb || s.OutlierDetection != od {
		t.Errorf("DefaultService() resilience = %+v %+v %+v", s.Retry, s.CircuitBreaker, s.OutlierDetection)
	}
	// Each call gets its own statuses.
	s.Retry.Statuses[0] = 500
	if got := DefaultService().Retry.Statuses[0]; got != 502 {
		t.Errorf("DefaultService() shares its statuses: %d", got)
	}
	c := &Config{Listeners: []Listener{{Address: ":1"}}, Services: map[string]Service{"d": DefaultService()}}
	c.SetDefaults()
	if errs := c.Validate(); errs != nil {
		t.Errorf("DefaultService() does not validate: %v", errs)
	}
}
