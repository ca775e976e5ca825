package deployments_test

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/meshgate/meshgate/config"
)

// The compose file is checked without a Docker engine: it is loaded with
// the Compose Specification's own library (as `docker compose` does), and
// the meshgate configs it mounts with config.Load.

// demoServices are the services of meshgate-demo, each with a sidecar.
var demoServices = []string{"products", "users", "orders"}

const (
	sidecarProbe = "http://127.0.0.1:9901/readyz"
	consulAddr   = "consul:8500"
	otlpEndpoint = "http://jaeger:4318"
)

// repoRoot is the directory of docker-compose.yml and the Dockerfile.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// loadCompose loads docker-compose.yml the way `docker compose` would,
// from the repository root, with interpolation and no environment.
func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	root := repoRoot(t)
	opts, err := cli.NewProjectOptions([]string{filepath.Join(root, "docker-compose.yml")},
		cli.WithWorkingDirectory(root),
		cli.WithName("meshgate"),
		cli.WithInterpolation(true),
		cli.WithEnv([]string{}),
		cli.WithResolvedPaths(true),
	)
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(t.Context())
	if err != nil {
		t.Fatalf("loading docker-compose.yml: %v", err)
	}
	return p
}

// dockerStage is one FROM of the Dockerfile.
type dockerStage struct {
	name, base, user string // user: the stage's last USER
	entrypoint       string
}

var fromLine = regexp.MustCompile(`(?i)^FROM\s+(\S+)(?:\s+AS\s+(\S+))?\s*$`)

// parseDockerfile returns the stages of the Dockerfile in order.
func parseDockerfile(t *testing.T, path string) []dockerStage {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var stages []dockerStage
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if m := fromLine.FindStringSubmatch(line); m != nil {
			stages = append(stages, dockerStage{name: m[2], base: m[1]})
			continue
		}
		if len(stages) == 0 {
			continue
		}
		cur := &stages[len(stages)-1]
		if v, ok := strings.CutPrefix(line, "USER "); ok {
			cur.user = strings.TrimSpace(v)
		}
		if v, ok := strings.CutPrefix(line, "ENTRYPOINT "); ok {
			cur.entrypoint = strings.TrimSpace(v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return stages
}

// loadMeshgateConfig loads a mounted meshgate config. The gateway's
// aggregate route needs the aggregation support in config: until it is
// there, the error about that one key is a skip, not a failure.
func loadMeshgateConfig(t *testing.T, path string) *config.Config {
	t.Helper()
	cfg, err := config.Load(path)
	if err != nil {
		if onlyAboutAggregate(err) {
			t.Skipf("%s needs aggregate routes, which config does not know yet: %v", filepath.Base(path), err)
		}
		t.Fatalf("config.Load: %v", err)
	}
	return cfg
}

// onlyAboutAggregate tells whether every line of a load error is about the
// unknown key "aggregate".
func onlyAboutAggregate(err error) bool {
	lines := strings.Split(strings.TrimSpace(err.Error()), "\n")
	for _, l := range lines {
		if !strings.Contains(l, "aggregate") {
			return false
		}
	}
	return len(lines) > 0
}

// env returns a service's environment variable, "" when unset.
func env(s types.ServiceConfig, name string) string {
	if v := s.Environment[name]; v != nil {
		return *v
	}
	return ""
}

// mountedConfig is the host path of the meshgate config a meshgate service
// runs with: the file bound read-only at the path after --config.
func mountedConfig(s types.ServiceConfig) (string, error) {
	i := slices.Index(s.Command, "--config")
	if i < 0 || i+1 >= len(s.Command) || !slices.Equal(s.Command[:1], []string{"run"}) {
		return "", fmt.Errorf("command %q is not run --config FILE", s.Command)
	}
	target := s.Command[i+1]
	for _, v := range s.Volumes {
		if v.Type == types.VolumeTypeBind && v.Target == target {
			if !v.ReadOnly {
				return "", fmt.Errorf("%s is mounted writable, want :ro", target)
			}
			return v.Source, nil
		}
	}
	return "", fmt.Errorf("no bind mount at %s, the --config path", target)
}

// checkProject returns every problem of the compose project: what a
// `docker compose up` of the demo mesh relies on.
func checkProject(t *testing.T, p *types.Project, stages []dockerStage) []string {
	t.Helper()
	var problems []string
	fail := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	root := repoRoot(t)

	targets := map[string]dockerStage{}
	for _, s := range stages {
		if s.name != "" {
			targets[s.name] = s
		}
	}

	// Every service: a health check; builds name existing targets;
	// dependencies wait for health.
	published := map[string]string{} // "port/proto" → service
	for name, s := range p.Services {
		if s.HealthCheck == nil || s.HealthCheck.Disable || len(s.HealthCheck.Test) < 2 || s.HealthCheck.Test[0] == "NONE" {
			fail("%s: no health check", name)
		}
		if s.Build != nil {
			if _, ok := targets[s.Build.Target]; !ok {
				fail("%s: build target %q is not a stage of the Dockerfile", name, s.Build.Target)
			}
			if s.Build.Context != root {
				fail("%s: build context %s, want the repository root", name, s.Build.Context)
			}
		} else if s.Image == "" {
			fail("%s: neither build nor image", name)
		}
		for dep, d := range s.DependsOn {
			if d.Condition != types.ServiceConditionHealthy {
				fail("%s: depends_on %s with condition %q, want service_healthy", name, dep, d.Condition)
			}
			if _, ok := p.Services[dep]; !ok {
				fail("%s: depends_on unknown service %s", name, dep)
			}
		}
		for _, port := range s.Ports {
			if port.Published == "" {
				continue
			}
			key := port.Published + "/" + cmpOr(port.Protocol, "tcp")
			if other, ok := published[key]; ok {
				fail("%s: host port %s is also published by %s", name, key, other)
			}
			published[key] = name
		}
	}
	if published["8080/tcp"] != "gateway" || published["8500/tcp"] != "consul" || published["16686/tcp"] != "jaeger" {
		fail("host ports: want 8080 gateway, 8500 consul (UI), 16686 jaeger (UI); have %v", published)
	}

	if c, ok := p.Services["consul"]; !ok || !strings.HasPrefix(c.Image, "hashicorp/consul:") {
		fail("no consul service with the hashicorp/consul image")
	}
	if j, ok := p.Services["jaeger"]; !ok || !regexp.MustCompile(`^jaegertracing/jaeger:2\.\d+\.\d+$`).MatchString(j.Image) {
		fail("no jaeger service with a jaegertracing/jaeger:2.x.y image (Jaeger v2)")
	}

	// The meshgate containers: the gateway and every sidecar.
	meshgates := []string{"gateway"}
	for _, svc := range demoServices {
		meshgates = append(meshgates, svc+"-sidecar")
	}
	for _, name := range meshgates {
		s, ok := p.Services[name]
		if !ok {
			fail("%s: missing", name)
			continue
		}
		if s.Build == nil || s.Build.Target != "meshgate" {
			fail("%s: want build target meshgate", name)
		}
		if s.User != "" && s.User != "nonroot" && s.User != "65532" {
			fail("%s: runs as user %q, want the image's nonroot", name, s.User)
		}
		if want := []string{"CMD", "/meshgate", "probe", sidecarProbe}; s.HealthCheck == nil || !slices.Equal(s.HealthCheck.Test, want) {
			fail("%s: health check %v, want %v", name, healthTest(s), want)
		}
		if env(s, "CONSUL_HTTP_ADDR") != consulAddr {
			fail("%s: CONSUL_HTTP_ADDR=%q, want %s", name, env(s, "CONSUL_HTTP_ADDR"), consulAddr)
		}
		if env(s, "OTEL_EXPORTER_OTLP_ENDPOINT") != otlpEndpoint {
			fail("%s: OTEL_EXPORTER_OTLP_ENDPOINT=%q, want %s", name, env(s, "OTEL_EXPORTER_OTLP_ENDPOINT"), otlpEndpoint)
		}
		if env(s, "OTEL_SERVICE_NAME") != name {
			fail("%s: OTEL_SERVICE_NAME=%q, want %s", name, env(s, "OTEL_SERVICE_NAME"), name)
		}
		wantDeps := []string{"consul", "jaeger"}
		if name == "gateway" {
			for _, svc := range demoServices {
				wantDeps = append(wantDeps, svc+"-sidecar")
			}
		} else {
			wantDeps = append(wantDeps, strings.TrimSuffix(name, "-sidecar"))
		}
		for _, dep := range wantDeps {
			if _, ok := s.DependsOn[dep]; !ok {
				fail("%s: does not depend on %s", name, dep)
			}
		}
		if _, err := mountedConfig(s); err != nil {
			fail("%s: %v", name, err)
		}
	}

	// Every demo service: built from the demo target, probed by
	// meshgate-demo, beside its sidecar.
	for _, svc := range demoServices {
		s, ok := p.Services[svc]
		if !ok {
			fail("%s: missing", svc)
			continue
		}
		if s.Build == nil || s.Build.Target != "demo" {
			fail("%s: want build target demo", svc)
		}
		if want := []string{"-listen", svc + "=0.0.0.0:9000"}; !slices.Equal(s.Command[:min(2, len(s.Command))], want) {
			fail("%s: command %q, want it to start with %q", svc, s.Command, want)
		}
		if want := []string{"CMD", "/meshgate-demo", "probe", "http://127.0.0.1:9000/healthz"}; s.HealthCheck == nil || !slices.Equal(s.HealthCheck.Test, want) {
			fail("%s: health check %v, want %v", svc, healthTest(s), want)
		}
	}
	return problems
}

func healthTest(s types.ServiceConfig) []string {
	if s.HealthCheck == nil {
		return nil
	}
	return s.HealthCheck.Test
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func TestComposeFile(t *testing.T) {
	p := loadCompose(t)
	stages := parseDockerfile(t, filepath.Join(repoRoot(t), "Dockerfile"))
	for _, problem := range checkProject(t, p, stages) {
		t.Error(problem)
	}
	if len(p.Services) != 9 {
		t.Errorf("%d services, want 9: consul, jaeger, gateway and three services with a sidecar each", len(p.Services))
	}
}

// TestComposeChecksCatchMistakes breaks a loaded project in the ways the
// checks are there for, one at a time, and expects each to be reported.
func TestComposeChecksCatchMistakes(t *testing.T) {
	stages := parseDockerfile(t, filepath.Join(repoRoot(t), "Dockerfile"))
	tests := map[string]struct {
		mutate func(p *types.Project)
		want   string
	}{
		"a sidecar missing": {func(p *types.Project) { delete(p.Services, "users-sidecar") }, "users-sidecar: missing"},
		"a port published twice": {func(p *types.Project) {
			s := p.Services["products"]
			s.Ports = append(s.Ports, types.ServicePortConfig{Target: 9000, Published: "8080", Protocol: "tcp"})
			p.Services["products"] = s
		}, "host port 8080/tcp is also published by"},
		"a dependency that only waits for the start": {func(p *types.Project) {
			s := p.Services["gateway"]
			s.DependsOn["consul"] = types.ServiceDependency{Condition: types.ServiceConditionStarted}
			p.Services["gateway"] = s
		}, `gateway: depends_on consul with condition "service_started"`},
		"no health check": {func(p *types.Project) {
			s := p.Services["jaeger"]
			s.HealthCheck = nil
			p.Services["jaeger"] = s
		}, "jaeger: no health check"},
		"a build target the Dockerfile lacks": {func(p *types.Project) {
			s := p.Services["orders"]
			s.Build.Target = "orders"
			p.Services["orders"] = s
		}, `orders: build target "orders" is not a stage`},
		"a sidecar pointing at another Consul": {func(p *types.Project) {
			s := p.Services["orders-sidecar"]
			v := "localhost:8500"
			s.Environment["CONSUL_HTTP_ADDR"] = &v
			p.Services["orders-sidecar"] = s
		}, `orders-sidecar: CONSUL_HTTP_ADDR="localhost:8500"`},
		"a sidecar without Jaeger": {func(p *types.Project) {
			s := p.Services["products-sidecar"]
			delete(s.Environment, "OTEL_EXPORTER_OTLP_ENDPOINT")
			p.Services["products-sidecar"] = s
		}, `products-sidecar: OTEL_EXPORTER_OTLP_ENDPOINT=""`},
		"a config mounted writable": {func(p *types.Project) {
			s := p.Services["users-sidecar"]
			s.Volumes[0].ReadOnly = false
			p.Services["users-sidecar"] = s
		}, "users-sidecar: /etc/meshgate/users-sidecar.yaml is mounted writable"},
		"a sidecar running as root": {func(p *types.Project) {
			s := p.Services["users-sidecar"]
			s.User = "root"
			p.Services["users-sidecar"] = s
		}, `users-sidecar: runs as user "root"`},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			p := loadCompose(t) // a fresh copy: mutations share maps
			if problems := checkProject(t, p, stages); len(problems) != 0 {
				t.Fatalf("the unbroken project has problems: %v", problems)
			}
			tt.mutate(p)
			problems := checkProject(t, p, stages)
			if !slices.ContainsFunc(problems, func(s string) bool { return strings.Contains(s, tt.want) }) {
				t.Errorf("problems %v, want one containing %q", problems, tt.want)
			}
		})
	}
}

func TestDockerfile(t *testing.T) {
	t.Parallel()
	stages := parseDockerfile(t, filepath.Join(repoRoot(t), "Dockerfile"))
	if len(stages) == 0 {
		t.Fatal("no FROM in the Dockerfile")
	}
	if last := stages[len(stages)-1]; last.name != "meshgate" {
		t.Errorf("the last stage (the default target) is %q, want meshgate", last.name)
	}
	want := map[string]string{"meshgate": `["/meshgate"]`, "demo": `["/meshgate-demo"]`}
	for _, s := range stages {
		if s.name == "build" {
			if !strings.HasPrefix(s.base, "golang:1.26") {
				t.Errorf("build stage from %s, want golang:1.26-bookworm", s.base)
			}
			continue
		}
		ep, final := want[s.name]
		if !final {
			continue
		}
		delete(want, s.name)
		if s.base != "gcr.io/distroless/static-debian12:nonroot" {
			t.Errorf("stage %s from %s, want distroless static nonroot", s.name, s.base)
		}
		if u := strings.Split(s.user, ":")[0]; u == "" || u == "root" || u == "0" {
			t.Errorf("stage %s runs as %q, want a non-root USER", s.name, s.user)
		}
		if s.entrypoint != ep {
			t.Errorf("stage %s ENTRYPOINT %s, want %s", s.name, s.entrypoint, ep)
		}
	}
	for name := range want {
		t.Errorf("no final stage %q", name)
	}
}

// TestComposeMeshgateConfigs loads every config of deployments/compose/
// and checks that the sidecars register their service, reachable through
// themselves, and forward to their app container.
func TestComposeMeshgateConfigs(t *testing.T) {
	p := loadCompose(t)
	root := repoRoot(t)
	files, err := filepath.Glob(filepath.Join(root, "deployments", "compose", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no configs in deployments/compose (%v)", err)
	}
	mounted := map[string]string{} // host path → compose service
	for name, s := range p.Services {
		if src, err := mountedConfig(s); err == nil {
			mounted[src] = name
		}
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			name, ok := mounted[file]
			if !ok {
				t.Fatalf("%s is mounted by no compose service", file)
			}
			s := p.Services[name]
			cfg := loadMeshgateConfig(t, file)
			if cfg.Discovery.Consul == nil {
				t.Error("no discovery.consul: the services would not be found")
			} else if cfg.Discovery.Consul.Address != "" {
				t.Errorf("discovery.consul.address %q: leave it to CONSUL_HTTP_ADDR", cfg.Discovery.Consul.Address)
			}
			if cfg.Telemetry.OTLPEndpoint != "" || cfg.Telemetry.TracesDisabled {
				t.Errorf("telemetry %+v: leave it to OTEL_EXPORTER_OTLP_ENDPOINT", cfg.Telemetry)
			}
			if _, port, _ := net.SplitHostPort(cfg.Admin.Address); port != "9901" {
				t.Errorf("admin address %q: the health check probes port 9901", cfg.Admin.Address)
			}
			if name == "gateway" {
				checkGateway(t, cfg, s)
				return
			}
			checkSidecar(t, p, cfg, strings.TrimSuffix(name, "-sidecar"))
		})
	}
}

// listenPort is the port of the config's only traffic listener.
func listenPort(t *testing.T, cfg *config.Config) int {
	t.Helper()
	if len(cfg.Listeners) != 1 {
		t.Fatalf("%d listeners, want 1", len(cfg.Listeners))
	}
	host, port, err := net.SplitHostPort(cfg.Listeners[0].Address)
	if err != nil || host != "0.0.0.0" {
		t.Fatalf("listener %q: want 0.0.0.0:PORT, reachable from other containers", cfg.Listeners[0].Address)
	}
	n, _ := strconv.Atoi(port)
	return n
}

func checkSidecar(t *testing.T, p *types.Project, cfg *config.Config, svc string) {
	port := listenPort(t, cfg)
	r := cfg.Register
	if r == nil {
		t.Fatal("no register section: the service would not be in Consul")
	}
	if r.Name != svc || r.Address != svc+"-sidecar" || r.Port != port {
		t.Errorf("registers %s at %s:%d, want %s at %s-sidecar:%d (traffic enters through the sidecar)", r.Name, r.Address, r.Port, svc, svc, port)
	}
	if r.Check.URL != "" || r.Check.Path != "/healthz" {
		t.Errorf("check %+v: want /healthz through the sidecar", r.Check)
	}
	local, ok := cfg.Services["local"]
	if !ok || len(local.Instances) != 1 || local.Instances[0].Address != svc || local.Instances[0].Port != 9000 {
		t.Errorf(`service "local" is %+v, want the one instance %s:9000`, local.Instances, svc)
	}
	routes := map[string]string{}
	for _, rt := range cfg.Routes {
		routes[rt.Match.PathPrefix] = rt.Service
	}
	if routes["/"] != "local" {
		t.Errorf("routes %v: want / to local", routes)
	}
	if svc != "orders" {
		if len(cfg.Routes) != 1 {
			t.Errorf("routes %v: want only / to local", routes)
		}
		return
	}
	// Orders calls users through this sidecar.
	if routes["/users"] != "users" {
		t.Errorf("routes %v: want /users to users, orders' outbound call", routes)
	}
	if _, ok := cfg.Services["users"]; !ok {
		t.Error(`no service "users" to discover in Consul`)
	}
	cmd := p.Services["orders"].Command
	i := slices.Index(cmd, "-users-url")
	if want := fmt.Sprintf("http://orders-sidecar:%d", port); i < 0 || i+1 >= len(cmd) || cmd[i+1] != want {
		t.Errorf("orders command %q: want -users-url %s, its own sidecar", cmd, want)
	}
}

func checkGateway(t *testing.T, cfg *config.Config, s types.ServiceConfig) {
	port := listenPort(t, cfg)
	if !slices.ContainsFunc(s.Ports, func(pc types.ServicePortConfig) bool {
		return pc.Published == strconv.Itoa(port) && pc.Target == uint32(port)
	}) {
		t.Errorf("the gateway listens on %d but does not publish it: %+v", port, s.Ports)
	}
	if cfg.Register != nil {
		t.Error("the gateway registers itself in Consul; it is a client of the mesh")
	}
	routes := map[string]config.Route{}
	for _, rt := range cfg.Routes {
		routes[rt.Match.PathPrefix] = rt
	}
	for _, svc := range demoServices {
		if routes["/"+svc].Service != svc {
			t.Errorf("/%s goes to %q, want %s", svc, routes["/"+svc].Service, svc)
		}
		if sc, ok := cfg.Services[svc]; !ok || len(sc.Instances) != 0 {
			t.Errorf("service %s: want it declared without instances (they come from Consul)", svc)
		}
	}
	view, ok := routes["/views/orders"]
	if !ok || view.Name != "order-view" || view.Aggregate == nil {
		t.Fatalf("no aggregate route order-view on /views/orders: %+v", view)
	}
	var parts []string
	for _, part := range view.Aggregate.Parts {
		parts = append(parts, part.Name)
	}
	if !slices.Equal(parts, []string{"order", "user", "products"}) {
		t.Errorf("order-view parts %v, want order, user, products", parts)
	}
}
