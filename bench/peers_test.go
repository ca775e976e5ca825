package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshgate/meshgate/config"
	"go.yaml.in/yaml/v3"
)

var testBackends = []string{"127.0.0.1:18001", "127.0.0.1:18002"}

func TestPeerConfigs(t *testing.T) {
	t.Parallel()
	spec := peerSpec{Listen: "127.0.0.1:18000", Backends: testBackends, Dir: "/tmp/x"}
	tests := map[string]struct {
		got  string
		want []string // lines that must be present, whitespace-trimmed
	}{
		"nginx": {
			got: nginxConfig(spec),
			want: []string{
				"worker_processes 1;",
				"access_log off;",
				"listen 127.0.0.1:18000;",
				"server 127.0.0.1:18001;",
				"server 127.0.0.1:18002;",
				"keepalive 1024;",
				"keepalive_requests 1000000;",
				"proxy_http_version 1.1;",
				`proxy_set_header Connection "";`,
				"pid /tmp/x/nginx.pid;",
			},
		},
		"haproxy": {
			got: haproxyConfig(spec),
			want: []string{
				"nbthread 1",
				"http-reuse always",
				"option http-keep-alive",
				"balance roundrobin",
				"bind 127.0.0.1:18000",
				"server b1 127.0.0.1:18001",
				"server b2 127.0.0.1:18002",
			},
		},
		"caddy": {
			got: caddyConfig(spec),
			want: []string{
				"admin off",
				"auto_https off",
				"http://127.0.0.1:18000 {",
				"bind 127.0.0.1",
				"reverse_proxy 127.0.0.1:18001 127.0.0.1:18002 {",
				"lb_policy round_robin",
				"keepalive_idle_conns_per_host 1024",
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			lines := map[string]bool{}
			for l := range strings.Lines(tc.got) {
				lines[strings.TrimSpace(l)] = true
			}
			for _, w := range tc.want {
				if !lines[w] {
					t.Errorf("config has no line %q:\n%s", w, tc.got)
				}
			}
		})
	}
}

// TestPeerConfigsValidate has each installed peer check the config the
// harness would run it with.
func TestPeerConfigsValidate(t *testing.T) {
	t.Parallel()
	tests := map[string]func(t *testing.T, bin, dir string, spec peerSpec) *exec.Cmd{
		targetNginx: func(t *testing.T, bin, dir string, spec peerSpec) *exec.Cmd {
			writeFile(t, filepath.Join(dir, "nginx.conf"), nginxConfig(spec))
			args := nginxArgs(bin, dir)
			return exec.Command(args[0], append([]string{"-t"}, args[1:]...)...)
		},
		targetHAProxy: func(t *testing.T, bin, dir string, spec peerSpec) *exec.Cmd {
			file := filepath.Join(dir, "haproxy.cfg")
			writeFile(t, file, haproxyConfig(spec))
			return exec.Command(bin, "-c", "-f", file)
		},
		targetCaddy: func(t *testing.T, bin, dir string, spec peerSpec) *exec.Cmd {
			file := filepath.Join(dir, "Caddyfile")
			writeFile(t, file, caddyConfig(spec))
			cmd := exec.Command(bin, "validate", "--config", file, "--adapter", "caddyfile")
			cmd.Env = append(os.Environ(), caddyEnv(dir)...)
			return cmd
		},
	}
	for name, check := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			bin, ok := lookPeer(name)
			if !ok {
				t.Skipf("%s not installed (make bench-peers)", name)
			}
			dir := t.TempDir()
			spec := peerSpec{Listen: "127.0.0.1:18000", Backends: testBackends, Dir: dir}
			cmd := check(t, bin, dir, spec)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Run(); err != nil {
				t.Fatalf("%s rejects the generated config: %v\n%s", name, err, out.String())
			}
		})
	}
}

func TestMeshgateConfig(t *testing.T) {
	t.Parallel()
	got := meshgateConfig("127.0.0.1:18000", "127.0.0.1:18009", testBackends, "")

	// Strict decoding into meshgate's own types catches any key the
	// config package does not know.
	var c config.Config
	dec := yaml.NewDecoder(strings.NewReader(got))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("decoding generated config: %v\n%s", err, got)
	}
	if len(c.Listeners) != 1 || c.Listeners[0].Address != "127.0.0.1:18000" {
		t.Errorf("listeners = %+v", c.Listeners)
	}
	if c.Admin.Address != "127.0.0.1:18009" {
		t.Errorf("admin = %+v", c.Admin)
	}
	svc, ok := c.Services["bench"]
	if !ok || len(svc.Instances) != 2 || svc.LoadBalancer.Policy != "round_robin" {
		t.Fatalf("services = %+v", c.Services)
	}
	for i, want := range []int{18001, 18002} {
		if in := svc.Instances[i]; in.Address != "127.0.0.1" || in.Port != want {
			t.Errorf("instance %d = %s:%d, want 127.0.0.1:%d", i, in.Address, in.Port, want)
		}
	}
	if len(c.Routes) != 1 || c.Routes[0].Service != "bench" || c.Routes[0].Match.PathPrefix != "/" {
		t.Errorf("routes = %+v", c.Routes)
	}
	if c.Policies != nil {
		t.Errorf("policies = %+v, want none without a policies dir", c.Policies)
	}
}

func TestMeshgateConfigWithPolicies(t *testing.T) {
	t.Parallel()
	without := meshgateConfig("127.0.0.1:18000", "127.0.0.1:18009", testBackends, "")
	got := meshgateConfig("127.0.0.1:18000", "127.0.0.1:18009", testBackends, "/tmp/x/meshgate_policies/policies")
	var c config.Config
	dec := yaml.NewDecoder(strings.NewReader(got))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("decoding generated config: %v\n%s", err, got)
	}
	if c.Policies == nil || c.Policies.Dir != "/tmp/x/meshgate_policies/policies" {
		t.Errorf("policies = %+v, want dir /tmp/x/meshgate_policies/policies", c.Policies)
	}
	// The rest is meshgate's config, unchanged: the ratio compares the
	// policy chain and nothing else.
	if !strings.HasPrefix(got, without) {
		t.Errorf("config with policies does not extend the plain one:\n%s\nvs\n%s", got, without)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
