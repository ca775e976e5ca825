package main

import (
	"context"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"testing"
	"time"
)

func TestParseStatSelf(t *testing.T) {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	st, err := parseStat(b)
	if err != nil {
		t.Fatalf("parseStat(/proc/self/stat): %v", err)
	}
	if st.PID != os.Getpid() {
		t.Errorf("pid = %d, want %d", st.PID, os.Getpid())
	}
	if st.PPID != os.Getppid() {
		t.Errorf("ppid = %d, want %d", st.PPID, os.Getppid())
	}

	// Burn CPU until the tick counter moves: readStat must see it.
	before := st.CPU()
	deadline := time.Now().Add(5 * time.Second)
	x := 0
	for time.Now().Before(deadline) {
		for i := range 1_000_000 {
			x += i
		}
		now, err := readStat(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if now.CPU() > before {
			return
		}
	}
	t.Errorf("utime+stime stayed at %d ticks after 5s of work (x=%d)", before, x)
}

func TestParseStat(t *testing.T) {
	t.Parallel()
	// Field layout of proc(5): pid (comm) state ppid pgrp session tty_nr
	// tpgid flags minflt cminflt majflt cmajflt utime stime cutime ...
	tail := " S 42 7 7 0 -1 4194560 100 0 0 0 1234 567 8 9 20 0 3 0 100 1000 200"
	tests := map[string]struct {
		in      string
		want    procStat
		wantErr bool
	}{
		"plain": {
			in:   "7 (nginx)" + tail,
			want: procStat{PID: 7, PPID: 42, UTime: 1234, STime: 567},
		},
		"comm with spaces and parentheses": {
			in:   "7 (a) b (c) d)" + tail,
			want: procStat{PID: 7, PPID: 42, UTime: 1234, STime: 567},
		},
		"no comm":         {in: "7 nginx" + tail, wantErr: true},
		"too few fields":  {in: "7 (nginx) S 42 7 7", wantErr: true},
		"bad pid":         {in: "x (nginx)" + tail, wantErr: true},
		"bad utime":       {in: "7 (nginx) S 42 7 7 0 -1 4194560 100 0 0 0 x 567 8", wantErr: true},
		"empty":           {in: "", wantErr: true},
		"only paren open": {in: "7 (nginx S 42", wantErr: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := parseStat([]byte(tc.in))
			if (err != nil) != tc.wantErr {
				t.Fatalf("parseStat error = %v, wantErr %v", err, tc.wantErr)
			}
			if !tc.wantErr && got != tc.want {
				t.Errorf("parseStat = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestParseStatusSelf(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	hwm, err := parseStatusKB(b, "VmHWM")
	if err != nil {
		t.Fatalf("VmHWM: %v", err)
	}
	rss, err := parseStatusKB(b, "VmRSS")
	if err != nil {
		t.Fatalf("VmRSS: %v", err)
	}
	if rss <= 0 || hwm < rss {
		t.Errorf("VmHWM = %d kB, VmRSS = %d kB: want 0 < VmRSS <= VmHWM", hwm, rss)
	}
	if _, err := parseStatusKB(b, "VmNoSuchThing"); err == nil {
		t.Error("missing key: want an error")
	}
	if _, err := parseStatusKB([]byte("VmHWM:\t  12 MB\n"), "VmHWM"); err == nil {
		t.Error("unit other than kB: want an error")
	}
	got, err := readPeakRSS(os.Getpid())
	if err != nil || got <= 0 {
		t.Errorf("readPeakRSS(self) = %d, %v; want > 0", got, err)
	}
}

func TestChildPIDs(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, "sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Skipf("cannot start sleep: %v", err)
	}
	defer func() {
		cancel()
		_ = cmd.Wait()
	}()
	kids, err := childPIDs(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(kids, cmd.Process.Pid) {
		t.Errorf("childPIDs(self) = %v, want it to contain %d", kids, cmd.Process.Pid)
	}
	if _, err := cpuTicks([]int{os.Getpid(), cmd.Process.Pid}); err != nil {
		t.Errorf("cpuTicks: %v", err)
	}
	if _, err := cpuTicks([]int{-1}); err == nil {
		t.Error("cpuTicks of a missing process: want an error")
	}
}

func TestClockTicks(t *testing.T) {
	t.Parallel()
	n, err := clockTicks(context.Background())
	if err != nil {
		t.Skipf("getconf unavailable: %v", err)
	}
	if n <= 0 || n > 10000 {
		t.Errorf("clockTicks = %d, want a plausible USER_HZ", n)
	}
}

func FuzzParseStat(f *testing.F) {
	if b, err := os.ReadFile("/proc/self/stat"); err == nil {
		f.Add(b)
	}
	f.Add([]byte("7 (a) b) S 42 7 7 0 -1 4194560 100 0 0 0 1234 567 8 9"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = parseStat(b) // must not panic
	})
}

func TestParseCPUList(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		in      string
		want    []int
		wantErr bool
	}{
		"range":              {in: "0-1\n", want: []int{0, 1}},
		"single":             {in: "3", want: []int{3}},
		"mixed":              {in: "2,4-6,9", want: []int{2, 4, 5, 6, 9}},
		"empty":              {in: " ", wantErr: true},
		"reversed range":     {in: "3-1", wantErr: true},
		"not a number":       {in: "a-b", wantErr: true},
		"negative":           {in: "-1", wantErr: true},
		"trailing separator": {in: "0,1,", want: []int{0, 1}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := parseCPUList(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("parseCPUList(%q) error = %v, wantErr %v", tc.in, err, tc.wantErr)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("parseCPUList(%q) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}

func TestAllowedCPUs(t *testing.T) {
	t.Parallel()
	cpus, err := allowedCPUs()
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	// The affinity mask never allows more CPUs than exist, and Go sizes
	// NumCPU from the same mask.
	if len(cpus) != runtime.NumCPU() {
		t.Errorf("allowedCPUs = %v, runtime.NumCPU = %d", cpus, runtime.NumCPU())
	}
}
