package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// defaultClockTicks is USER_HZ on every Linux architecture Go supports; it
// is used when `getconf CLK_TCK` cannot be run.
const defaultClockTicks = 100

// procStat is the part of /proc/PID/stat the benchmark needs. CPU times are
// in clock ticks (see clockTicks).
type procStat struct {
	PID   int
	PPID  int
	UTime uint64 // field 14: user-mode CPU time
	STime uint64 // field 15: kernel-mode CPU time
}

// CPU is user plus system time in clock ticks.
func (s procStat) CPU() uint64 { return s.UTime + s.STime }

// parseStat parses the contents of /proc/PID/stat (proc(5)). The command
// name, field 2, is in parentheses and may itself contain spaces and
// parentheses, so the remaining fields are counted from the LAST ')'.
func parseStat(b []byte) (procStat, error) {
	var st procStat
	open := bytes.IndexByte(b, '(')
	end := bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return st, errors.New("parsing stat: no (comm) field")
	}
	pid, err := strconv.Atoi(string(bytes.TrimSpace(b[:open])))
	if err != nil {
		return st, fmt.Errorf("parsing stat: pid: %w", err)
	}
	st.PID = pid
	// rest[0] is field 3 (state), so field N is rest[N-3].
	rest := strings.Fields(string(b[end+1:]))
	if len(rest) < 13 {
		return st, fmt.Errorf("parsing stat: %d fields after comm, want at least 13", len(rest))
	}
	if st.PPID, err = strconv.Atoi(rest[4-3]); err != nil {
		return st, fmt.Errorf("parsing stat: ppid: %w", err)
	}
	if st.UTime, err = strconv.ParseUint(rest[14-3], 10, 64); err != nil {
		return st, fmt.Errorf("parsing stat: utime: %w", err)
	}
	if st.STime, err = strconv.ParseUint(rest[15-3], 10, 64); err != nil {
		return st, fmt.Errorf("parsing stat: stime: %w", err)
	}
	return st, nil
}

// readStat reads /proc/PID/stat.
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return procStat{}, fmt.Errorf("reading CPU time of pid %d: %w", pid, err)
	}
	st, err := parseStat(b)
	if err != nil {
		return st, fmt.Errorf("pid %d: %w", pid, err)
	}
	return st, nil
}

// parseStatusKB returns the value in KiB of a "Key:   1234 kB" line of
// /proc/PID/status, such as VmHWM (peak resident set size) or VmRSS.
func parseStatusKB(b []byte, key string) (int64, error) {
	prefix := key + ":"
	for line := range strings.Lines(string(b)) {
		v, ok := strings.CutPrefix(line, prefix)
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("parsing status: %s: unexpected value %q", key, strings.TrimSpace(v))
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parsing status: %s: %w", key, err)
		}
		return n, nil
	}
	return 0, fmt.Errorf("parsing status: no %s line", key)
}

// readPeakRSS returns VmHWM of pid in KiB: the highest resident set size
// the process has had since it started.
func readPeakRSS(pid int) (int64, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, fmt.Errorf("reading peak RSS of pid %d: %w", pid, err)
	}
	kb, err := parseStatusKB(b, "VmHWM")
	if err != nil {
		return 0, fmt.Errorf("pid %d: %w", pid, err)
	}
	return kb, nil
}

// cpuTicks sums utime+stime over pids.
func cpuTicks(pids []int) (uint64, error) {
	var sum uint64
	for _, pid := range pids {
		st, err := readStat(pid)
		if err != nil {
			return 0, err
		}
		sum += st.CPU()
	}
	return sum, nil
}

// peakRSS sums VmHWM over pids, in KiB.
func peakRSS(pids []int) (int64, error) {
	var sum int64
	for _, pid := range pids {
		kb, err := readPeakRSS(pid)
		if err != nil {
			return 0, err
		}
		sum += kb
	}
	return sum, nil
}

// childPIDs lists the processes whose parent is ppid, by scanning /proc
// (/proc/PID/task/TID/children needs CONFIG_PROC_CHILDREN and only covers
// one thread). It finds nginx's worker processes under its master.
func childPIDs(ppid int) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("listing processes: %w", err)
	}
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readStat(pid)
		if err != nil {
			continue // exited while we looked
		}
		if st.PPID == ppid {
			out = append(out, pid)
		}
	}
	return out, nil
}

// clockTicks returns the kernel's USER_HZ, the unit of utime and stime, from
// `getconf CLK_TCK`, or 100 (its value on all common Linux builds) when
// getconf is unavailable.
func clockTicks(ctx context.Context) (int64, error) {
	out, err := exec.CommandContext(ctx, "getconf", "CLK_TCK").Output()
	if err != nil {
		return defaultClockTicks, fmt.Errorf("running getconf CLK_TCK (assuming %d): %w", defaultClockTicks, err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil || n <= 0 {
		return defaultClockTicks, fmt.Errorf("parsing getconf CLK_TCK output %q (assuming %d)", out, defaultClockTicks)
	}
	return n, nil
}

// parseCPUList parses a kernel CPU list such as "0-3,8,10-11" (the format of
// Cpus_allowed_list in /proc/PID/status and of taskset -c) into CPU
// numbers in the order given.
func parseCPUList(list string) ([]int, error) {
	var cpus []int
	for part := range strings.SplitSeq(strings.TrimSpace(list), ",") {
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		first, err := strconv.Atoi(lo)
		if err != nil || first < 0 {
			return nil, fmt.Errorf("parsing CPU list %q: bad CPU %q", list, lo)
		}
		last := first
		if isRange {
			if last, err = strconv.Atoi(hi); err != nil || last < first {
				return nil, fmt.Errorf("parsing CPU list %q: bad range %q", list, part)
			}
		}
		for c := first; c <= last; c++ {
			cpus = append(cpus, c)
		}
	}
	if len(cpus) == 0 {
		return nil, fmt.Errorf("parsing CPU list %q: empty", list)
	}
	return cpus, nil
}

// allowedCPUs lists the CPUs this process may run on (its affinity mask, as
// narrowed by taskset or a cgroup cpuset), from /proc/self/status.
func allowedCPUs() ([]int, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil, fmt.Errorf("reading allowed CPUs: %w", err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
			return parseCPUList(v)
		}
	}
	return nil, errors.New("reading allowed CPUs: no Cpus_allowed_list in /proc/self/status")
}
