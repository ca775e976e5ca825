package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// runResult is one measured run of one target.
type runResult struct {
	RPS      float64 `json:"rps"`
	P50Ms    float64 `json:"p50_ms"`
	P99Ms    float64 `json:"p99_ms"`
	Requests int64   `json:"requests"`
	// Errors counts non-2xx/3xx responses and socket errors.
	Errors int64 `json:"errors"`
	// CPUSec is the measured processes' utime+stime during the run: the
	// proxy's, or backend 1's for direct.
	CPUSec     float64 `json:"cpu_s"`
	CPUPer100k float64 `json:"cpu_s_per_100k"`
	// BackendCPUSec is both backends' CPU time; zero for direct.
	BackendCPUSec     float64 `json:"backends_cpu_s"`
	BackendCPUPer100k float64 `json:"backends_cpu_s_per_100k"`
	// PeakRSSKB is VmHWM in KiB after the run (summed over nginx's master
	// and worker).
	PeakRSSKB int64 `json:"peak_rss_kib"`
}

// targetResult is a target's medians over the rounds.
type targetResult struct {
	Name              string      `json:"name"`
	RPS               float64     `json:"rps"`
	P50Ms             float64     `json:"p50_ms"`
	P99Ms             float64     `json:"p99_ms"`
	CPUPer100k        float64     `json:"cpu_s_per_100k"`
	BackendCPUPer100k float64     `json:"backends_cpu_s_per_100k"`
	PeakRSSKB         int64       `json:"peak_rss_kib"` // the maximum, not the median
	Errors            int64       `json:"errors"`       // the sum over rounds
	Runs              []runResult `json:"runs"`
}

// report is the whole result, also written as JSON.
type report struct {
	Started    time.Time      `json:"started"`
	GoVersion  string         `json:"go_version"`
	Cores      int            `json:"cores"`
	Pinned     bool           `json:"pinned"`
	WrkCPU     string         `json:"wrk_cpu,omitempty"`
	TargetCPU  string         `json:"target_cpu,omitempty"`
	ClockTicks int64          `json:"clock_ticks"`
	Duration   string         `json:"duration"`
	Warmup     string         `json:"warmup"`
	Rounds     int            `json:"rounds"`
	Conns      int            `json:"conns"`
	Skipped    []string       `json:"skipped,omitempty"`
	Targets    []targetResult `json:"targets"`
	// Ratios maps "meshgate/PEER" to meshgate's median requests/s over the
	// peer's, and "meshgate_traced/meshgate" and
	// "meshgate_policies/meshgate" to those targets' over meshgate's; null
	// when either was not measured.
	Ratios map[string]*float64 `json:"ratios"`
	// P99AddedMs is meshgate's median p99 minus direct's; null when either
	// was not measured.
	P99AddedMs *float64 `json:"p99_added_ms"`
	// Summary is the last line the harness prints.
	Summary string `json:"summary"`
}

// median of xs (the mean of the middle two for an even count); 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// summarize reduces a target's runs to medians. Each figure's median is
// taken on its own, so they may come from different rounds.
func summarize(name string, runs []runResult) targetResult {
	pick := func(f func(runResult) float64) float64 {
		xs := make([]float64, len(runs))
		for i, r := range runs {
			xs[i] = f(r)
		}
		return median(xs)
	}
	t := targetResult{
		Name:              name,
		RPS:               pick(func(r runResult) float64 { return r.RPS }),
		P50Ms:             pick(func(r runResult) float64 { return r.P50Ms }),
		P99Ms:             pick(func(r runResult) float64 { return r.P99Ms }),
		CPUPer100k:        pick(func(r runResult) float64 { return r.CPUPer100k }),
		BackendCPUPer100k: pick(func(r runResult) float64 { return r.BackendCPUPer100k }),
		Runs:              runs,
	}
	for _, r := range runs {
		t.PeakRSSKB = max(t.PeakRSSKB, r.PeakRSSKB)
		t.Errors += r.Errors
	}
	return t
}

// ratioPeers are the targets meshgate is compared with, in summary order.
var ratioPeers = []string{targetDirect, targetGoBaseline, targetNginx, targetHAProxy, targetCaddy}

// tracedRatioKey is the summary field and Ratios key comparing
// meshgate_traced with meshgate; it follows p99_added_ms.
const tracedRatioKey = targetMeshgateTraced + "/" + targetMeshgate

// policiesRatioKey is the summary field and Ratios key comparing
// meshgate_policies with meshgate: what the JWT + CEL + local rate limit
// chain keeps of the throughput (issue 6). It comes last.
const policiesRatioKey = targetMeshgatePolicies + "/" + targetMeshgate

// finish computes the ratios, p99_added_ms and the summary line.
func (r *report) finish() {
	byName := map[string]targetResult{}
	for _, t := range r.Targets {
		byName[t.Name] = t
	}
	r.Ratios, r.P99AddedMs, r.Summary = summarizeComparison(byName)
}

// summarizeComparison builds the final line from the per-target medians:
//
//	bench: meshgate/direct=0.55 meshgate/gobaseline=1.02 meshgate/nginx=n/a ... p99_added_ms=0.41 meshgate_traced/meshgate=0.80 meshgate_policies/meshgate=0.85
func summarizeComparison(byName map[string]targetResult) (map[string]*float64, *float64, string) {
	ratios := map[string]*float64{}
	var b strings.Builder
	b.WriteString("bench:")
	mg, haveMG := byName[targetMeshgate]
	// ratio writes " key=R" for a's median requests/s over b's, or n/a.
	ratio := func(key string, a targetResult, haveA bool, bName string) {
		val := "n/a"
		ratios[key] = nil
		if p, ok := byName[bName]; ok && haveA && p.RPS > 0 {
			r := a.RPS / p.RPS
			ratios[key] = &r
			val = strconv.FormatFloat(r, 'f', 2, 64)
		}
		fmt.Fprintf(&b, " %s=%s", key, val)
	}
	for _, peer := range ratioPeers {
		ratio(targetMeshgate+"/"+peer, mg, haveMG, peer)
	}
	var added *float64
	val := "n/a"
	if d, ok := byName[targetDirect]; ok && haveMG {
		x := mg.P99Ms - d.P99Ms
		added = &x
		val = strconv.FormatFloat(x, 'f', 2, 64)
	}
	fmt.Fprintf(&b, " p99_added_ms=%s", val)
	traced, haveTraced := byName[targetMeshgateTraced]
	ratio(tracedRatioKey, traced, haveTraced, targetMeshgate)
	withPolicies, haveWithPolicies := byName[targetMeshgatePolicies]
	ratio(policiesRatioKey, withPolicies, haveWithPolicies, targetMeshgate)
	return ratios, added, b.String()
}

// nameWidth is the width of target names in the table and progress lines:
// the longest name's (TestNameWidth checks every name fits).
const nameWidth = len(targetMeshgatePolicies)

// writeTable prints one line per target.
func writeTable(w io.Writer, r *report) {
	pin := fmt.Sprintf("pinned: wrk on core %s, backends and proxy on core %s", r.WrkCPU, r.TargetCPU)
	if !r.Pinned {
		pin = "UNPINNED"
	}
	fmt.Fprintf(w, "\nmedians of %d round(s), %s each after %s warm-up, %d connections, %s\n",
		r.Rounds, r.Duration, r.Warmup, r.Conns, pin)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	// Names are padded by hand: tabwriter aligns every column right.
	name := func(s string) string { return fmt.Sprintf("%-*s", nameWidth, s) }
	fmt.Fprintf(tw, "%s\treq/s\tp50 ms\tp99 ms\tcpu s/100k\tbackends cpu s/100k\tpeak RSS MiB\terrors\t\n", name("target"))
	for _, t := range r.Targets {
		backends := strconv.FormatFloat(t.BackendCPUPer100k, 'f', 3, 64)
		if t.Name == targetDirect {
			backends = "-" // the measured process is the backend
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.2f\t%.2f\t%.3f\t%s\t%.1f\t%d\t\n",
			name(t.Name), t.RPS, t.P50Ms, t.P99Ms, t.CPUPer100k, backends, float64(t.PeakRSSKB)/1024, t.Errors)
	}
	for _, skipped := range r.Skipped {
		fmt.Fprintf(tw, "%s\tn/a\t\t\t\t\t\t\t\n", name(skipped))
	}
	tw.Flush()
}

// writeJSON writes the report to path, by default bench/results/latest.json
// in the module that contains the working directory.
func writeJSON(path string, r *report) error {
	if path == "" {
		path = defaultResultsPath()
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("writing results: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("writing results: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing results: %w", err)
	}
	return nil
}

// defaultResultsPath is bench/results/latest.json under the nearest
// directory upwards holding go.mod, or under the working directory.
func defaultResultsPath() string {
	rel := filepath.Join("bench", "results", "latest.json")
	dir, err := os.Getwd()
	if err != nil {
		return rel
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return filepath.Join(d, rel)
		}
		if filepath.Dir(d) == d {
			return filepath.Join(dir, rel)
		}
	}
}
