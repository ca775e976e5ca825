package config

import (
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
	}) {
		t.Errorf("server defaults: %+v", c.Server)
	}
	s := c.Services["products"]
	if s.Protocol != "http1" || s.LoadBalancer.Policy != "round_robin" || s.MaxIdleConnsPerInstance != 256 ||
		s.Timeouts != (Timeouts{Connect: Duration(2 * time.Second), ResponseHeader: Duration(30 * time.Second), IdleConn: Duration(90 * time.Second)}) {
		t.Errorf("service defaults: %+v", s)
	}
	if in := s.Instances[0]; in.ID != "10.0.0.1:8080" || in.Weight != 1 || in.Health != "passing" {
		t.Errorf("instance defaults: %+v", in)
	}
	if r := c.Routes[0]; r.Name != "route-0" || r.Match.PathPrefix != "/products" {
		t.Errorf("route defaults: %+v", r)
	}

	// Defaults leave set values alone and are idempotent.
	c.Server.IdleTimeout = Duration(time.Second)
	c.SetDefaults()
	if c.Server.IdleTimeout != Duration(time.Second) {
		t.Errorf("SetDefaults replaced a set value")
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
