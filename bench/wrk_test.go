package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// The testdata/wrk-*.txt files are real output of wrk 4.1.0 (Debian
// bookworm) run with -t1 --latency against the benchmark backend, the
// gobaseline proxy with one dead upstream (502s), a Python server that
// answers slowly or drops connections, and a closed port.
func TestParseWrk(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		file string
		want wrkResult
	}{
		"healthy backend, microsecond p50": {
			file: "wrk-ok.txt",
			want: wrkResult{
				Requests: 122850, Elapsed: 2 * time.Second, RPS: 61382.06,
				P50: 848 * time.Microsecond, P99: 5350 * time.Microsecond,
			},
		},
		"non-2xx responses": {
			file: "wrk-non2xx.txt",
			want: wrkResult{
				Requests: 13794, Elapsed: time.Second, RPS: 13754.88,
				P50: 4390 * time.Microsecond, P99: 12280 * time.Microsecond,
				Non2xx: 6903,
			},
		},
		"p99 in seconds with trailing blank": {
			file: "wrk-seconds.txt",
			want: wrkResult{
				Requests: 1677, Elapsed: 3 * time.Second, RPS: 558.52,
				P50: 43940 * time.Microsecond, P99: 1320 * time.Millisecond,
			},
		},
		"socket errors": {
			file: "wrk-socket-errors.txt",
			want: wrkResult{
				Requests: 791, Elapsed: 5010 * time.Millisecond, RPS: 157.89,
				P50: 43970 * time.Microsecond, P99: 68070 * time.Microsecond,
				ReadErrors: 89, Timeouts: 8,
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b, err := os.ReadFile(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			got, err := parseWrk(string(b))
			if err != nil {
				t.Fatalf("parseWrk: %v", err)
			}
			if got != tc.want {
				t.Errorf("parseWrk =\n %+v\nwant\n %+v", got, tc.want)
			}
		})
	}
}

func TestParseWrkErrors(t *testing.T) {
	t.Parallel()
	ok, err := os.ReadFile(filepath.Join("testdata", "wrk-ok.txt"))
	if err != nil {
		t.Fatal(err)
	}
	refused, err := os.ReadFile(filepath.Join("testdata", "wrk-refused.txt"))
	if err != nil {
		t.Fatal(err)
	}
	withoutLatency := strings.Join(slices.DeleteFunc(strings.Split(string(ok), "\n"), func(l string) bool {
		return strings.Contains(l, "%") && !strings.Contains(l, "Stdev") && !strings.Contains(l, "Latency") && !strings.Contains(l, "Req/Sec")
	}), "\n")
	tests := map[string]struct {
		out  string
		want string // in the error
	}{
		"connection refused":         {string(refused), "missing Requests/sec, request count, latency distribution"},
		"empty":                      {"", "missing Requests/sec"},
		"run without --latency":      {withoutLatency, "was --latency given?"},
		"bad request count":          {strings.Replace(string(ok), "122850 requests", "12x requests", 1), "request count"},
		"bad latency unit":           {strings.Replace(string(ok), "848.00us", "848.00ns", 1), "50% latency"},
		"bad socket error kind":      {string(ok) + "  Socket errors: connect 0, bogus 1\n", "unknown kind"},
		"truncated socket errors":    {string(ok) + "  Socket errors: connect 0, read\n", "odd field count"},
		"bad Requests/sec":           {strings.Replace(string(ok), "61382.06", "lots", 1), "Requests/sec"},
		"bad non-2xx count":          {string(ok) + "  Non-2xx or 3xx responses: many\n", "non-2xx"},
		"bad run time in count line": {strings.Replace(string(ok), "in 2.00s", "in 2.00parsecs", 1), "run time"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := parseWrk(tc.out)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("parseWrk error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestParseWrkDuration(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		"microseconds":            {in: "620.00us", want: 620 * time.Microsecond},
		"fractional microseconds": {in: "12.34us", want: 12340 * time.Nanosecond},
		"milliseconds":            {in: "1.33ms", want: 1330 * time.Microsecond},
		"seconds":                 {in: "2.00s", want: 2 * time.Second},
		"fractional seconds":      {in: "1.32s", want: 1320 * time.Millisecond},
		"minutes":                 {in: "1.50m", want: 90 * time.Second},
		"hours":                   {in: "2.00h", want: 2 * time.Hour},
		"zero":                    {in: "0.00us", want: 0},
		"no unit":                 {in: "1.33", wantErr: true},
		"unknown unit":            {in: "1.33ns", wantErr: true},
		"no number":               {in: "ms", wantErr: true},
		"negative":                {in: "-1.00ms", wantErr: true},
		"empty":                   {in: "", wantErr: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := parseWrkDuration(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("parseWrkDuration(%q) error = %v, wantErr %v", tc.in, err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("parseWrkDuration(%q) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}

func TestWrkSpecArgs(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		spec wrkSpec
		want []string
	}{
		"pinned": {
			spec: wrkSpec{URL: "http://127.0.0.1:1/", Conns: 64, Duration: 10 * time.Second, CPUList: "0"},
			want: []string{"taskset", "-c", "0", "wrk", "-t1", "-c64", "-d10s", "--latency", "http://127.0.0.1:1/"},
		},
		"unpinned, fraction rounded up": {
			spec: wrkSpec{URL: "http://127.0.0.1:1/", Conns: 8, Duration: 1500 * time.Millisecond},
			want: []string{"wrk", "-t1", "-c8", "-d2s", "--latency", "http://127.0.0.1:1/"},
		},
		"under a second is one second": {
			spec: wrkSpec{URL: "http://127.0.0.1:1/", Conns: 1, Duration: time.Millisecond},
			want: []string{"wrk", "-t1", "-c1", "-d1s", "--latency", "http://127.0.0.1:1/"},
		},
		"headers before the URL, in order": {
			spec: wrkSpec{
				URL: "http://127.0.0.1:1/", Conns: 64, Duration: 10 * time.Second, CPUList: "0",
				Headers: []string{"Authorization: Bearer eyJ.a.b", "X-Bench: 1"},
			},
			want: []string{"taskset", "-c", "0", "wrk", "-t1", "-c64", "-d10s", "--latency",
				"-H", "Authorization: Bearer eyJ.a.b", "-H", "X-Bench: 1", "http://127.0.0.1:1/"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if got := tc.spec.args("wrk"); !slices.Equal(got, tc.want) {
				t.Errorf("args = %q, want %q", got, tc.want)
			}
		})
	}
}

func FuzzParseWrk(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "wrk-*.txt"))
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	f.Fuzz(func(t *testing.T, out string) {
		r, err := parseWrk(out)
		if err != nil {
			return
		}
		if r.P50 < 0 || r.P99 < 0 || r.Elapsed < 0 {
			t.Errorf("negative duration from %q: %+v", out, r)
		}
	})
}

func FuzzParseWrkDuration(f *testing.F) {
	for _, s := range []string{"620.00us", "1.33ms", "2.00s", "1.00m", "1h", "", "us", "-1s", "NaNms", "1e400s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := parseWrkDuration(s)
		if err == nil && d < 0 {
			t.Errorf("parseWrkDuration(%q) = %v, negative", s, d)
		}
	})
}
