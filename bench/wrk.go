package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// wrkResult is what one wrk run reports.
type wrkResult struct {
	// Requests is the number of completed requests ("N requests in ...").
	Requests int64
	// Elapsed is the run's wall time as wrk measured it.
	Elapsed time.Duration
	// RPS is wrk's "Requests/sec".
	RPS float64
	// P50 and P99 come from the --latency distribution.
	P50, P99 time.Duration
	// Non2xx counts "Non-2xx or 3xx responses".
	Non2xx int64
	// Socket errors by kind; all zero when wrk printed no "Socket errors" line.
	ConnectErrors, ReadErrors, WriteErrors, Timeouts int64
}

// Errors is the number of failed requests of any kind. A run with errors is
// suspect: a proxy answering 502 quickly looks fast.
func (r wrkResult) Errors() int64 {
	return r.Non2xx + r.ConnectErrors + r.ReadErrors + r.WriteErrors + r.Timeouts
}

// wrkSpec is one wrk invocation.
type wrkSpec struct {
	URL      string
	Conns    int
	Duration time.Duration
	// CPUList pins wrk with taskset -c when not empty.
	CPUList string
	// Headers are "Name: value" lines sent with every request, in order.
	Headers []string
}

// args is the command line: one thread (wrk is pinned to one core), the
// given connections, whole seconds (wrk's -d takes no fractions), the
// latency distribution and an -H per header.
func (s wrkSpec) args(wrk string) []string {
	secs := max(1, int(math.Ceil(s.Duration.Seconds())))
	argv := []string{wrk, "-t1", "-c" + strconv.Itoa(s.Conns), "-d" + strconv.Itoa(secs) + "s", "--latency"}
	for _, h := range s.Headers {
		argv = append(argv, "-H", h)
	}
	argv = append(argv, s.URL)
	if s.CPUList != "" {
		argv = append([]string{"taskset", "-c", s.CPUList}, argv...)
	}
	return argv
}

// runWrk runs wrk and parses its report.
func runWrk(ctx context.Context, wrk string, spec wrkSpec) (wrkResult, string, error) {
	argv := spec.args(wrk)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.WaitDelay = 2 * time.Second
	// Should the harness be killed outright, the kernel ends wrk too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return wrkResult{}, out.String(), ctx.Err()
		}
		return wrkResult{}, out.String(), fmt.Errorf("running %s: %w\n%s", strings.Join(argv, " "), err, out.String())
	}
	res, err := parseWrk(out.String())
	if err != nil {
		return res, out.String(), fmt.Errorf("%s: %w\n%s", strings.Join(argv, " "), err, out.String())
	}
	return res, out.String(), nil
}

// parseWrk parses the report wrk 4 prints with --latency, for example:
//
//	Running 2s test @ http://127.0.0.1:8080/
//	  1 threads and 64 connections
//	  Thread Stats   Avg      Stdev     Max   +/- Stdev
//	    Latency   645.53us  190.70us   8.73ms   93.02%
//	    Req/Sec    98.93k     5.53k  104.57k    85.00%
//	  Latency Distribution
//	     50%  620.00us
//	     75%  676.00us
//	     90%  760.00us
//	     99%    1.33ms
//	  196905 requests in 2.00s, 37.18MB read
//	  Socket errors: connect 0, read 0, write 0, timeout 3
//	  Non-2xx or 3xx responses: 12
//	Requests/sec:  98378.89
//	Transfer/sec:     18.58MB
func parseWrk(out string) (wrkResult, error) {
	var r wrkResult
	var haveRPS, haveTotal, have50, have99 bool
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		switch {
		case len(f) == 0:
		case f[0] == "Requests/sec:" && len(f) == 2:
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				return r, fmt.Errorf("parsing wrk Requests/sec %q: %w", f[1], err)
			}
			r.RPS, haveRPS = v, true
		case len(f) >= 4 && f[1] == "requests" && f[2] == "in":
			n, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return r, fmt.Errorf("parsing wrk request count %q: %w", f[0], err)
			}
			d, err := parseWrkDuration(strings.TrimSuffix(f[3], ","))
			if err != nil {
				return r, fmt.Errorf("parsing wrk run time: %w", err)
			}
			r.Requests, r.Elapsed, haveTotal = n, d, true
		case (f[0] == "50%" || f[0] == "99%") && len(f) == 2:
			d, err := parseWrkDuration(f[1])
			if err != nil {
				return r, fmt.Errorf("parsing wrk %s latency: %w", f[0], err)
			}
			if f[0] == "50%" {
				r.P50, have50 = d, true
			} else {
				r.P99, have99 = d, true
			}
		case f[0] == "Socket" && len(f) > 1 && f[1] == "errors:":
			if err := parseSocketErrors(f[2:], &r); err != nil {
				return r, err
			}
		case strings.HasPrefix(strings.TrimSpace(line), "Non-2xx or 3xx responses:"):
			n, err := strconv.ParseInt(f[len(f)-1], 10, 64)
			if err != nil {
				return r, fmt.Errorf("parsing wrk non-2xx count: %w", err)
			}
			r.Non2xx = n
		}
	}
	var missing []string
	if !haveRPS {
		missing = append(missing, "Requests/sec")
	}
	if !haveTotal {
		missing = append(missing, "request count")
	}
	if !have50 || !have99 {
		missing = append(missing, "latency distribution (50%/99%; was --latency given?)")
	}
	if len(missing) > 0 {
		return r, fmt.Errorf("parsing wrk output: missing %s", strings.Join(missing, ", "))
	}
	return r, nil
}

// parseSocketErrors parses the fields after "Socket errors:":
// "connect 0, read 0, write 0, timeout 3".
func parseSocketErrors(f []string, r *wrkResult) error {
	if len(f)%2 != 0 {
		return fmt.Errorf("parsing wrk socket errors %q: odd field count", strings.Join(f, " "))
	}
	for i := 0; i < len(f); i += 2 {
		n, err := strconv.ParseInt(strings.TrimSuffix(f[i+1], ","), 10, 64)
		if err != nil {
			return fmt.Errorf("parsing wrk socket errors %q: %w", f[i], err)
		}
		switch f[i] {
		case "connect":
			r.ConnectErrors = n
		case "read":
			r.ReadErrors = n
		case "write":
			r.WriteErrors = n
		case "timeout":
			r.Timeouts = n
		default:
			return fmt.Errorf("parsing wrk socket errors: unknown kind %q", f[i])
		}
	}
	return nil
}

// wrkUnits are the suffixes of wrk's format_time_us (units.c): microseconds
// up to milliseconds and seconds, then minutes and hours past 60 s.
var wrkUnits = []struct {
	suffix string
	unit   time.Duration
}{
	// "us" and "ms" before "s", which is a suffix of both.
	{"us", time.Microsecond},
	{"ms", time.Millisecond},
	{"s", time.Second},
	{"m", time.Minute},
	{"h", time.Hour},
}

// parseWrkDuration parses a wrk time such as "620.00us", "1.33ms", "2.00s"
// or "1.00m".
func parseWrkDuration(s string) (time.Duration, error) {
	for _, u := range wrkUnits {
		num, ok := strings.CutSuffix(s, u.suffix)
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(num, 64)
		ns := v * float64(u.unit)
		// !(ns >= 0) also rejects NaN.
		if err != nil || !(ns >= 0) || ns >= math.MaxInt64 {
			return 0, fmt.Errorf("parsing wrk time %q: bad number", s)
		}
		return time.Duration(math.Round(ns)), nil
	}
	return 0, fmt.Errorf("parsing wrk time %q: unit is not one of us, ms, s, m, h", s)
}

// ensureWrk finds wrk on PATH. When it is missing and the harness runs as
// root on a Debian-like system, it installs the Debian package, running
// apt-get update first only if the install fails on stale package lists.
func ensureWrk(ctx context.Context, log io.Writer) (string, error) {
	if p, err := exec.LookPath("wrk"); err == nil {
		return p, nil
	}
	const hint = "install it with `make bench-peers` (as root) or your package manager"
	if os.Geteuid() != 0 {
		return "", fmt.Errorf("finding wrk: not on PATH and not running as root; %s", hint)
	}
	apt, err := exec.LookPath("apt-get")
	if err != nil {
		return "", fmt.Errorf("finding wrk: not on PATH and there is no apt-get; %s", hint)
	}
	aptGet := func(args ...string) error {
		fmt.Fprintf(log, "bench: wrk not found, running apt-get %s\n", strings.Join(args, " "))
		cmd := exec.CommandContext(ctx, apt, args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		cmd.Stdout, cmd.Stderr = log, log
		return cmd.Run()
	}
	if err := aptGet("install", "-y", "wrk"); err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		if err := aptGet("update"); err != nil {
			return "", fmt.Errorf("installing wrk: apt-get update: %w; %s", err, hint)
		}
		if err := aptGet("install", "-y", "wrk"); err != nil {
			return "", fmt.Errorf("installing wrk: apt-get install -y wrk: %w; %s", err, hint)
		}
	}
	p, err := exec.LookPath("wrk")
	if err != nil {
		return "", errors.New("installing wrk: apt-get succeeded but wrk is still not on PATH")
	}
	return p, nil
}
