package mesh

import "syscall"

// procAttr puts a child in its own process group and has the kernel send
// it SIGTERM when the supervisor dies.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
