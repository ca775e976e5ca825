// Package jaegertest starts real Jaeger v2 instances for tests: the
// all-in-one binary with memory storage, built from the tools/jaeger module
// (tools/ensure.sh jaeger; `make test` does it), on free loopback ports. There
// is no fake collector: tests export spans over OTLP to the real Jaeger and
// read them back through its query API.
//
//	j := jaegertest.Start(t)
//	// point the exporter at j.OTLPHTTP or j.OTLPGRPC, run the code under test
//	traces := j.WaitTraces(t, "meshgate", 10*time.Second, func(ts []jaegertest.Trace) bool { return len(ts) > 0 })
package jaegertest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/testproc"
)

const (
	// startTimeout bounds how long one Jaeger start may take to answer.
	startTimeout = 30 * time.Second
	// stopGrace is how long Jaeger gets to shut down after SIGINT before it
	// is killed.
	stopGrace = 10 * time.Second
	// startAttempts is how many times Start tries with fresh ports when a
	// port it picked was taken before Jaeger could bind it.
	startAttempts = 3
)

// errPortTaken reports that Jaeger could not bind one of its ports.
var errPortTaken = errors.New("jaeger could not bind a port")

// Jaeger is a running Jaeger v2 all-in-one instance with memory storage.
// Its storage starts empty and is lost when it stops.
type Jaeger struct {
	// OTLPHTTP is the OTLP/HTTP receiver, host:port; traces are POSTed to
	// http://OTLPHTTP/v1/traces.
	OTLPHTTP string
	// OTLPGRPC is the OTLP/gRPC receiver, host:port (plaintext).
	OTLPGRPC string
	// Query is the query API, host:port (/api/services, /api/traces,
	// /api/v3/traces).
	Query string

	client *http.Client

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{} // closed once the process has been reaped
	log     *testproc.Output
	stopped bool
}

// Binary returns the path of the jaeger binary: $MESHGATE_JAEGER_BIN, else
// .bin/jaeger at the repository root.
func Binary() (string, error) { return testproc.Binary("jaeger", "MESHGATE_JAEGER_BIN") }

// Start starts Jaeger on free loopback ports, with its configuration in
// t.TempDir(), and waits until the query API answers and the OTLP receivers
// accept connections. Jaeger is stopped when the test ends. Start fails the
// test, with Jaeger's output, if Jaeger does not come up.
func Start(t testing.TB) *Jaeger {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for attempt := 1; ; attempt++ {
		p, err := freePorts()
		if err != nil {
			t.Fatal(err)
		}
		j, err := start(bin, dir, p)
		if err == nil {
			t.Cleanup(j.Stop)
			return j
		}
		// Ports found free may be taken by another process (or another
		// test's Jaeger) before this one binds them: try new ones.
		if !errors.Is(err, errPortTaken) || attempt == startAttempts {
			t.Fatalf("starting jaeger (attempt %d of %d): %v", attempt, startAttempts, err)
		}
		t.Logf("starting jaeger (attempt %d of %d): %v; retrying with new ports", attempt, startAttempts, errPortTaken)
	}
}

// start runs one attempt: a config for p in dir, and a new process.
func start(bin, dir string, p ports) (*Jaeger, error) {
	cfg, err := p.writeConfig(dir)
	if err != nil {
		return nil, err
	}
	hostPort := func(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }
	j := &Jaeger{
		OTLPHTTP: hostPort(p.otlpHTTP),
		OTLPGRPC: hostPort(p.otlpGRPC),
		Query:    hostPort(p.queryHTTP),
		client:   &http.Client{Timeout: 5 * time.Second},
		log:      &testproc.Output{},
		exited:   make(chan struct{}),
	}
	j.cmd = exec.Command(bin, "--config", cfg)
	j.cmd.Stdout = j.log
	j.cmd.Stderr = j.log
	// Its own process group, so that a signal at the end reaches nothing
	// else and Ctrl-C on `go test` does not race the cleanup.
	j.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := j.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	cmd, exited := j.cmd, j.exited
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	if err := j.waitReady(startTimeout); err != nil {
		j.Stop()
		out := j.Log()
		if strings.Contains(out, "address already in use") {
			err = fmt.Errorf("%w: %w", errPortTaken, err)
		}
		return nil, fmt.Errorf("%w\nconfig %s:\n%s\njaeger output:\n%s", err, cfg, p.config(), out)
	}
	return j, nil
}

// waitReady polls until GET /api/services answers 200 and both OTLP
// receivers accept connections; the receivers start after the query
// extension, so the query API alone is not enough.
func (j *Jaeger) waitReady(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last error
	for {
		select {
		case <-j.exited:
			return fmt.Errorf("jaeger exited before it was ready (%s)", j.cmd.ProcessState)
		default:
		}
		if last = j.ready(ctx); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("jaeger not ready after %s: %w", timeout, last)
		case <-j.exited:
			return fmt.Errorf("jaeger exited before it was ready (%s)", j.cmd.ProcessState)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (j *Jaeger) ready(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+j.Query+"/api/services", nil)
	if err != nil {
		return err
	}
	res, err := j.client.Do(req)
	if err != nil {
		return err
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /api/services: %s", res.Status)
	}
	var d net.Dialer
	for _, addr := range []string{j.OTLPHTTP, j.OTLPGRPC} {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		c.Close()
	}
	return nil
}

// Stop stops Jaeger: SIGINT, then SIGKILL if it has not exited within 10s.
// It returns once the process has exited. Safe to call more than once; Start
// arranges for it to run when the test ends.
func (j *Jaeger) Stop() {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.cmd == nil || j.cmd.Process == nil || j.stopped {
		return
	}
	j.stopped = true
	pgid := -j.cmd.Process.Pid
	_ = syscall.Kill(pgid, syscall.SIGINT)
	select {
	case <-j.exited:
	case <-time.After(stopGrace):
		_ = syscall.Kill(pgid, syscall.SIGKILL)
		<-j.exited
	}
}

// Log returns what Jaeger has printed so far.
func (j *Jaeger) Log() string {
	return j.log.String()
}
