// Package consultest starts real Consul agents for tests: `consul agent
// -dev` on loopback with free ports, built from the tools/consul module
// (tools/ensure.sh consul; `make test` does it). There is no fake Consul:
// tests talk to the real agent's HTTP API.
package consultest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/meshgate/meshgate/internal/testproc"
)

// Agent is a running dev-mode Consul agent.
type Agent struct {
	// Addr is the HTTP API address, host:port.
	Addr string
	// Client talks to the agent.
	Client *api.Client

	t       testing.TB
	bin     string
	ports   [4]int // http, server, serf lan, serf wan
	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	log     *testproc.Output
	stopped bool
}

// Binary returns the path of the consul binary: $MESHGATE_CONSUL_BIN, else
// .bin/consul at the repository root.
func Binary() (string, error) { return testproc.Binary("consul", "MESHGATE_CONSUL_BIN") }

// Start starts an agent and waits until it has elected itself leader. It
// is stopped when the test ends.
func Start(t testing.TB) *Agent {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	a := &Agent{t: t, bin: bin}
	t.Cleanup(a.Stop)
	// Ports found free may be taken by another process before the agent
	// binds them: try again with new ones.
	for attempt := 1; ; attempt++ {
		for i := range a.ports {
			a.ports[i] = freePort(t)
		}
		a.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(a.ports[0]))
		cfg := api.DefaultNonPooledConfig()
		cfg.Address = a.Addr
		cfg.Token = ""
		a.Client, err = api.NewClient(cfg)
		if err != nil {
			t.Fatal(err)
		}
		err = a.start()
		if err == nil {
			return a
		}
		if attempt == 3 {
			t.Fatal(err)
		}
	}
}

var (
	portsMu sync.Mutex
	used    = map[int]bool{}
)

// freePort returns a loopback port that was free and that no other agent
// of this process has been given.
func freePort(t testing.TB) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if !used[p] {
			used[p] = true
			return p
		}
	}
}

// DevAgentArgs are the arguments of a `consul agent -dev` bound to
// loopback on the given ports, with gRPC and DNS off; the local demo mesh
// (deployments/mesh) runs its agent with them too.
func DevAgentArgs(httpPort, serverPort, serfLANPort, serfWANPort int, node string) []string {
	return []string{"agent", "-dev",
		"-bind", "127.0.0.1", "-client", "127.0.0.1",
		"-http-port", strconv.Itoa(httpPort),
		"-server-port", strconv.Itoa(serverPort),
		"-serf-lan-port", strconv.Itoa(serfLANPort),
		"-serf-wan-port", strconv.Itoa(serfWANPort),
		"-grpc-port", "-1", "-grpc-tls-port", "-1", "-dns-port", "-1",
		"-log-level", "warn",
		"-node", node,
	}
}

func (a *Agent) start() error {
	a.mu.Lock()
	a.log = &testproc.Output{}
	a.cmd = exec.Command(a.bin, DevAgentArgs(a.ports[0], a.ports[1], a.ports[2], a.ports[3], "meshgate-test")...)
	a.cmd.Stdout = a.log
	a.cmd.Stderr = a.log
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := a.cmd.Start(); err != nil {
		a.mu.Unlock()
		return fmt.Errorf("starting consul: %w", err)
	}
	a.exited = make(chan struct{})
	a.stopped = false
	cmd, exited := a.cmd, a.exited
	go func() { cmd.Wait(); close(exited) }()
	a.mu.Unlock()
	if err := a.waitLeader(30 * time.Second); err != nil {
		a.Stop()
		return fmt.Errorf("consul agent did not become ready: %w\n%s", err, a.Log())
	}
	return nil
}

func (a *Agent) waitLeader(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	hc := &http.Client{Timeout: time.Second}
	for {
		select {
		case <-a.exited:
			return fmt.Errorf("consul exited")
		default:
		}
		res, err := hc.Get("http://" + a.Addr + "/v1/status/leader")
		if err == nil {
			var b bytes.Buffer
			b.ReadFrom(res.Body)
			res.Body.Close()
			if res.StatusCode == 200 && len(bytes.Trim(b.Bytes(), "\"\n ")) > 0 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Stop stops the agent (a dev agent loses all its state). Safe to call
// more than once.
func (a *Agent) Stop() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cmd == nil || a.stopped {
		return
	}
	a.stopped = true
	_ = syscall.Kill(-a.cmd.Process.Pid, syscall.SIGINT)
	select {
	case <-a.exited:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-a.cmd.Process.Pid, syscall.SIGKILL)
		<-a.exited
	}
}

// Restart stops the agent and starts a fresh one on the same ports, as an
// agent restart in dev mode does: every registration is forgotten and the
// Raft index starts over.
func (a *Agent) Restart() {
	a.t.Helper()
	a.Stop()
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		// The old agent's ports may linger a moment after it exits.
		if err = a.start(); err == nil {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	a.t.Fatal(err)
}

// Log returns what the agent printed.
func (a *Agent) Log() string {
	a.mu.Lock()
	l := a.log
	a.mu.Unlock()
	if l == nil {
		return ""
	}
	return l.String()
}
