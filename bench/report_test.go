package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestSummaryLine(t *testing.T) {
	t.Parallel()
	all := map[string]targetResult{
		targetDirect:     {Name: targetDirect, RPS: 40000, P99Ms: 1.25},
		targetMeshgate:   {Name: targetMeshgate, RPS: 20000, P99Ms: 3.5},
		targetGoBaseline: {Name: targetGoBaseline, RPS: 18000},
		targetNginx:      {Name: targetNginx, RPS: 30000},
		targetHAProxy:    {Name: targetHAProxy, RPS: 30001},
		targetCaddy:      {Name: targetCaddy, RPS: 15000},
		// Tracing every request keeps 80% of meshgate's throughput.
		targetMeshgateTraced: {Name: targetMeshgateTraced, RPS: 16000, P99Ms: 4.5},
		// The JWT + CEL + local rate limit chain keeps 85%.
		targetMeshgatePolicies: {Name: targetMeshgatePolicies, RPS: 17000, P99Ms: 4},
	}
	without := func(names ...string) map[string]targetResult {
		m := map[string]targetResult{}
		for k, v := range all {
			m[k] = v
		}
		for _, n := range names {
			delete(m, n)
		}
		return m
	}
	tests := map[string]struct {
		in   map[string]targetResult
		want string
	}{
		"every target": {
			in:   all,
			want: "bench: meshgate/direct=0.50 meshgate/gobaseline=1.11 meshgate/nginx=0.67 meshgate/haproxy=0.67 meshgate/caddy=1.33 p99_added_ms=2.25 meshgate_traced/meshgate=0.80 meshgate_policies/meshgate=0.85",
		},
		"peers not installed": {
			in:   without(targetNginx, targetHAProxy, targetCaddy),
			want: "bench: meshgate/direct=0.50 meshgate/gobaseline=1.11 meshgate/nginx=n/a meshgate/haproxy=n/a meshgate/caddy=n/a p99_added_ms=2.25 meshgate_traced/meshgate=0.80 meshgate_policies/meshgate=0.85",
		},
		"no meshgate": {
			in:   without(targetMeshgate),
			want: "bench: meshgate/direct=n/a meshgate/gobaseline=n/a meshgate/nginx=n/a meshgate/haproxy=n/a meshgate/caddy=n/a p99_added_ms=n/a meshgate_traced/meshgate=n/a meshgate_policies/meshgate=n/a",
		},
		"no direct": {
			in:   without(targetDirect),
			want: "bench: meshgate/direct=n/a meshgate/gobaseline=1.11 meshgate/nginx=0.67 meshgate/haproxy=0.67 meshgate/caddy=1.33 p99_added_ms=n/a meshgate_traced/meshgate=0.80 meshgate_policies/meshgate=0.85",
		},
		"meshgate faster than direct at the tail": {
			in: map[string]targetResult{
				targetDirect:   {RPS: 1000, P99Ms: 5},
				targetMeshgate: {RPS: 1000, P99Ms: 4.994},
			},
			want: "bench: meshgate/direct=1.00 meshgate/gobaseline=n/a meshgate/nginx=n/a meshgate/haproxy=n/a meshgate/caddy=n/a p99_added_ms=-0.01 meshgate_traced/meshgate=n/a meshgate_policies/meshgate=n/a",
		},
		"traced without meshgate": {
			in:   without(targetMeshgate, targetDirect, targetGoBaseline, targetNginx, targetHAProxy, targetCaddy),
			want: "bench: meshgate/direct=n/a meshgate/gobaseline=n/a meshgate/nginx=n/a meshgate/haproxy=n/a meshgate/caddy=n/a p99_added_ms=n/a meshgate_traced/meshgate=n/a meshgate_policies/meshgate=n/a",
		},
		"traced faster than meshgate": {
			in: map[string]targetResult{
				targetMeshgate:       {RPS: 1000},
				targetMeshgateTraced: {RPS: 1004},
			},
			want: "bench: meshgate/direct=n/a meshgate/gobaseline=n/a meshgate/nginx=n/a meshgate/haproxy=n/a meshgate/caddy=n/a p99_added_ms=n/a meshgate_traced/meshgate=1.00 meshgate_policies/meshgate=n/a",
		},
		"policies not run": {
			in:   without(targetMeshgatePolicies),
			want: "bench: meshgate/direct=0.50 meshgate/gobaseline=1.11 meshgate/nginx=0.67 meshgate/haproxy=0.67 meshgate/caddy=1.33 p99_added_ms=2.25 meshgate_traced/meshgate=0.80 meshgate_policies/meshgate=n/a",
		},
		"policies without traced": {
			in: map[string]targetResult{
				targetMeshgate:         {RPS: 1000},
				targetMeshgatePolicies: {RPS: 904},
			},
			want: "bench: meshgate/direct=n/a meshgate/gobaseline=n/a meshgate/nginx=n/a meshgate/haproxy=n/a meshgate/caddy=n/a p99_added_ms=n/a meshgate_traced/meshgate=n/a meshgate_policies/meshgate=0.90",
		},
		"meshgate with zero throughput": {
			in: map[string]targetResult{
				targetMeshgate:         {RPS: 0},
				targetMeshgateTraced:   {RPS: 1000},
				targetMeshgatePolicies: {RPS: 1000},
			},
			want: "bench: meshgate/direct=n/a meshgate/gobaseline=n/a meshgate/nginx=n/a meshgate/haproxy=n/a meshgate/caddy=n/a p99_added_ms=n/a meshgate_traced/meshgate=n/a meshgate_policies/meshgate=n/a",
		},
		"peer with zero throughput": {
			in: map[string]targetResult{
				targetMeshgate: {RPS: 1000},
				targetCaddy:    {RPS: 0},
			},
			want: "bench: meshgate/direct=n/a meshgate/gobaseline=n/a meshgate/nginx=n/a meshgate/haproxy=n/a meshgate/caddy=n/a p99_added_ms=n/a meshgate_traced/meshgate=n/a meshgate_policies/meshgate=n/a",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ratios, _, got := summarizeComparison(tc.in)
			if got != tc.want {
				t.Errorf("summary =\n %s\nwant\n %s", got, tc.want)
			}
			if len(ratios) != len(ratioPeers)+2 {
				t.Errorf("ratios has %d keys, want %d", len(ratios), len(ratioPeers)+2)
			}
			for _, key := range []string{tracedRatioKey, policiesRatioKey} {
				if _, ok := ratios[key]; !ok {
					t.Errorf("ratios lacks %s", key)
				}
			}
		})
	}
}

func TestNameWidth(t *testing.T) {
	t.Parallel()
	for _, name := range allTargets {
		if len(name) > nameWidth {
			t.Errorf("target %q is wider than the name column (%d)", name, nameWidth)
		}
	}
}

func TestMedian(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		in   []float64
		want float64
	}{
		"none":    {nil, 0},
		"one":     {[]float64{3}, 3},
		"odd":     {[]float64{9, 1, 5}, 5},
		"even":    {[]float64{4, 1, 3, 2}, 2.5},
		"outlier": {[]float64{100, 101, 1e9}, 101},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			in := append([]float64(nil), tc.in...)
			if got := median(tc.in); got != tc.want {
				t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
			}
			for i := range in {
				if in[i] != tc.in[i] {
					t.Fatalf("median reordered its input: %v", tc.in)
				}
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	t.Parallel()
	runs := []runResult{
		{RPS: 100, P99Ms: 9, PeakRSSKB: 10, Errors: 1},
		{RPS: 300, P99Ms: 1, PeakRSSKB: 30},
		{RPS: 200, P99Ms: 5, PeakRSSKB: 20, Errors: 2},
	}
	got := summarize("x", runs)
	if got.RPS != 200 || got.P99Ms != 5 || got.PeakRSSKB != 30 || got.Errors != 3 || len(got.Runs) != 3 {
		t.Errorf("summarize = %+v, want median rps 200, p99 5, max RSS 30, errors 3", got)
	}
}

func TestReportOutput(t *testing.T) {
	t.Parallel()
	r := &report{
		Rounds: 3, Duration: "10s", Warmup: "2s", Conns: 64, Pinned: true,
		Targets: []targetResult{
			{Name: targetDirect, RPS: 40000, P50Ms: 0.8, P99Ms: 1.25, CPUPer100k: 1.5, PeakRSSKB: 10240},
			{Name: targetMeshgate, RPS: 20000, P50Ms: 1.6, P99Ms: 3.5, CPUPer100k: 4, BackendCPUPer100k: 2, PeakRSSKB: 30720},
			{Name: targetMeshgateTraced, RPS: 15000, P50Ms: 2.1, P99Ms: 4.75, CPUPer100k: 5.5, BackendCPUPer100k: 2, PeakRSSKB: 40960},
			{Name: targetMeshgatePolicies, RPS: 17000, P50Ms: 1.9, P99Ms: 4.25, CPUPer100k: 4.7, BackendCPUPer100k: 2, PeakRSSKB: 35840},
		},
		Skipped: []string{targetCaddy},
	}
	r.finish()

	var buf bytes.Buffer
	writeTable(&buf, r)
	table := buf.String()
	for _, want := range []string{"req/s", "40000", "3.50", "30.0", "caddy", "n/a", "meshgate_traced", "15000", "4.75", "40.0",
		"meshgate_policies", "17000", "4.25", "35.0"} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	if !strings.HasSuffix(r.Summary, " meshgate_traced/meshgate=0.75 meshgate_policies/meshgate=0.85") {
		t.Errorf("summary %q does not end with meshgate_traced/meshgate=0.75 meshgate_policies/meshgate=0.85", r.Summary)
	}
	// The name column is wide enough for meshgate_policies: every row's
	// req/s column ends at the same offset, and every name starts in the
	// same column.
	var ends []int
	for _, line := range strings.Split(table, "\n") {
		if i := strings.Index(line, "000 "); i >= 0 && !strings.HasPrefix(line, "medians") {
			ends = append(ends, i)
		}
	}
	if len(ends) != 4 || len(slices.Compact(slices.Clone(ends))) != 1 {
		t.Errorf("req/s column misaligned (offsets %v):\n%s", ends, table)
	}
	indents := map[int][]string{}
	for _, line := range strings.Split(table, "\n") {
		if line != "" && !strings.HasPrefix(line, "medians") {
			indent := len(line) - len(strings.TrimLeft(line, " "))
			indents[indent] = append(indents[indent], line)
		}
	}
	if len(indents) != 1 {
		t.Errorf("names do not start in one column (rows by indent %v):\n%s", indents, table)
	}

	path := filepath.Join(t.TempDir(), "results", "latest.json")
	if err := writeJSON(path, r); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var back report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("results are not JSON: %v", err)
	}
	if back.Summary != r.Summary || len(back.Targets) != 4 {
		t.Errorf("round trip: summary %q, %d targets", back.Summary, len(back.Targets))
	}
	if back.Ratios["meshgate/direct"] == nil || *back.Ratios["meshgate/direct"] != 0.5 {
		t.Errorf("ratios[meshgate/direct] = %v, want 0.5", back.Ratios["meshgate/direct"])
	}
	if back.Ratios[tracedRatioKey] == nil || *back.Ratios[tracedRatioKey] != 0.75 {
		t.Errorf("ratios[%s] = %v, want 0.75", tracedRatioKey, back.Ratios[tracedRatioKey])
	}
	if back.Ratios[policiesRatioKey] == nil || *back.Ratios[policiesRatioKey] != 0.85 {
		t.Errorf("ratios[%s] = %v, want 0.85", policiesRatioKey, back.Ratios[policiesRatioKey])
	}
	if back.Ratios["meshgate/nginx"] != nil {
		t.Errorf("ratios[meshgate/nginx] = %v, want null", *back.Ratios["meshgate/nginx"])
	}
}
