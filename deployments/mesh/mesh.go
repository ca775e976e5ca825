// Package mesh runs the demo service mesh on one machine, without Docker:
// a Consul dev agent, Jaeger v2, the demo services (products, users,
// orders; one process per instance), a meshgate sidecar beside each
// instance that registers it in Consul, and the meshgate edge gateway that
// finds the services there and serves the aggregated order view.
// `make demo` runs it (deployments/mesh/meshgate-mesh); the end-to-end
// tests (e2e/) start it on free ports.
//
// Every process binds to 127.0.0.1. The request of the seed scenario:
//
//	client ─▶ edge :8080 /views/orders/1 ─┬▶ orders-sidecar ─▶ orders ─▶ orders-sidecar (outbound /users) ─▶ users-sidecar ─▶ users
//	                                      ├▶ users-sidecar ─▶ users
//	                                      └▶ products-sidecar ─▶ products (×2 instances)
//
// and every meshgate exports its spans to Jaeger.
package mesh

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/meshgate/meshgate/discovery/consultest"
	"github.com/meshgate/meshgate/telemetry/jaegertest"
)

// Options configure a mesh.
type Options struct {
	// BinDir holds meshgate, meshgate-demo, consul and jaeger (make build
	// and make tools put them in .bin).
	BinDir string
	// Dir receives the generated configs and every process's log
	// (Dir/logs/NAME.log).
	Dir string
	// FixedPorts uses the well-known ports printed by `make demo` (edge
	// 8080, Consul 8500, Jaeger 16686, ...); otherwise every port is a
	// free one, so that tests can run meshes side by side.
	FixedPorts bool
	// Instances per service; default products 2, users 1, orders 1.
	Instances map[string]int
}

// Mesh is a running mesh.
type Mesh struct {
	opts Options
	p    ports

	// Edge is the edge gateway's traffic address, EdgeAdmin its admin.
	Edge, EdgeAdmin string
	// Consul is the agent's HTTP address (UI at /ui).
	Consul string
	// Jaeger is the query API and UI address; OTLP its OTLP/HTTP receiver.
	Jaeger, OTLP string

	mu        sync.Mutex
	infra     []*proc // consul, jaeger: stopped last
	edge      *proc
	instances []*Instance
	nextPort  int // for fixed ports: the next instance's app port offset
}

// Instance is one instance of a demo service with its sidecar.
type Instance struct {
	Service string
	// ID is the Consul service ID its sidecar registers.
	ID string
	// App is the demo process's address; Sidecar the sidecar's traffic
	// address (what Consul lists); SidecarAdmin its admin.
	App, Sidecar, SidecarAdmin string

	app, sidecar *proc
}

// ports are the mesh's fixed ports.
type ports struct {
	edge, edgeAdmin                                     int
	consulHTTP, consulServer, consulSerfLAN, consulSerf int
	jaegerQuery, jaegerGRPC, otlpHTTP, otlpGRPC, health int
}

// The well-known ports of `make demo`.
var fixed = ports{
	edge: 8080, edgeAdmin: 9901,
	consulHTTP: 8500, consulServer: 8300, consulSerfLAN: 8301, consulSerf: 8302,
	jaegerQuery: 16686, jaegerGRPC: 16685, otlpHTTP: 4318, otlpGRPC: 4317, health: 13133,
}

// fixedAppPort is the first app port of each service under FixedPorts;
// its sidecar listens 10000 above, the sidecar's admin 20000 above.
var fixedAppPort = map[string]int{"products": 9101, "users": 9201, "orders": 9301}

// Services are the demo services, in start order: users first (orders
// calls it), then products, then orders.
var Services = []string{"users", "products", "orders"}

const (
	stopGrace   = 10 * time.Second
	infraWait   = 60 * time.Second
	processWait = 20 * time.Second
)

// Start starts the mesh and returns once the edge serves every service.
// On error everything started is stopped.
func Start(ctx context.Context, opts Options) (*Mesh, error) {
	if opts.Instances == nil {
		opts.Instances = map[string]int{"products": 2, "users": 1, "orders": 1}
	}
	for _, bin := range []string{"meshgate", "meshgate-demo", "consul", "jaeger"} {
		if _, err := os.Stat(filepath.Join(opts.BinDir, bin)); err != nil {
			return nil, fmt.Errorf("no %s in %s: run make build and make tools first: %w", bin, opts.BinDir, err)
		}
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, err
	}
	m := &Mesh{opts: opts}
	if opts.FixedPorts {
		m.p = fixed
	} else {
		f, err := freePorts(11)
		if err != nil {
			return nil, err
		}
		m.p = ports{f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9], f[10]}
	}
	m.Edge, m.EdgeAdmin = addr(m.p.edge), addr(m.p.edgeAdmin)
	m.Consul, m.Jaeger, m.OTLP = addr(m.p.consulHTTP), addr(m.p.jaegerQuery), addr(m.p.otlpHTTP)

	if err := m.start(ctx); err != nil {
		m.Stop()
		return nil, err
	}
	return m, nil
}

func (m *Mesh) start(ctx context.Context) error {
	bin := func(name string) string { return filepath.Join(m.opts.BinDir, name) }

	consul, err := startProc(m.opts.Dir, "consul", bin("consul"), nil,
		consultest.DevAgentArgs(m.p.consulHTTP, m.p.consulServer, m.p.consulSerfLAN, m.p.consulSerf, "meshgate-demo")...)
	if err != nil {
		return err
	}
	m.infra = append(m.infra, consul)
	jcfg := filepath.Join(m.opts.Dir, "jaeger.yaml")
	if err := os.WriteFile(jcfg, []byte(jaegertest.Config(m.p.otlpGRPC, m.p.otlpHTTP, m.p.jaegerQuery, m.p.jaegerGRPC, m.p.health)), 0o644); err != nil {
		return err
	}
	jaeger, err := startProc(m.opts.Dir, "jaeger", bin("jaeger"), nil, "--config", jcfg)
	if err != nil {
		return err
	}
	m.infra = append(m.infra, jaeger)
	if err := consul.waitFor(ctx, infraWait, "Consul leader", func() bool { return consulLeader(m.Consul) }); err != nil {
		return err
	}
	if err := jaeger.waitFor(ctx, infraWait, "Jaeger query API and OTLP receiver", func() bool {
		return httpOK("http://"+m.Jaeger+"/api/services") && listening(m.OTLP)
	}); err != nil {
		return err
	}

	for _, svc := range Services {
		for range m.opts.Instances[svc] {
			if _, err := m.AddInstance(ctx, svc); err != nil {
				return err
			}
		}
	}

	cfg := filepath.Join(m.opts.Dir, "edge.yaml")
	if err := os.WriteFile(cfg, []byte(edgeConfig(m.p.edge, m.p.edgeAdmin, m.p.consulHTTP, m.OTLP)), 0o644); err != nil {
		return err
	}
	edge, err := startProc(m.opts.Dir, "edge", bin("meshgate"), nil, "run", "--config", cfg, "--log-format", "json")
	if err != nil {
		return err
	}
	m.edge = edge
	// Ready, and every service routable: the edge has found an instance
	// of each in Consul.
	return edge.waitFor(ctx, processWait, "route to every service", func() bool {
		if !httpOK("http://" + m.EdgeAdmin + "/readyz") {
			return false
		}
		for _, svc := range Services {
			if !httpOK("http://" + m.Edge + "/" + svc) {
				return false
			}
		}
		return true
	})
}

// AddInstance starts one more instance of service with its sidecar, and
// returns once Consul lists it as passing.
func (m *Mesh) AddInstance(ctx context.Context, service string) (*Instance, error) {
	m.mu.Lock()
	var appPort, scPort, adminPort int
	if m.opts.FixedPorts {
		n := 0
		for _, in := range m.instances {
			if in.Service == service {
				n++
			}
		}
		appPort = fixedAppPort[service] + n
		scPort, adminPort = appPort+10000, appPort+20000
	} else {
		f, err := freePorts(3)
		if err != nil {
			m.mu.Unlock()
			return nil, err
		}
		appPort, scPort, adminPort = f[0], f[1], f[2]
	}
	m.mu.Unlock()

	in := &Instance{
		Service: service, ID: service + "-" + strconv.Itoa(scPort),
		App: addr(appPort), Sidecar: addr(scPort), SidecarAdmin: addr(adminPort),
	}
	bin := func(name string) string { return filepath.Join(m.opts.BinDir, name) }
	args := []string{"-listen", service + "=" + in.App}
	if service == "orders" {
		// orders calls users through its own sidecar, which finds users
		// in Consul: a service-to-service hop of its own in the traces.
		args = append(args, "-users-url", "http://"+in.Sidecar)
	}
	name := service + "-" + strconv.Itoa(appPort)
	app, err := startProc(m.opts.Dir, name, bin("meshgate-demo"), nil, args...)
	if err != nil {
		return nil, err
	}
	in.app = app
	m.track(in)
	if err := app.waitFor(ctx, processWait, "health", func() bool { return httpOK("http://" + in.App + "/healthz") }); err != nil {
		return nil, err
	}
	cfg := filepath.Join(m.opts.Dir, name+"-sidecar.yaml")
	if err := os.WriteFile(cfg, []byte(sidecarConfig(in, appPort, scPort, adminPort, m.p.consulHTTP, m.OTLP)), 0o644); err != nil {
		return nil, err
	}
	sc, err := startProc(m.opts.Dir, name+"-sidecar", bin("meshgate"), nil, "run", "--config", cfg, "--log-format", "json")
	if err != nil {
		return nil, err
	}
	in.sidecar = sc
	if err := sc.waitFor(ctx, processWait, "its service passing in Consul", func() bool {
		return slices.Contains(m.passing(service), in.ID)
	}); err != nil {
		return nil, err
	}
	return in, nil
}

func (m *Mesh) track(in *Instance) {
	m.mu.Lock()
	m.instances = append(m.instances, in)
	m.mu.Unlock()
}

// Instances returns the instances started, in start order.
func (m *Mesh) Instances() []*Instance {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.instances)
}

// KillApp kills an instance's demo process at once (a crash); its sidecar
// keeps running, so Consul's health check is what finds out.
func (in *Instance) KillApp() { in.app.kill() }

// Stop stops everything: the edge first, then each sidecar (which
// deregisters its instance from Consul) and its app, then Jaeger and
// Consul.
func (m *Mesh) Stop() {
	if m.edge != nil {
		m.edge.stop(stopGrace)
	}
	m.mu.Lock()
	instances := slices.Clone(m.instances)
	m.mu.Unlock()
	var wg sync.WaitGroup
	for _, in := range slices.Backward(instances) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if in.sidecar != nil {
				in.sidecar.stop(stopGrace)
			}
			in.app.stop(stopGrace)
		}()
	}
	wg.Wait()
	for _, p := range slices.Backward(m.infra) {
		p.stop(stopGrace)
	}
}

// passing returns the IDs of service's instances Consul lists as passing.
func (m *Mesh) passing(service string) []string {
	c := http.Client{Timeout: time.Second}
	res, err := c.Get("http://" + m.Consul + "/v1/health/service/" + service + "?passing=1")
	if err != nil {
		return nil
	}
	defer res.Body.Close()
	var entries []struct {
		Service struct{ ID string }
	}
	if json.NewDecoder(res.Body).Decode(&entries) != nil {
		return nil
	}
	out := make([]string, len(entries))
	for i, e := range entries {
		out[i] = e.Service.ID
	}
	return out
}

// consulLeader reports whether the agent at addr has elected a leader.
func consulLeader(addr string) bool {
	c := http.Client{Timeout: time.Second}
	res, err := c.Get("http://" + addr + "/v1/status/leader")
	if err != nil {
		return false
	}
	defer res.Body.Close()
	var leader string
	return json.NewDecoder(res.Body).Decode(&leader) == nil && leader != ""
}

// Logs returns the path of a process's log.
func (m *Mesh) Logs() string { return filepath.Join(m.opts.Dir, "logs") }
