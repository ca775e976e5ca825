// The tests are an external package so that importing config stays possible
// even if config ever imports deployments for the embedded default.
package deployments_test

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/deployments"
)

// defaultConfig decodes the embedded default strictly (unknown keys are
// errors) into meshgate's config types.
func defaultConfig(t *testing.T) config.Config {
	t.Helper()
	var cfg config.Config
	dec := yaml.NewDecoder(bytes.NewReader(deployments.DefaultConfig))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		t.Fatalf("%s: %v", deployments.DefaultConfigName, err)
	}
	return cfg
}

func TestDefaultConfigIsTheFile(t *testing.T) {
	t.Parallel()
	onDisk, err := os.ReadFile(deployments.DefaultConfigName)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(onDisk, deployments.DefaultConfig) {
		t.Errorf("DefaultConfig differs from %s", deployments.DefaultConfigName)
	}
}

// TestDefaultConfigLoads runs the embedded default through the loader that
// `meshgate run` uses without --config: strict decoding, defaults and
// validation.
func TestDefaultConfigLoads(t *testing.T) {
	t.Parallel()
	cfg, err := config.Parse(deployments.DefaultConfigName, deployments.DefaultConfig)
	if err != nil {
		t.Fatalf("config.Parse: %v", err)
	}
	if len(cfg.Routes) != 3 || len(cfg.Services) != 3 {
		t.Errorf("parsed %d routes and %d services, want 3 and 3", len(cfg.Routes), len(cfg.Services))
	}
}

func TestDefaultConfigContent(t *testing.T) {
	t.Parallel()
	cfg := defaultConfig(t)

	if len(cfg.Listeners) != 1 || cfg.Listeners[0].Name != "http" || cfg.Listeners[0].Address != "127.0.0.1:8080" ||
		cfg.Listeners[0].TLS != nil {
		t.Errorf("listeners = %+v, want one plain listener http on 127.0.0.1:8080", cfg.Listeners)
	}
	if cfg.Admin.Address != "127.0.0.1:9901" {
		t.Errorf("admin.address = %q, want 127.0.0.1:9901", cfg.Admin.Address)
	}

	type instance struct {
		addr   string
		weight int
	}
	wantServices := map[string]struct {
		policy    string
		instances []instance
	}{
		"products": {"round_robin", []instance{{"127.0.0.1:9101", 0}, {"127.0.0.1:9102", 0}, {"127.0.0.1:9103", 0}}},
		"users":    {"weighted_round_robin", []instance{{"127.0.0.1:9201", 3}, {"127.0.0.1:9202", 1}}},
		"orders":   {"least_request", []instance{{"127.0.0.1:9301", 0}, {"127.0.0.1:9302", 0}}},
	}
	if len(cfg.Services) != len(wantServices) {
		t.Errorf("services = %v, want products, users and orders", slices.Sorted(maps.Keys(cfg.Services)))
	}
	for name, want := range wantServices {
		svc, ok := cfg.Services[name]
		if !ok {
			t.Errorf("service %s is missing", name)
			continue
		}
		if svc.LoadBalancer.Policy != want.policy {
			t.Errorf("services.%s.load_balancer.policy = %q, want %q", name, svc.LoadBalancer.Policy, want.policy)
		}
		var got []instance
		for _, in := range svc.Instances {
			got = append(got, instance{fmt.Sprintf("%s:%d", in.Address, in.Port), in.Weight})
		}
		if !slices.Equal(got, want.instances) {
			t.Errorf("services.%s.instances = %v, want %v", name, got, want.instances)
		}
	}

	wantRoutes := []config.Route{
		{Name: "products", Match: config.Match{PathPrefix: "/products"}, Service: "products"},
		{Name: "users", Match: config.Match{PathPrefix: "/users"}, Service: "users"},
		{Name: "orders", Match: config.Match{PathPrefix: "/orders"}, Service: "orders"},
	}
	if len(cfg.Routes) != len(wantRoutes) {
		t.Fatalf("%d routes, want %d", len(cfg.Routes), len(wantRoutes))
	}
	for i, want := range wantRoutes {
		got := cfg.Routes[i]
		if got.Name != want.Name || got.Service != want.Service || got.Match.PathPrefix != want.Match.PathPrefix ||
			got.Match.Path != "" || got.Match.Host != "" || len(got.Match.Methods) != 0 || len(got.Match.Headers) != 0 ||
			got.StripPrefix || got.RewritePrefix != "" {
			t.Errorf("routes[%d] = %+v, want %+v (the demo serves the full path: no strip, no rewrite)", i, got, want)
		}
	}
}

// runScript returns the text of run.sh.
func runScript(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("run.sh")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestRunScriptMatchesDefaultConfig keeps the demo instances that run.sh
// starts and the instances of the embedded default the same, and its
// default addresses those of the default config.
func TestRunScriptMatchesDefaultConfig(t *testing.T) {
	t.Parallel()
	cfg := defaultConfig(t)
	script := runScript(t)

	m := regexp.MustCompile(`(?s)\nDEMO_INSTANCES=\(\n(.*?)\n\)\n`).FindStringSubmatch(script)
	if m == nil {
		t.Fatal("run.sh has no DEMO_INSTANCES=( ... ) array")
	}
	var started []string
	for _, line := range strings.Split(m[1], "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			started = append(started, line)
		}
	}
	var configured []string
	for name, svc := range cfg.Services {
		for _, in := range svc.Instances {
			configured = append(configured, fmt.Sprintf("%s=%s:%d", name, in.Address, in.Port))
		}
	}
	slices.Sort(started)
	slices.Sort(configured)
	if !slices.Equal(started, configured) {
		t.Errorf("run.sh starts demo instances\n  %v\nbut %s configures\n  %v", started, deployments.DefaultConfigName, configured)
	}

	for variable, want := range map[string]string{
		"MESHGATE_LISTEN_ADDR": cfg.Listeners[0].Address,
		"MESHGATE_ADMIN_ADDR":  cfg.Admin.Address,
	} {
		m := regexp.MustCompile(`\$\{` + variable + `:=([^}]*)\}`).FindStringSubmatch(script)
		if m == nil {
			t.Errorf("run.sh has no default for %s", variable)
		} else if m[1] != want {
			t.Errorf("run.sh defaults %s to %s, but %s says %s", variable, m[1], deployments.DefaultConfigName, want)
		}
	}
}

func TestRunScriptIsRunnable(t *testing.T) {
	t.Parallel()
	fi, err := os.Stat("run.sh")
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o111 != 0o111 {
		t.Errorf("run.sh mode %v, want it executable (make run calls it directly)", fi.Mode().Perm())
	}
	script := runScript(t)
	if !strings.HasPrefix(script, "#!/usr/bin/env bash\n") {
		t.Error("run.sh does not start with #!/usr/bin/env bash")
	}
	if !strings.Contains(script, "\nset -euo pipefail\n") {
		t.Error("run.sh does not set -euo pipefail")
	}
	// `meshgate run` without --config: meshgate picks MESHGATE_CONFIG or
	// the embedded default itself.
	if !regexp.MustCompile(`"\$bindir/meshgate" run [>&<]`).MatchString(script) {
		t.Error(`run.sh should start "$bindir/meshgate" run without --config`)
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash to check the syntax with")
	}
	if out, err := exec.Command(bash, "-n", "run.sh").CombinedOutput(); err != nil {
		t.Errorf("bash -n run.sh: %v\n%s", err, out)
	}
}
