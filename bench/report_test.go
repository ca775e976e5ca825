package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
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
			want: "bench: meshgate/direct=0.50 meshgate/gobaseline=1.11 meshgate/nginx=0.67 meshgate/haproxy=0.67 meshgate/caddy=1.33 p99_added_ms=2.25 meshgate_traced/meshgate=0.80",
		},
		"peers not installed": {
			in:   without(targetNginx, targetHAProxy, targetCaddy),
			want: "bench: meshgate/direct=0.50 meshgate/gobaseline=1.11 meshgate/nginx=n/a meshgate/haproxy=n/a meshgate/caddy=n/a p99_added_ms=2.25 meshgate_traced/meshgate=0.80",
		},
		"no meshgate": {
			in:   without(targetMeshgate),
			want: "bench: meshgate/direct=n/a meshgate/gobaseline=n/a meshgate/nginx=n/a meshgate/haproxy=n/a meshgate/caddy=n/a p99_added_ms=n/a meshgate_traced/meshgate=n/a",
		},
		"no direct": {
			in:   without(targetDirect),
			want: "bench: meshgate/direct=n/a meshgate/gobaseline=1.11 meshgate/nginx=0.67 meshgate/haproxy=0.67 meshgate/caddy=1.33 p99_added_ms=n/a meshgate_traced/meshgate=0.80",
		},
		"meshgate faster than direct at the tail": {
			in: map[string]targetResult{
				targetDirect:   {RPS: 1000, P99Ms: 5},
				targetMeshgate: {RPS: 1000, P99Ms: 4.994},
			},
			want: "bench: meshgate/direct=1.00 meshgate/gobaseline=n/a meshgate/nginx=n/a meshgate/haproxy=n/a meshgate/caddy=n/a p99_added_ms=-0.01 meshgate_traced/meshgate=n/a",
		},
		"traced without meshgate": {
			in:   without(targetMeshgate, targetDirect, targetGoBaseline, targetNginx, targetHAProxy, targetCaddy),
			want: "bench: meshgate/direct=n/a meshgate/gobaseline=n/a meshgate/nginx=n/a meshgate/haproxy=n/a meshgate/caddy=n/a p99_added_ms=n/a meshgate_traced/meshgate=n/a",
		},
		"traced faster than meshgate": {
			in: map[string]targetResult{
				targetMeshgate:       {RPS: 1000},
				targetMeshgateTraced: {RPS: 1004},
			},
			want: "bench: meshgate/direct=n/a meshgate/gobaseline=n/a meshgate/nginx=n/a meshgate/haproxy=n/a meshgate/caddy=n/a p99_added_ms=n/a meshgate_traced/meshgate=1.00",
		},
		"meshgate with zero throughput": {
			in: map[string]targetResult{
				targetMeshgate:       {RPS: 0},
				targetMeshgateTraced: {RPS: 1000},
			},
			want: "bench: meshgate/direct=n/a meshgate/gobaseline=n/a meshgate/nginx=n/a meshgate/haproxy=n/a meshgate/caddy=n/a p99_added_ms=n/a meshgate_traced/meshgate=n/a",
		},
		"peer with zero throughput": {
			in: map[string]targetResult{
				targetMeshgate: {RPS: 1000},
				targetCaddy:    {RPS: 0},
			},
			want: "bench: meshgate/direct=n/a meshgate/gobaseline=n/a meshgate/nginx=n/a meshgate/haproxy=n/a meshgate/caddy=n/a p99_added_ms=n/a meshgate_traced/meshgate=n/a",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ratios, _, got := summarizeComparison(tc.in)
			if got != tc.want {
				t.Errorf("summary =\n %s\nwant\n %s", got, tc.want)
			}
			if len(ratios) != len(ratioPeers)+1 {
				t.Errorf("ratios has %d keys, want %d", len(ratios), len(ratioPeers)+1)
			}
			if _, ok := ratios[tracedRatioKey]; !ok {
				t.Errorf("ratios lacks %s", tracedRatioKey)
			}
		})
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
		},
		Skipped: []string{targetCaddy},
	}
	r.finish()

	var buf bytes.Buffer
	writeTable(&buf, r)
	table := buf.String()
	for _, want := range []string{"req/s", "40000", "3.50", "30.0", "caddy", "n/a", "meshgate_traced", "15000", "4.75", "40.0"} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	if !strings.HasSuffix(r.Summary, " meshgate_traced/meshgate=0.75") {
		t.Errorf("summary %q does not end with meshgate_traced/meshgate=0.75", r.Summary)
	}
	// The name column is wide enough for meshgate_traced: every row's
	// req/s column ends at the same offset.
	var ends []int
	for _, line := range strings.Split(table, "\n") {
		if i := strings.Index(line, "000 "); i >= 0 && !strings.HasPrefix(line, "medians") {
			ends = append(ends, i)
		}
	}
	if len(ends) != 3 || ends[0] != ends[1] || ends[1] != ends[2] {
		t.Errorf("req/s column misaligned (offsets %v):\n%s", ends, table)
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
	if back.Summary != r.Summary || len(back.Targets) != 3 {
		t.Errorf("round trip: summary %q, %d targets", back.Summary, len(back.Targets))
	}
	if back.Ratios["meshgate/direct"] == nil || *back.Ratios["meshgate/direct"] != 0.5 {
		t.Errorf("ratios[meshgate/direct] = %v, want 0.5", back.Ratios["meshgate/direct"])
	}
	if back.Ratios[tracedRatioKey] == nil || *back.Ratios[tracedRatioKey] != 0.75 {
		t.Errorf("ratios[%s] = %v, want 0.75", tracedRatioKey, back.Ratios[tracedRatioKey])
	}
	if back.Ratios["meshgate/nginx"] != nil {
		t.Errorf("ratios[meshgate/nginx] = %v, want null", *back.Ratios["meshgate/nginx"])
	}
}
