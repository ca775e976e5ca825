//go:build !linux

package mesh

import "syscall"

// procAttr puts a child in its own process group. Outside Linux there is
// no parent-death signal: a supervisor killed with SIGKILL leaves its
// children running.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
