package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binary is the meshgate executable built once for the process tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "meshgate-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "meshgate")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building meshgate: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a running meshgate process with its bound addresses read from
// its JSON log.
type proc struct {
	cmd     *exec.Cmd
	traffic string
	admin   string
	mu      sync.Mutex
	log     bytes.Buffer
	lines   chan map[string]any
	exited  chan error
}

func startMeshgate(t *testing.T, args ...string) *proc {
	t.Helper()
	return startMeshgateEnv(t, nil, args...)
}

// startMeshgateEnv starts meshgate with env added to the test's own.
func startMeshgateEnv(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{lines: make(chan map[string]any, 256), exited: make(chan error, 1)}
	p.cmd = exec.Command(binary, args...)
	p.cmd.Env = append(os.Environ(), env...)
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.mu.Lock()
			p.log.Write(sc.Bytes())
			p.log.WriteByte('\n')
			p.mu.Unlock()
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil {
				select {
				case p.lines <- m:
				default:
				}
			}
		}
		p.exited <- p.cmd.Wait()
	}()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("meshgate log:\n%s", p.logs())
		}
	})
	deadline := time.After(10 * time.Second)
	for p.traffic == "" || p.admin == "" {
		select {
		case m := <-p.lines:
			if m["msg"] == "listening" {
				if m["listener"] == "admin" {
					p.admin = m["address"].(string)
				} else {
					p.traffic = m["address"].(string)
				}
			}
		case err := <-p.exited:
			t.Fatalf("meshgate exited early: %v\n%s", err, p.logs())
		case <-deadline:
			t.Fatalf("meshgate did not start listening\n%s", p.logs())
		}
	}
	return p
}

// waitReady waits until the process's /readyz answers 200: its first
// discovery snapshot is in use.
func (p *proc) waitReady(t *testing.T) {
	t.Helper()
	waitUntil(t, func() bool {
		res, err := http.Get("http://" + p.admin + "/readyz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	})
}

func (p *proc) logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// waitLog waits for a log line with the given msg.
func (p *proc) waitLog(t *testing.T, msg string) map[string]any {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case m := <-p.lines:
			if m["msg"] == msg {
				return m
			}
		case <-deadline:
			t.Fatalf("no log line %q\n%s", msg, p.logs())
		}
	}
}

func writeConfig(t *testing.T, path string, backends ...*httptest.Server) {
	t.Helper()
	var inst strings.Builder
	for _, b := range backends {
		h, port, _ := net.SplitHostPort(strings.TrimPrefix(b.URL, "http://"))
		fmt.Fprintf(&inst, "      - {address: %s, port: %s}\n", h, port)
	}
	cfg := `listeners: [{name: http, address: "127.0.0.1:0"}]
admin: {address: "127.0.0.1:0"}
server: {grace_period: 10s}
services:
  svc:
    instances:
` + inst.String() + `routes: [{match: {path_prefix: /}, service: svc}]
`
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func named(name string, delay time.Duration) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d := r.URL.Query().Get("delay"); d != "" {
			dd, _ := time.ParseDuration(d)
			time.Sleep(dd)
		}
		time.Sleep(delay)
		w.Header().Set("X-Backend", name)
		io.WriteString(w, name)
	}))
}

func backendOf(t *testing.T, url string) string {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	io.Copy(io.Discard, res.Body)
	return res.Header.Get("X-Backend")
}

func TestGracefulShutdown(t *testing.T) {
	a := named("a", 0)
	defer a.Close()
	cfgPath := filepath.Join(t.TempDir(), "meshgate.yaml")
	writeConfig(t, cfgPath, a)
	p := startMeshgate(t, "run", "--config", cfgPath)
	base := "http://" + p.traffic

	// Wait for readiness.
	deadline := time.Now().Add(5 * time.Second)
	for {
		res, err := http.Get("http://" + p.admin + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("never ready")
		}
		time.Sleep(20 * time.Millisecond)
	}

	// A slow request is in flight when SIGTERM arrives.
	type result struct {
		status int
		body   string
		err    error
	}
	slow := make(chan result, 1)
	go func() {
		res, err := http.Get(base + "/?delay=1500ms")
		if err != nil {
			slow <- result{err: err}
			return
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		slow <- result{status: res.StatusCode, body: string(b)}
	}()
	time.Sleep(300 * time.Millisecond)
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	p.waitLog(t, "draining")
	// New connections are refused once the listeners closed.
	refused := false
	for i := 0; i < 50 && !refused; i++ {
		c, err := net.DialTimeout("tcp", p.traffic, 200*time.Millisecond)
		if err != nil {
			refused = true
			break
		}
		c.Close()
		time.Sleep(20 * time.Millisecond)
	}
	if !refused {
		t.Error("new connections were still accepted after SIGTERM")
	}
	r := <-slow
	if r.err != nil || r.status != 200 || r.body != "a" {
		t.Fatalf("in-flight request: %+v, want 200 from a", r)
	}
	select {
	case err := <-p.exited:
		if err != nil {
			t.Fatalf("exit: %v, want status 0", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("meshgate did not exit")
	}
}

func TestReloadOnFileChangeAndSIGHUP(t *testing.T) {
	a, b := named("a", 0), named("b", 0)
	defer a.Close()
	defer b.Close()
	cfgPath := filepath.Join(t.TempDir(), "meshgate.yaml")
	writeConfig(t, cfgPath, a)
	p := startMeshgate(t, "run", "--config", cfgPath)
	base := "http://" + p.traffic
	waitUntil(t, func() bool { return backendOf(t, base+"/") == "a" })

	// A changed file is picked up without a signal.
	writeConfig(t, cfgPath, b)
	waitUntil(t, func() bool { return backendOf(t, base+"/") == "b" })

	// A broken file keeps the last good config and is reported.
	if err := os.WriteFile(cfgPath, []byte("listeners: [{address: \"127.0.0.1:0\"}]\nroutes: [{service: nope, colour: red}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p.waitLog(t, "reload failed; keeping the last good configuration")
	if got := backendOf(t, base+"/"); got != "b" {
		t.Fatalf("after a bad file: %q, want b", got)
	}
	res, err := http.Get("http://" + p.admin + "/admin/config")
	if err != nil {
		t.Fatal(err)
	}
	var view struct {
		Reload struct {
			Failures  int     `json:"reload_failures_total"`
			LastError *string `json:"last_error"`
		} `json:"reload"`
	}
	json.NewDecoder(res.Body).Decode(&view)
	res.Body.Close()
	if view.Reload.Failures != 1 || view.Reload.LastError == nil || !strings.Contains(*view.Reload.LastError, "meshgate.yaml:2") {
		t.Errorf("admin reload view = %+v", view.Reload)
	}
	res, err = http.Get("http://" + p.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metricsText, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(metricsText), `meshgate_config_reloads_total{meshgate_result="failure"`) {
		t.Errorf("/metrics lacks the failed reload count")
	}

	// SIGHUP reloads too; write the file in place of the broken one first.
	writeConfig(t, cfgPath, a)
	p.cmd.Process.Signal(syscall.SIGHUP)
	waitUntil(t, func() bool { return backendOf(t, base+"/") == "a" })

	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := <-p.exited; err != nil {
		t.Fatalf("exit: %v", err)
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestValidateCommand(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("listeners: [{address: \":8080\"}]\nservices: {a: {instances: [{address: 127.0.0.1, port: 9000}]}}\nroutes: [{match: {path_prefix: /}, service: a}]\n"), 0o644)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("listeners: [{address: \":8080\"}]\nservices: {a: {instances: [{address: 127.0.0.1, port: 99999}]}}\nroutes: [{match: {path_prefix: /}, service: a, colour: red}]\n"), 0o644)

	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  []string
	}{
		{name: "valid", args: []string{"validate", good}, wantCode: 0},
		{name: "invalid", args: []string{"validate", bad}, wantCode: 1,
			wantErr: []string{bad + ":2: services.a.instances[0].port: ", bad + ":3: routes[0].colour: "}},
		{name: "one bad of two", args: []string{"validate", good, bad}, wantCode: 1},
		{name: "missing file", args: []string{"validate", filepath.Join(dir, "nope.yaml")}, wantCode: 1},
		{name: "no args", args: []string{"validate"}, wantCode: 1},
		{name: "version", args: []string{"version"}, wantCode: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.CommandContext(context.Background(), binary, tc.args...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, tc.wantCode, stderr.String())
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr.String())
				}
			}
		})
	}
}
