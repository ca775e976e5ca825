package main

// Tests of deployments/run.sh (what `make run` starts). The script is run
// for real with bash and curl, against a BINDIR whose meshgate-demo and
// meshgate are stubs that start this test binary again: as the real demo,
// and as a stand-in gateway that serves /readyz and records how it was
// called.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/testproc"
)

const (
	roleEnv   = "MESHGATE_DEMO_TEST_ROLE"   // "demo" or "meshgate"
	modeEnv   = "MESHGATE_DEMO_TEST_MODE"   // for "meshgate": "ready" or "fail"
	recordEnv = "MESHGATE_DEMO_TEST_RECORD" // for "meshgate": where to write its invocation
)

// runScriptPorts are the demo instances' ports in run.sh, which are fixed.
var runScriptPorts = []string{"9101", "9102", "9103", "9201", "9202", "9301", "9302"}

func helperRole() string { return os.Getenv(roleEnv) }

// runHelper runs this test binary as meshgate-demo or as a stand-in meshgate.
func runHelper(role string) {
	switch role {
	case "demo":
		os.Exit(cli(os.Args[1:], os.Stderr))
	case "meshgate":
		os.Exit(fakeMeshgate(os.Args[1:]))
	}
	fmt.Fprintf(os.Stderr, "unknown %s %q\n", roleEnv, role)
	os.Exit(3)
}

// invocation is what the stand-in meshgate records.
type invocation struct {
	Args   []string `json:"args"`
	Config string   `json:"config"` // MESHGATE_CONFIG
	PID    int      `json:"pid"`
}

func fakeMeshgate(args []string) int {
	rec, _ := json.Marshal(invocation{Args: args, Config: os.Getenv("MESHGATE_CONFIG"), PID: os.Getpid()})
	if err := os.WriteFile(os.Getenv(recordEnv), rec, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	if os.Getenv(modeEnv) == "fail" {
		fmt.Fprintln(os.Stderr, "meshgate: meshgate.default.yaml:3: listeners[0].address: simulated failure")
		return 4
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ln, err := net.Listen("tcp", os.Getenv("MESHGATE_ADMIN_ADDR"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
			return
		}
		// Ready only once the demo answers, as the real gateway would be
		// useless before.
		resp, err := http.Get("http://127.0.0.1:9101/healthz")
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		resp.Body.Close()
		fmt.Fprintln(w, "ready")
	})}
	go srv.Serve(ln)
	<-ctx.Done()
	srv.Close()
	fmt.Fprintln(os.Stderr, "meshgate: stopped")
	return 0
}

// freeAddr returns a loopback address that nothing listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// portAnswers reports whether something accepts connections on port.
func portAnswers(port string) bool {
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+port, time.Second)
	if err == nil {
		c.Close()
	}
	return err == nil
}

// script prepares a run of run.sh with stub binaries.
type script struct {
	cmd    *exec.Cmd
	out    *testproc.Output
	record string
	done   chan error // holds cmd.Wait's result once it is known
}

func newScript(t *testing.T, mode string, env ...string) *script {
	t.Helper()
	for _, tool := range []string{"bash", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("run.sh needs %s: %v", tool, err)
		}
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bindir := t.TempDir()
	for bin, role := range map[string]string{"meshgate-demo": "demo", "meshgate": "meshgate"} {
		stub := fmt.Sprintf("#!/bin/sh\n%s=%s exec '%s' \"$@\"\n", roleEnv, role, self)
		if err := os.WriteFile(filepath.Join(bindir, bin), []byte(stub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s := &script{out: &testproc.Output{}, record: filepath.Join(t.TempDir(), "meshgate.json"), done: make(chan error, 1)}
	s.cmd = exec.Command("bash", "../run.sh", bindir)
	s.cmd.Env = append(os.Environ(),
		modeEnv+"="+mode,
		recordEnv+"="+s.record,
		"MESHGATE_LISTEN_ADDR="+freeAddr(t),
		"MESHGATE_ADMIN_ADDR="+freeAddr(t),
	)
	s.cmd.Env = append(s.cmd.Env, env...)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	return s
}

// needDemoPorts skips the test when run.sh's fixed demo ports are in use,
// for example by a `make run` on the same machine.
func needDemoPorts(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts run.sh with processes on fixed ports")
	}
	for _, p := range runScriptPorts {
		if portAnswers(p) {
			t.Skipf("port %s, which run.sh gives a demo instance, is in use", p)
		}
	}
}

// start starts the script.
func (s *script) start(t *testing.T) {
	t.Helper()
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	t.Cleanup(func() {
		if !s.exited() {
			// A failed test: let the script stop its children.
			s.cmd.Process.Signal(syscall.SIGTERM)
			s.wait(t, 30*time.Second)
		}
	})
}

// exited reports whether the script has exited, without waiting.
func (s *script) exited() bool {
	select {
	case err := <-s.done:
		s.done <- err
		return true
	default:
		return false
	}
}

// wait waits for the script to exit and returns its exit code.
func (s *script) wait(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case err := <-s.done:
		s.done <- err
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatalf("run.sh: %v", err)
		}
		return 0
	case <-time.After(within):
		s.cmd.Process.Kill()
		<-s.done
		s.done <- nil
		t.Fatalf("run.sh did not exit within %v; output:\n%s", within, s.out.String())
		return -1
	}
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The tests below share run.sh's fixed demo ports, so none is parallel.

func TestRunScriptStartsAndStops(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			needDemoPorts(t)
			s := newScript(t, "ready", "MESHGATE_CONFIG=/etc/meshgate/custom.yaml")
			s.start(t)
			waitFor(t, 30*time.Second, "run.sh to say it is ready", func() bool {
				return s.exited() || strings.Contains(s.out.String(), "Press Ctrl-C to stop.")
			})
			if s.exited() {
				t.Fatalf("run.sh exited early; output:\n%s", s.out.String())
			}
			out := s.out.String()
			for _, want := range []string{
				"/products", "/users/1", "/admin/routes", "/admin/instances", "/admin/config", "/readyz",
				"/etc/meshgate/custom.yaml (from MESHGATE_CONFIG)",
			} {
				if !strings.Contains(out, want) {
					t.Errorf("run.sh output lacks %q:\n%s", want, out)
				}
			}
			for _, p := range runScriptPorts {
				if !portAnswers(p) {
					t.Errorf("no demo instance on port %s", p)
				}
			}
			var got invocation
			if b, err := os.ReadFile(s.record); err != nil {
				t.Errorf("meshgate was not started: %v", err)
			} else if err := json.Unmarshal(b, &got); err != nil {
				t.Error(err)
			}
			if !slices.Equal(got.Args, []string{"run"}) || got.Config != "/etc/meshgate/custom.yaml" {
				t.Errorf("meshgate started as %+v, want args [run] and MESHGATE_CONFIG passed on", got)
			}

			if err := s.cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			if code := s.wait(t, 30*time.Second); code != 0 {
				t.Errorf("run.sh exited %d after %v, want 0; output:\n%s", code, sig, s.out.String())
			}
			for _, p := range runScriptPorts {
				if portAnswers(p) {
					t.Errorf("port %s still answers after run.sh stopped", p)
				}
			}
			if out := s.out.String(); !strings.Contains(out, "meshgate: stopped") || !strings.Contains(out, `msg="shutting down"`) {
				t.Errorf("run.sh did not stop both processes gracefully; output:\n%s", out)
			}
		})
	}
}

func TestRunScriptMeshgateDiesLater(t *testing.T) {
	needDemoPorts(t)
	s := newScript(t, "ready")
	s.start(t)
	waitFor(t, 30*time.Second, "run.sh to say it is ready", func() bool {
		return s.exited() || strings.Contains(s.out.String(), "Press Ctrl-C to stop.")
	})
	var got invocation
	b, err := os.ReadFile(s.record)
	if err != nil {
		t.Fatalf("meshgate was not started: %v\n%s", err, s.out.String())
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(got.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if code := s.wait(t, 30*time.Second); code != 1 {
		t.Errorf("run.sh exited %d after meshgate died, want 1", code)
	}
	if want := "meshgate exited on its own (status 137); stopping the demo services"; !strings.Contains(s.out.String(), want) {
		t.Errorf("output lacks %q:\n%s", want, s.out.String())
	}
	for _, p := range runScriptPorts {
		if portAnswers(p) {
			t.Errorf("port %s still answers: run.sh left the demo running", p)
		}
	}
}

func TestRunScriptMeshgateFailsEarly(t *testing.T) {
	needDemoPorts(t)
	s := newScript(t, "fail")
	s.start(t)
	if code := s.wait(t, 60*time.Second); code == 0 {
		t.Errorf("run.sh exited 0 although meshgate failed; output:\n%s", s.out.String())
	}
	out := s.out.String()
	for _, want := range []string{"meshgate exited with status 4 before", "Its last output:", "    meshgate: meshgate.default.yaml:3: listeners[0].address: simulated failure"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	for _, p := range runScriptPorts {
		if portAnswers(p) {
			t.Errorf("port %s still answers: run.sh left the demo running", p)
		}
	}
}

func TestRunScriptRefusesTakenPorts(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	_, port, _ := net.SplitHostPort(taken.Addr().String())

	tests := map[string]struct {
		env  string
		want string
	}{
		"traffic": {"MESHGATE_LISTEN_ADDR=" + taken.Addr().String(), "port " + port + " is already in use (" + taken.Addr().String() + ", meshgate's traffic listener)"},
		"admin":   {"MESHGATE_ADMIN_ADDR=" + taken.Addr().String(), "port " + port + " is already in use (" + taken.Addr().String() + ", meshgate's admin listener)"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			s := newScript(t, "ready", tt.env)
			s.start(t)
			if code := s.wait(t, 30*time.Second); code != 1 {
				t.Errorf("exit code %d, want 1", code)
			}
			if !strings.Contains(s.out.String(), tt.want) {
				t.Errorf("output = %q, want it to contain %q", s.out.String(), tt.want)
			}
			if _, err := os.Stat(s.record); err == nil {
				t.Error("meshgate was started although a port was taken")
			}
		})
	}
}

func TestRunScriptNeedsCurl(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	var out bytes.Buffer
	cmd := exec.Command(bash, "../run.sh", t.TempDir())
	cmd.Env = []string{"PATH=" + t.TempDir()} // no curl there
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Errorf("run.sh without curl: %v, want exit status 1", err)
	}
	if !strings.Contains(out.String(), "curl is not installed") {
		t.Errorf("output = %q, want it to say curl is missing", out.String())
	}
}

func TestRunScriptUsage(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	out, err := exec.Command(bash, "../run.sh").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
		t.Errorf("run.sh without BINDIR: %v, want exit status 2", err)
	}
	if !strings.Contains(string(out), "usage:") {
		t.Errorf("output = %q, want a usage line", out)
	}
}
