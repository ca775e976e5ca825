package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Target names, in the order they run within a round and appear in the
// report.
const (
	targetDirect           = "direct"
	targetMeshgate         = "meshgate"
	targetMeshgateTraced   = "meshgate_traced"   // tracing on, every request sampled
	targetMeshgatePolicies = "meshgate_policies" // JWT + CEL + local rate limit on every request
	targetGoBaseline       = "gobaseline"
	targetNginx            = "nginx"
	targetHAProxy          = "haproxy"
	targetCaddy            = "caddy"
)

// allTargets is every target in run order.
var allTargets = []string{targetDirect, targetMeshgate, targetMeshgateTraced, targetMeshgatePolicies, targetGoBaseline, targetNginx, targetHAProxy, targetCaddy}

// meshgateTargets are the targets that run the -meshgate binary.
var meshgateTargets = []string{targetMeshgate, targetMeshgateTraced, targetMeshgatePolicies}

// peerTargets are the targets whose binaries `make bench-peers` installs;
// they are skipped (reported as n/a) when not installed.
var peerTargets = []string{targetNginx, targetHAProxy, targetCaddy}

// readyTimeout bounds how long a process may take to serve its first 200.
const readyTimeout = 15 * time.Second

// child is one process the harness started.
type child struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process has exited
	waitErr error         // valid after done
}

// PID is the process id (taskset execs the command, so it is the same
// process).
func (c *child) PID() int { return c.cmd.Process.Pid }

// exited reports whether the process has exited, without blocking.
func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// logTail is the end of the child's combined output, for error messages.
func (c *child) logTail() string {
	b, err := os.ReadFile(c.logPath)
	if err != nil {
		return ""
	}
	const max = 2000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return ""
	}
	return "\n--- end of " + filepath.Base(c.logPath) + " (-keep keeps the file) ---\n" + s
}

// supervisor starts child processes and makes sure every one of them is
// gone when stopAll returns. Each child leads its own process group, so
// stopAll also reaches nginx's workers, and has PDEATHSIG set, so the
// kernel kills it if the harness itself dies without cleaning up.
type supervisor struct {
	dir string // where child logs go

	mu       sync.Mutex
	children []*child
}

// start runs argv, pinned to cpuList with taskset when cpuList is not empty,
// with env added to the harness's environment and its output in
// dir/name.log.
func (s *supervisor) start(name, cpuList string, env []string, argv ...string) (*child, error) {
	logPath := filepath.Join(s.dir, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	defer logf.Close() // the child has its own descriptor after Start
	if cpuList != "" {
		argv = append([]string{"taskset", "-c", cpuList}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %s: %w", name, strings.Join(argv, " "), err)
	}
	c := &child{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		c.waitErr = cmd.Wait()
		close(c.done)
	}()
	s.mu.Lock()
	s.children = append(s.children, c)
	s.mu.Unlock()
	return c, nil
}

// stopAll sends SIGTERM to every child's process group, waits up to grace
// for them to exit, then SIGKILLs what is left. It is safe to call more than
// once.
func (s *supervisor) stopAll(grace time.Duration) {
	s.mu.Lock()
	children := s.children
	s.children = nil
	s.mu.Unlock()
	for _, c := range children {
		// The group outlives its leader only in nginx's case, so signal the
		// group even if the leader has exited.
		_ = syscall.Kill(-c.PID(), syscall.SIGTERM)
	}
	deadline := time.After(grace)
	for _, c := range children {
		select {
		case <-c.done:
		case <-deadline:
		}
	}
	for _, c := range children {
		_ = syscall.Kill(-c.PID(), syscall.SIGKILL)
		<-c.done
	}
}

// freePorts reserves n distinct free loopback ports by listening on port 0,
// then releases them for the processes to bind. Another process could take
// one in between; the readiness check would then name the target.
func freePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free loopback port: %w", err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// waitReady waits until addr accepts TCP connections and GET url, with
// header (a "Name: value" line) when not empty, answers 200, or fails
// naming the target: because the process exited (with the tail of its
// log), because timeout passed, or because ctx ended.
func waitReady(ctx context.Context, c *child, name, url, header string, timeout time.Duration) error {
	hostport := strings.TrimPrefix(url, "http://")
	hostport, _, _ = strings.Cut(hostport, "/")
	client := &http.Client{
		Timeout:   time.Second,
		Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
	}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(timeout)
	var last error
	for {
		if c != nil && c.exited() {
			return fmt.Errorf("%s exited before it was ready (%v)%s", name, c.waitErr, c.logTail())
		}
		last = probe(ctx, client, hostport, url, header)
		if last == nil {
			return nil
		}
		if time.Now().After(deadline) {
			tail := ""
			if c != nil {
				tail = c.logTail()
			}
			return fmt.Errorf("%s not ready after %v: %w%s", name, timeout, last, tail)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", name, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// probe is one readiness attempt: a TCP connect, then GET url (with
// header, when not empty) expecting 200.
func probe(ctx context.Context, client *http.Client, hostport, url, header string) error {
	conn, err := (&net.Dialer{Timeout: 500 * time.Millisecond}).DialContext(ctx, "tcp", hostport)
	if err != nil {
		return fmt.Errorf("connecting to %s: %w", hostport, err)
	}
	conn.Close()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if header != "" {
		k, v, _ := strings.Cut(header, ":")
		req.Header.Set(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

// instance is a running target: where to send load and which processes'
// CPU time and peak RSS count as the target's.
type instance struct {
	name string
	url  string
	// pids lists the processes measured for the target. It is a function
	// because nginx's workers are found (and, if one crashed, re-found)
	// under the master at measurement time.
	pids func() ([]int, error)
	// measuresBackend is true for direct, whose measured process is
	// backend 1 itself; backends' CPU is then not reported separately.
	measuresBackend bool
}

// env is what the targets start from.
type env struct {
	sup      *supervisor
	dir      string
	self     string // the harness binary, re-executed for backends and gobaseline
	meshgate string // the meshgate binary
	peerBins map[string]string
	cpuList  string   // taskset CPU list for backends and proxies; "" when unpinned
	backends []*child // the two backend processes
	backAddr []string // their host:port
	otlpSink string   // host:port of the OTLP/HTTP sink; "" when not started
	// creds are the bench JWT, sent to every target, and the JWKS that
	// meshgate_policies verifies it with.
	creds *credentials
}

// startBackends starts the two backend processes by re-executing the
// harness with -serve-backend, and waits for them.
func startBackends(ctx context.Context, e *env) error {
	ports, err := freePorts(2)
	if err != nil {
		return err
	}
	for i, p := range ports {
		name := fmt.Sprintf("backend%d", i+1)
		addr := "127.0.0.1:" + strconv.Itoa(p)
		c, err := e.sup.start(name, e.cpuList, []string{"GOMAXPROCS=1"}, e.self, "-serve-backend", addr)
		if err != nil {
			return err
		}
		if err := waitReady(ctx, c, name, "http://"+addr+"/", "", readyTimeout); err != nil {
			return err
		}
		e.backends = append(e.backends, c)
		e.backAddr = append(e.backAddr, addr)
	}
	return nil
}

// startOTLPSink starts the OTLP/HTTP trace sink meshgate_traced exports to
// by re-executing the harness with -serve-otlp-sink, and waits for it. It
// runs on the backends' and proxies' core with GOMAXPROCS=1, so receiving
// and discarding the spans costs what a collector on the same host would:
// it shows in meshgate_traced's throughput and latency, though not in its
// CPU and RSS columns, which stay meshgate's own.
func startOTLPSink(ctx context.Context, e *env) error {
	ports, err := freePorts(1)
	if err != nil {
		return err
	}
	addr := "127.0.0.1:" + strconv.Itoa(ports[0])
	c, err := e.sup.start("otlp-sink", e.cpuList, []string{"GOMAXPROCS=1"}, e.self, "-serve-otlp-sink", addr)
	if err != nil {
		return err
	}
	if err := waitReady(ctx, c, "otlp-sink", "http://"+addr+"/", "", readyTimeout); err != nil {
		return err
	}
	e.otlpSink = addr
	return nil
}

// tracedEnv is the environment that turns meshgate's tracing on, sampling
// every request and exporting OTLP/HTTP protobuf to the sink at addr.
func tracedEnv(addr string) []string {
	return []string{
		"OTEL_TRACES_EXPORTER=otlp",
		"OTEL_EXPORTER_OTLP_ENDPOINT=http://" + addr,
		"OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
		"OTEL_TRACES_SAMPLER=always_on",
		"OTEL_SERVICE_NAME=meshgate-bench",
	}
}

// startTarget starts the named target (nothing for direct) and waits until
// it serves 200 through to the backends.
func startTarget(ctx context.Context, e *env, name string) (*instance, error) {
	if name == targetDirect {
		// The honest floor: one backend on the proxies' core, with no proxy
		// in front. Load through a proxy is split over two backends, so
		// this is the per-backend capacity, not twice it.
		b := e.backends[0]
		return &instance{
			name:            name,
			url:             "http://" + e.backAddr[0] + "/",
			pids:            func() ([]int, error) { return []int{b.PID()}, nil },
			measuresBackend: true,
		}, nil
	}
	ports, err := freePorts(2) // traffic, and admin for meshgate
	if err != nil {
		return nil, err
	}
	listen := "127.0.0.1:" + strconv.Itoa(ports[0])
	url := "http://" + listen + "/"
	dir := filepath.Join(e.dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	spec := peerSpec{Listen: listen, Backends: e.backAddr, Dir: dir}

	var c *child
	switch name {
	case targetMeshgate, targetMeshgateTraced, targetMeshgatePolicies:
		admin := "127.0.0.1:" + strconv.Itoa(ports[1])
		policiesDir := ""
		if name == targetMeshgatePolicies {
			policiesDir = filepath.Join(dir, policiesDirName)
			if err := writePolicies(policiesDir, e.creds); err != nil {
				return nil, fmt.Errorf("starting %s: %w", name, err)
			}
		}
		file := filepath.Join(dir, "meshgate.yaml")
		if err := os.WriteFile(file, []byte(meshgateConfig(listen, admin, e.backAddr, policiesDir)), 0o644); err != nil {
			return nil, fmt.Errorf("starting %s: %w", name, err)
		}
		env := []string{"GOMAXPROCS=1"}
		if name == targetMeshgateTraced {
			if e.otlpSink == "" {
				return nil, fmt.Errorf("starting %s: the OTLP sink is not running", name)
			}
			env = append(env, tracedEnv(e.otlpSink)...)
		}
		c, err = e.sup.start(name, e.cpuList, env, e.meshgate, "run", "--config", file, "--access-log", "off")
		if err != nil {
			return nil, err
		}
		if err := waitReady(ctx, c, name+" (admin /readyz)", "http://"+admin+"/readyz", "", readyTimeout); err != nil {
			return nil, err
		}
	case targetGoBaseline:
		c, err = e.sup.start(name, e.cpuList, []string{"GOMAXPROCS=1"},
			e.self, "-serve-baseline", listen, "-upstreams", strings.Join(e.backAddr, ","))
	case targetNginx:
		if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(nginxConfig(spec)), 0o644); err != nil {
			return nil, fmt.Errorf("starting nginx: %w", err)
		}
		c, err = e.sup.start(name, e.cpuList, nil, nginxArgs(e.peerBins[name], dir)...)
	case targetHAProxy:
		file := filepath.Join(dir, "haproxy.cfg")
		if err := os.WriteFile(file, []byte(haproxyConfig(spec)), 0o644); err != nil {
			return nil, fmt.Errorf("starting haproxy: %w", err)
		}
		c, err = e.sup.start(name, e.cpuList, nil, haproxyArgs(e.peerBins[name], file)...)
	case targetCaddy:
		file := filepath.Join(dir, "Caddyfile")
		if err := os.WriteFile(file, []byte(caddyConfig(spec)), 0o644); err != nil {
			return nil, fmt.Errorf("starting caddy: %w", err)
		}
		c, err = e.sup.start(name, e.cpuList, caddyEnv(dir), caddyArgs(e.peerBins[name], file)...)
	default:
		return nil, fmt.Errorf("starting %s: unknown target", name)
	}
	if err != nil {
		return nil, err
	}
	// Every target gets the bench token, as wrk sends it; without it
	// meshgate_policies answers 401.
	if err := waitReady(ctx, c, name, url, e.creds.AuthHeader(), readyTimeout); err != nil {
		return nil, err
	}
	if name == targetMeshgatePolicies {
		if err := checkEnforced(ctx, url, e.creds.Token); err != nil {
			return nil, fmt.Errorf("%s: %w%s", name, err, c.logTail())
		}
	}

	inst := &instance{name: name, url: url, pids: func() ([]int, error) { return []int{c.PID()}, nil }}
	if name == targetNginx {
		// nginx's work happens in its worker; the master only supervises.
		// Both count: CPU and peak RSS are the sum over master and workers.
		inst.pids = func() ([]int, error) {
			kids, err := childPIDs(c.PID())
			if err != nil {
				return nil, err
			}
			if len(kids) == 0 {
				return nil, errors.New("nginx has no worker process")
			}
			return append([]int{c.PID()}, kids...), nil
		}
	}
	return inst, nil
}

// meshgateConfig is the meshgate configuration for the benchmark: one
// listener, the admin listener for /readyz, and one service with the two
// backends behind a catch-all route, balanced round robin (the default,
// spelled out). With policiesDir not empty, the policy files there apply
// (meshgate_policies).
func meshgateConfig(listen, admin string, backends []string, policiesDir string) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("# generated by meshgate bench")
	w("listeners:")
	w("  - address: %q", listen)
	w("admin:")
	w("  address: %q", admin)
	w("services:")
	w("  bench:")
	w("    load_balancer:")
	w("      policy: round_robin")
	w("    instances:")
	for _, be := range backends {
		host, port, _ := net.SplitHostPort(be)
		w("      - address: %q", host)
		w("        port: %s", port)
	}
	w("routes:")
	w("  - match:")
	w("      path_prefix: /")
	w("    service: bench")
	if policiesDir != "" {
		w("policies:")
		w("  dir: %q", policiesDir)
	}
	return b.String()
}

// tempDirPrefix names the harness's temp dirs (os.MkdirTemp pattern).
const tempDirPrefix = "meshgate-bench-"

// reapOrphanedWorkers kills nginx worker processes that an earlier run left
// behind when it was killed with SIGKILL: PDEATHSIG takes down the harness's
// direct children, nginx's master included, but the worker is a grandchild
// and outlives it. Only workers whose master is gone (parent pid 1) and
// whose stdout is a log in one of this harness's temp dirs are touched, so
// a concurrent benchmark run keeps its own. It returns the killed pids.
func reapOrphanedWorkers() []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	logGlob := filepath.Join(os.TempDir(), tempDirPrefix+"*", "nginx.log")
	var killed []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readStat(pid)
		if err != nil || st.PPID != 1 {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !strings.HasPrefix(string(cmdline), "nginx: worker process") {
			continue
		}
		stdout, err := os.Readlink(filepath.Join("/proc", e.Name(), "fd", "1"))
		if err != nil {
			continue
		}
		if ok, _ := filepath.Match(logGlob, strings.TrimSuffix(stdout, " (deleted)")); !ok {
			continue
		}
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			killed = append(killed, pid)
		}
	}
	return killed
}
