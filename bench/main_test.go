package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/meshgate/meshgate/config"
	"go.yaml.in/yaml/v3"
)

// TestMain lets the test binary stand in for the harness binary: the smoke
// test's harness re-executes os.Executable() with -serve-backend,
// -serve-baseline or -serve-otlp-sink, which here is this test binary.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && slices.Contains([]string{"-serve-backend", "-serve-baseline", "-serve-otlp-sink"}, os.Args[1]) {
		os.Exit(mainExit(os.Args[1:]))
	}
	if len(os.Args) >= 4 && os.Args[1] == "run" && os.Args[2] == "--config" {
		os.Exit(fakeMeshgate(os.Args[3]))
	}
	os.Exit(m.Run())
}

// fakeMeshgate stands in for `meshgate run --config FILE [flags]` while the real
// binary may not build: it reads the generated config with meshgate's own
// types, serves /readyz on the admin address and proxies the listener
// round robin to the service's instances (with gobaseline's proxy). With
// policies.dir set it enforces the bench policy as benchPolicyGate does,
// verifying tokens against the jwks.json there.
func fakeMeshgate(file string) int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "fake meshgate:", err)
		return 1
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return fail(err)
	}
	var c config.Config
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return fail(err)
	}
	var hostports []string
	for _, in := range c.Services[c.Routes[0].Service].Instances {
		hostports = append(hostports, net.JoinHostPort(in.Address, strconv.Itoa(in.Port)))
	}
	ups, err := parseUpstreams(strings.Join(hostports, ","))
	if err != nil {
		return fail(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	logger := log.New(os.Stderr, "", 0)
	var handler http.Handler = newBaselineProxy(ups, logger)
	if c.Policies != nil {
		b, err := os.ReadFile(filepath.Join(c.Policies.Dir, "jwks.json"))
		if err != nil {
			return fail(err)
		}
		set, err := jwk.Parse(b)
		if err != nil {
			return fail(err)
		}
		handler = benchPolicyGate(set, handler)
	}
	admin := http.NewServeMux()
	admin.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ready\n") })
	go serve(ctx, c.Admin.Address, admin, logger)
	if err := serve(ctx, c.Listeners[0].Address, handler, logger); err != nil {
		return fail(err)
	}
	return 0
}

func TestParseFlags(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		args    []string
		wantErr string // substring; "" for success
		check   func(t *testing.T, o options)
	}{
		"defaults": {
			args: []string{"-meshgate", "/bin/true"},
			check: func(t *testing.T, o options) {
				if o.duration != 10*time.Second || o.warmup != 2*time.Second || o.rounds != 3 || o.conns != 64 || o.only != nil {
					t.Errorf("defaults = %+v", o)
				}
				for _, name := range allTargets {
					if !o.selected(name) {
						t.Errorf("%s not selected by default", name)
					}
				}
			},
		},
		"only without meshgate needs no binary": {
			args: []string{"-only", "direct, gobaseline,direct"},
			check: func(t *testing.T, o options) {
				if !slices.Equal(o.only, []string{"direct", "gobaseline"}) || o.selected(targetMeshgate) {
					t.Errorf("only = %q", o.only)
				}
			},
		},
		"meshgate required": {args: nil, wantErr: "-meshgate PATH is required"},
		"meshgate in only":  {args: []string{"-only", "meshgate"}, wantErr: "-meshgate PATH is required"},
		"unknown target":    {args: []string{"-only", "direct,envoy"}, wantErr: `unknown target "envoy"`},
		"empty only":        {args: []string{"-only", ","}, wantErr: "no targets"},
		"short duration":    {args: []string{"-only", "direct", "-duration", "500ms"}, wantErr: "at least 1s"},
		"negative warm-up":  {args: []string{"-only", "direct", "-warmup", "-1s"}, wantErr: "must not be negative"},
		"no rounds":         {args: []string{"-only", "direct", "-rounds", "0"}, wantErr: "-rounds 0"},
		"no connections":    {args: []string{"-only", "direct", "-conns", "0"}, wantErr: "-conns 0"},
		"stray argument":    {args: []string{"-only", "direct", "extra"}, wantErr: `unexpected argument "extra"`},
		"meshgate_traced in only": {
			args: []string{"-only", "direct,meshgate_traced"}, wantErr: "-meshgate PATH is required",
		},
		"meshgate_policies in only": {
			args: []string{"-only", "direct,meshgate_policies"}, wantErr: "-meshgate PATH is required",
		},
		"meshgate_policies accepted": {
			args: []string{"-meshgate", "/bin/true", "-only", "meshgate,meshgate_policies"},
			check: func(t *testing.T, o options) {
				if !slices.Equal(o.only, []string{"meshgate", "meshgate_policies"}) || o.selected(targetMeshgateTraced) {
					t.Errorf("only = %q", o.only)
				}
			},
		},
		"meshgate_traced accepted": {
			args: []string{"-meshgate", "/bin/true", "-only", "meshgate_traced,meshgate"},
			check: func(t *testing.T, o options) {
				if !slices.Equal(o.only, []string{"meshgate_traced", "meshgate"}) || o.selected(targetDirect) {
					t.Errorf("only = %q", o.only)
				}
			},
		},
		"serve-otlp-sink needs no -meshgate": {
			args: []string{"-serve-otlp-sink", "127.0.0.1:0"},
			check: func(t *testing.T, o options) {
				if o.serveOTLPSink != "127.0.0.1:0" {
					t.Errorf("serveOTLPSink = %q", o.serveOTLPSink)
				}
			},
		},
		"serve mode needs no -meshgate": {
			args: []string{"-serve-backend", "127.0.0.1:0"},
			check: func(t *testing.T, o options) {
				if o.serveBackend != "127.0.0.1:0" {
					t.Errorf("serveBackend = %q", o.serveBackend)
				}
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			o, err := parseFlags(tc.args, io.Discard)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("parseFlags(%q) error = %v, want %q", tc.args, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseFlags(%q): %v", tc.args, err)
			}
			tc.check(t, o)
		})
	}
}

func TestHelpHidesInternalFlags(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if _, err := parseFlags([]string{"-help"}, &out); err == nil {
		t.Fatal("-help: want flag.ErrHelp")
	}
	if !strings.Contains(out.String(), "-meshgate") || strings.Contains(out.String(), "serve-backend") ||
		strings.Contains(out.String(), "serve-otlp-sink") || !strings.Contains(out.String(), "meshgate_traced") ||
		!strings.Contains(out.String(), "meshgate_policies") {
		t.Errorf("usage:\n%s", out.String())
	}
}

func TestMissingMeshgateBinary(t *testing.T) {
	t.Parallel()
	err := run(context.Background(), []string{"-meshgate", filepath.Join(t.TempDir(), "nope"), "-only", "meshgate"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "make build") {
		t.Errorf("run with a missing binary: error = %v, want one pointing at make build", err)
	}
}

var summaryRE = regexp.MustCompile(`^bench: meshgate/direct=(\S+) meshgate/gobaseline=(\S+) meshgate/nginx=(\S+) meshgate/haproxy=(\S+) meshgate/caddy=(\S+) p99_added_ms=(\S+) meshgate_traced/meshgate=(\S+) meshgate_policies/meshgate=(\S+)$`)

// TestSmoke runs the whole harness briefly against direct and gobaseline.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes and drives load for a few seconds")
	}
	if _, err := exec.LookPath("wrk"); err != nil {
		t.Skip("wrk not installed (make bench-peers)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out := filepath.Join(t.TempDir(), "latest.json")
	var stdout, stderr bytes.Buffer
	err := run(ctx, []string{"-only", "direct,gobaseline", "-duration", "1s", "-warmup", "0", "-rounds", "1", "-out", out}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("run: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	lines := strings.Split(strings.TrimRight(stdout.String(), "\n"), "\n")
	last := lines[len(lines)-1]
	m := summaryRE.FindStringSubmatch(last)
	if m == nil {
		t.Fatalf("last line %q is not the bench: summary\nstdout:\n%s", last, stdout.String())
	}
	for i, v := range m[1:] {
		if v != "n/a" { // meshgate was not run
			t.Errorf("summary field %d = %q, want n/a", i, v)
		}
	}

	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var rep report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Targets) != 2 {
		t.Fatalf("results hold %d targets, want 2", len(rep.Targets))
	}
	for _, tr := range rep.Targets {
		if tr.RPS <= 0 || tr.P99Ms <= 0 || tr.PeakRSSKB <= 0 || tr.Errors != 0 {
			t.Errorf("%s: implausible result %+v", tr.Name, tr)
		}
	}

	// Every child is gone: no process left whose parent is this test.
	kids, err := childPIDs(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for _, pid := range kids {
		st, err := readStat(pid)
		if err == nil {
			b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
			if strings.Contains(string(b), "-serve-") {
				t.Errorf("child %d still running after run returned: %q (ppid %d)", pid, b, st.PPID)
			}
		}
	}
}

// TestSmokeMeshgatePath runs the harness with the test binary as a fake
// meshgate, so the config, the admin readiness wait, the warm-up, the OTLP
// sink meshgate_traced is pointed at, meshgate_policies' policy files,
// enforcement check and token, and the ratios are exercised while the real
// binary may not build (the fake ignores the tracing environment and
// enforces the bench policy in Go rather than reading the policy file).
func TestSmokeMeshgatePath(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes and drives load for a few seconds")
	}
	if _, err := exec.LookPath("wrk"); err != nil {
		t.Skip("wrk not installed (make bench-peers)")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	out := filepath.Join(t.TempDir(), "latest.json")
	args := []string{"-meshgate", self, "-only", "direct,meshgate,meshgate_traced,meshgate_policies", "-duration", "1s", "-warmup", "1s", "-rounds", "1",
		"-out", out}
	if err := run(ctx, args, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	lines := strings.Split(strings.TrimRight(stdout.String(), "\n"), "\n")
	m := summaryRE.FindStringSubmatch(lines[len(lines)-1])
	if m == nil {
		t.Fatalf("no bench: summary at the end of\n%s", stdout.String())
	}
	if ratio, err := strconv.ParseFloat(m[1], 64); err != nil || ratio <= 0 {
		t.Errorf("meshgate/direct = %q, want a positive ratio", m[1])
	}
	if _, err := strconv.ParseFloat(m[6], 64); err != nil {
		t.Errorf("p99_added_ms = %q, want a number", m[6])
	}
	if ratio, err := strconv.ParseFloat(m[7], 64); err != nil || ratio <= 0 {
		t.Errorf("meshgate_traced/meshgate = %q, want a positive ratio", m[7])
	}
	if ratio, err := strconv.ParseFloat(m[8], 64); err != nil || ratio <= 0 {
		t.Errorf("meshgate_policies/meshgate = %q, want a positive ratio", m[8])
	}
	if m[2] != "n/a" || m[3] != "n/a" {
		t.Errorf("unmeasured peers: %q %q, want n/a", m[2], m[3])
	}
	// wrk sent the token with every request: the policy gate answered no
	// 401s (any would count as errors).
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var rep report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	for _, tr := range rep.Targets {
		if tr.RPS <= 0 || tr.Errors != 0 {
			t.Errorf("%s: %.0f req/s, %d errors; want throughput and no errors", tr.Name, tr.RPS, tr.Errors)
		}
	}
}
