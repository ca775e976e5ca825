// Command bench is meshgate's load benchmark, run by `make bench`.
//
// It starts two local backends (this binary re-executed with -serve-backend,
// each answering a fixed 100-byte JSON body) and, on free loopback ports,
// each target in front of them, then drives each with wrk:
//
//	direct      wrk straight to backend 1: the floor no proxy can beat.
//	            Only one backend, because that is the honest per-backend
//	            capacity when the backends share the proxy's core.
//	meshgate    the -meshgate binary, `meshgate run --config FILE
//	            --access-log off`, round robin over both backends.
//	meshgate_traced
//	            the same binary and config with tracing on and every
//	            request sampled (OTEL_TRACES_SAMPLER=always_on), exporting
//	            OTLP/HTTP protobuf to a sink the harness runs itself (this
//	            binary re-executed with -serve-otlp-sink), which reads and
//	            discards each export and answers 200.
//	meshgate_policies
//	            the same binary and config plus policies.dir with one
//	            policy applied to every request: a JWT (ES256, verified
//	            against a JWKS file), a CEL authorization rule
//	            (claims.role == "admin" && request.method == "GET",
//	            default deny) and a local per-principal rate limit of 10^8
//	            requests/s, which never refuses but is counted on every
//	            request. Before any load it must answer 401 (with
//	            WWW-Authenticate) without the token, 200 (with
//	            RateLimit-Policy) with it and 403 to a POST with it, or the
//	            run fails: a gateway that skips the chain is not measured.
//	gobaseline  httputil.ReverseProxy (Rewrite, round robin, 1024 idle
//	            connections per host) built into this binary: the Go floor.
//	nginx, haproxy, caddy
//	            when installed (`make bench-peers`), each with one worker
//	            or thread and a generated config.
//
// At start the harness generates a P-256 key, writes its public half as
// the JWKS meshgate_policies reads, and signs a token with it (issuer
// https://bench.meshgate.test, audience bench, subject bench-client, role
// admin, expiring in an hour or twice the planned run, whichever is
// longer). wrk sends "Authorization: Bearer TOKEN" to every target, so each
// reads and forwards the same requests; only meshgate_policies checks it.
//
// wrk runs on core 0 with one thread, 64 connections and --latency; the
// backends and the proxy under test share core 1, every Go process with
// GOMAXPROCS=1 (with a narrower affinity mask, the first two CPUs the
// harness may use take the roles of 0 and 1). Without taskset or a second
// core everything runs unpinned, with a warning. The OTLP sink runs on core
// 1 too, so receiving the spans costs what a collector on the same host
// would: it is counted in meshgate_traced's throughput and latency, while
// its CPU and RSS columns stay meshgate's own process.
//
// Rounds are interleaved (direct meshgate gobaseline ... direct meshgate
// ...), each measured run preceded by an uncounted warm-up of the same
// target, and the report holds the median of the rounds per target:
// requests/s, p50 and p99 latency, CPU seconds per 100k requests and peak
// RSS. CPU time is utime+stime from /proc/PID/stat, read before and after
// the measured run, in USER_HZ ticks (`getconf CLK_TCK`, else 100). For
// direct it is backend 1's; for proxies the proxy's own (the backends' is
// reported separately). Peak RSS is VmHWM from /proc/PID/status, for nginx
// the sum of master and worker. Results also go to bench/results/latest.json.
//
// Usage:
//
//	go run ./bench -meshgate .bin/meshgate [-duration 10s] [-warmup 2s] [-rounds 3]
//	    [-conns 64] [-only direct,meshgate,meshgate_traced,meshgate_policies,gobaseline,nginx,haproxy,caddy]
//	    [-keep] [-out FILE]
//
// Every process the harness starts is stopped when it exits, on success,
// error or Ctrl-C. Killed outright (SIGKILL), it leaves its temp dir and
// nginx's worker behind (PDEATHSIG ends the rest); the next run kills that.
//
// The last line of output is the summary:
//
//	bench: meshgate/direct=R meshgate/gobaseline=R meshgate/nginx=R meshgate/haproxy=R meshgate/caddy=R p99_added_ms=X meshgate_traced/meshgate=R meshgate_policies/meshgate=R
//
// where R is meshgate's median requests/s divided by the peer's ("n/a" when
// either was not measured), X is meshgate's median p99 minus direct's, in
// milliseconds, meshgate_traced/meshgate is meshgate_traced's median
// requests/s divided by meshgate's (what tracing every request keeps of the
// throughput), and the last R is meshgate_policies' over meshgate's (what
// the JWT + CEL + local rate limit chain keeps).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// options are the command-line flags.
type options struct {
	meshgate string
	duration time.Duration
	warmup   time.Duration
	rounds   int
	conns    int
	only     []string
	keep     bool
	out      string

	// Hidden modes of the re-executed harness.
	serveBackend  string
	serveBaseline string
	serveOTLPSink string
	upstreams     string
}

// hiddenFlags are internal and left out of -help.
var hiddenFlags = []string{"serve-backend", "serve-baseline", "serve-otlp-sink", "upstreams"}

func main() {
	os.Exit(mainExit(os.Args[1:]))
}

// mainExit runs the harness with SIGINT and SIGTERM cancelling it (a second
// signal kills it outright; children then die by PDEATHSIG) and returns the
// exit code.
func mainExit(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop()
	}()
	if err := run(ctx, args, os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 2
		}
		if ctx.Err() != nil {
			fmt.Fprintln(os.Stderr, "bench: interrupted; every process it started has been stopped")
			return 130
		}
		fmt.Fprintf(os.Stderr, "bench: error: %v\n", err)
		return 1
	}
	return 0
}

// parseFlags parses args; errors and -help go to stderr.
func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	var only string
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.meshgate, "meshgate", "", "path to the meshgate binary (required unless -only leaves "+strings.Join(meshgateTargets, ", ")+" out)")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "measured wrk run per target and round (whole seconds)")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "uncounted wrk run before each measured run; 0 disables")
	fs.IntVar(&o.rounds, "rounds", 3, "interleaved rounds; the report holds per-target medians")
	fs.IntVar(&o.conns, "conns", 64, "wrk connections")
	fs.StringVar(&only, "only", "", "comma-separated targets to run (default all): "+strings.Join(allTargets, ","))
	fs.BoolVar(&o.keep, "keep", false, "keep the temp dir with generated configs and logs, and print its path")
	fs.StringVar(&o.out, "out", "", "JSON results file (default bench/results/latest.json in the module)")
	fs.StringVar(&o.serveBackend, "serve-backend", "", "internal: serve the benchmark backend on ADDR")
	fs.StringVar(&o.serveBaseline, "serve-baseline", "", "internal: serve the gobaseline proxy on ADDR")
	fs.StringVar(&o.serveOTLPSink, "serve-otlp-sink", "", "internal: serve the OTLP/HTTP trace sink on ADDR")
	fs.StringVar(&o.upstreams, "upstreams", "", "internal: gobaseline upstreams host:port,host:port")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: go run ./bench -meshgate PATH [flags]\n\n")
		fs.VisitAll(func(f *flag.Flag) {
			if slices.Contains(hiddenFlags, f.Name) {
				return
			}
			fmt.Fprintf(stderr, "  -%s\n    \t%s", f.Name, f.Usage)
			if f.DefValue != "" && f.DefValue != "false" {
				fmt.Fprintf(stderr, " (default %s)", f.DefValue)
			}
			fmt.Fprintln(stderr)
		})
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("parsing flags: unexpected argument %q", fs.Arg(0))
	}
	if o.serveBackend != "" || o.serveBaseline != "" || o.serveOTLPSink != "" {
		return o, nil
	}
	if only != "" {
		for _, name := range strings.Split(only, ",") {
			name = strings.TrimSpace(name)
			if name == "" {
				continue
			}
			if !slices.Contains(allTargets, name) {
				return o, fmt.Errorf("parsing flags: -only: unknown target %q (targets: %s)", name, strings.Join(allTargets, ", "))
			}
			if !slices.Contains(o.only, name) {
				o.only = append(o.only, name)
			}
		}
		if len(o.only) == 0 {
			return o, errors.New("parsing flags: -only: no targets")
		}
	}
	switch {
	case o.duration < time.Second:
		return o, fmt.Errorf("parsing flags: -duration %v: must be at least 1s", o.duration)
	case o.warmup < 0:
		return o, fmt.Errorf("parsing flags: -warmup %v: must not be negative", o.warmup)
	case o.rounds < 1:
		return o, fmt.Errorf("parsing flags: -rounds %d: must be at least 1", o.rounds)
	case o.conns < 1:
		return o, fmt.Errorf("parsing flags: -conns %d: must be at least 1", o.conns)
	}
	if o.selectedAny(meshgateTargets) && o.meshgate == "" {
		return o, fmt.Errorf("parsing flags: -meshgate PATH is required (or leave %s out with -only)", strings.Join(meshgateTargets, ", "))
	}
	return o, nil
}

// selected reports whether the target is to run.
func (o options) selected(name string) bool {
	return o.only == nil || slices.Contains(o.only, name)
}

// selectedAny reports whether any of the targets is to run.
func (o options) selectedAny(names []string) bool {
	return slices.ContainsFunc(names, o.selected)
}

// run is the whole harness: the hidden serving modes, or the benchmark.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	errorLog := log.New(stderr, "", log.LstdFlags)
	switch {
	case o.serveBackend != "":
		return serve(ctx, o.serveBackend, backendHandler(), errorLog)
	case o.serveBaseline != "":
		ups, err := parseUpstreams(o.upstreams)
		if err != nil {
			return err
		}
		return serve(ctx, o.serveBaseline, newBaselineProxy(ups, errorLog), errorLog)
	case o.serveOTLPSink != "":
		sink := &otlpSink{}
		defer sink.logTotals(errorLog)
		return serve(lingerAfter(ctx, otlpSinkLinger), o.serveOTLPSink, sink, errorLog)
	}
	return benchmark(ctx, o, stdout, stderr)
}

// benchmark starts everything, runs the rounds and reports.
func benchmark(ctx context.Context, o options, stdout, stderr io.Writer) (err error) {
	progress := func(format string, args ...any) { fmt.Fprintf(stderr, "bench: "+format+"\n", args...) }

	e := &env{peerBins: map[string]string{}}
	if e.self, err = os.Executable(); err != nil {
		return fmt.Errorf("finding the harness binary to re-execute: %w", err)
	}
	if o.selectedAny(meshgateTargets) {
		if e.meshgate, err = checkBinary(o.meshgate); err != nil {
			return err
		}
	}
	var targets []string
	var skipped []string
	for _, name := range allTargets {
		if !o.selected(name) {
			continue
		}
		if slices.Contains(peerTargets, name) {
			bin, ok := lookPeer(name)
			if !ok {
				if o.only != nil {
					return fmt.Errorf("%s was asked for with -only but is not installed (run `make bench-peers`)", name)
				}
				progress("%s not installed, skipping (run `make bench-peers`)", name)
				skipped = append(skipped, name)
				continue
			}
			e.peerBins[name] = bin
		}
		targets = append(targets, name)
	}
	wrk, err := ensureWrk(ctx, stderr)
	if err != nil {
		return err
	}

	// wrk gets the first CPU the harness may use (core 0 on an unconfined
	// machine), backends and proxies the second.
	pinned := false
	wrkCPU := ""
	if _, err := exec.LookPath("taskset"); err != nil {
		progress("warning: taskset not found (util-linux); running unpinned, figures are noisier")
	} else if cpus, err := allowedCPUs(); err != nil {
		progress("warning: %v; running unpinned", err)
	} else if len(cpus) < 2 {
		progress("warning: only CPU %d is usable; running unpinned, load generator and proxy share it", cpus[0])
	} else {
		pinned = true
		wrkCPU = strconv.Itoa(cpus[0])
		e.cpuList = strconv.Itoa(cpus[1])
	}
	ticks, err := clockTicks(ctx)
	if err != nil {
		progress("warning: %v", err)
	}

	if e.dir, err = os.MkdirTemp("", tempDirPrefix); err != nil {
		return fmt.Errorf("creating temp dir: %w", err)
	}
	if o.keep {
		progress("configs and logs in %s (kept)", e.dir)
	} else {
		defer os.RemoveAll(e.dir)
	}
	for _, pid := range reapOrphanedWorkers() {
		progress("killed nginx worker %d left behind by an earlier run that was killed", pid)
	}
	e.sup = &supervisor{dir: e.dir}
	defer e.sup.stopAll(3 * time.Second)

	if e.creds, err = newCredentials(time.Now(), tokenTTL(o, len(targets))); err != nil {
		return err
	}
	if err := startBackends(ctx, e); err != nil {
		return err
	}
	if slices.Contains(targets, targetMeshgateTraced) {
		if err := startOTLPSink(ctx, e); err != nil {
			return err
		}
	}
	instances := make([]*instance, 0, len(targets))
	for _, name := range targets {
		inst, err := startTarget(ctx, e, name)
		if err != nil {
			return err
		}
		instances = append(instances, inst)
	}
	backendPIDs := []int{e.backends[0].PID(), e.backends[1].PID()}

	rep := &report{
		Started:    time.Now().UTC(),
		GoVersion:  runtime.Version(),
		Cores:      runtime.NumCPU(),
		Pinned:     pinned,
		WrkCPU:     wrkCPU,
		TargetCPU:  e.cpuList,
		ClockTicks: ticks,
		Duration:   o.duration.String(),
		Warmup:     o.warmup.String(),
		Rounds:     o.rounds,
		Conns:      o.conns,
		Skipped:    skipped,
	}
	runs := map[string][]runResult{}
	for round := 1; round <= o.rounds; round++ {
		for _, inst := range instances {
			spec := wrkSpec{URL: inst.url, Conns: o.conns, CPUList: wrkCPU, Headers: []string{e.creds.AuthHeader()}}
			if o.warmup > 0 {
				spec.Duration = o.warmup
				if _, _, err := runWrk(ctx, wrk, spec); err != nil {
					return fmt.Errorf("warming up %s: %w", inst.name, err)
				}
			}
			spec.Duration = o.duration
			r, err := measure(ctx, wrk, spec, inst, backendPIDs, ticks)
			if err != nil {
				return fmt.Errorf("round %d: %s: %w", round, inst.name, err)
			}
			runs[inst.name] = append(runs[inst.name], r)
			progress("round %d/%d %-*s %9.0f req/s  p50 %6.2fms  p99 %6.2fms  cpu %.3fs/100k%s",
				round, o.rounds, nameWidth, inst.name, r.RPS, r.P50Ms, r.P99Ms, r.CPUPer100k, errorNote(r.Errors))
		}
	}
	for _, name := range targets {
		rep.Targets = append(rep.Targets, summarize(name, runs[name]))
	}
	rep.finish()

	writeTable(stdout, rep)
	if err := writeJSON(o.out, rep); err != nil {
		progress("warning: %v", err)
	}
	if o.keep {
		fmt.Fprintf(stdout, "configs and logs: %s\n", e.dir)
	}
	fmt.Fprintln(stdout, rep.Summary)
	return nil
}

// errorNote flags a run with failed requests in the progress line.
func errorNote(n int64) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("  WARNING: %d errors", n)
}

// measure runs wrk once and reads the target's CPU time around it.
func measure(ctx context.Context, wrk string, spec wrkSpec, inst *instance, backendPIDs []int, ticks int64) (runResult, error) {
	pids, err := inst.pids()
	if err != nil {
		return runResult{}, err
	}
	cpu0, err := cpuTicks(pids)
	if err != nil {
		return runResult{}, err
	}
	back0, err := cpuTicks(backendPIDs)
	if err != nil {
		return runResult{}, err
	}
	w, _, err := runWrk(ctx, wrk, spec)
	if err != nil {
		return runResult{}, err
	}
	cpu1, err := cpuTicks(pids)
	if err != nil {
		return runResult{}, err
	}
	back1, err := cpuTicks(backendPIDs)
	if err != nil {
		return runResult{}, err
	}
	rss, err := peakRSS(pids)
	if err != nil {
		return runResult{}, err
	}
	r := runResult{
		RPS:       w.RPS,
		P50Ms:     ms(w.P50),
		P99Ms:     ms(w.P99),
		Requests:  w.Requests,
		Errors:    w.Errors(),
		CPUSec:    float64(cpu1-cpu0) / float64(ticks),
		PeakRSSKB: rss,
	}
	if !inst.measuresBackend {
		r.BackendCPUSec = float64(back1-back0) / float64(ticks)
	}
	if w.Requests > 0 {
		r.CPUPer100k = r.CPUSec / float64(w.Requests) * 1e5
		r.BackendCPUPer100k = r.BackendCPUSec / float64(w.Requests) * 1e5
	}
	return r, nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// checkBinary resolves path to an absolute path of an executable file.
func checkBinary(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("checking -meshgate %s: %w", path, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("checking -meshgate: %w (build it with `make build`)", err)
	}
	if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("checking -meshgate: %s is not an executable file", abs)
	}
	return abs, nil
}
