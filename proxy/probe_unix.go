//go:build unix

package proxy

import (
	"net"
	"syscall"
)

// idleProbe tells whether a pooled connection is still as it was left: the
// upstream has sent nothing on it and not closed it since its last
// response. It costs one non-blocking read(2): no timer, no goroutine.
type idleProbe struct {
	raw   syscall.RawConn
	read  func(fd uintptr) bool // bound once per connection, so a probe does not allocate
	n     int
	errno error
	b     [1]byte
}

// init prepares the probe of nc; connections that expose no file
// descriptor are never probed.
func (p *idleProbe) init(nc net.Conn) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return
	}
	p.raw, p.read = raw, p.readOnce
}

func (p *idleProbe) readOnce(fd uintptr) bool {
	p.n, p.errno = syscall.Read(int(fd), p.b[:])
	return true // never wait for the socket to become readable
}

// clean reports whether nothing is waiting to be read on the connection:
// no byte and no end of stream. A connection that is not clean is never
// reused; a byte the probe consumed does not matter.
func (p *idleProbe) clean() bool {
	if p.raw == nil {
		return true
	}
	if err := p.raw.Read(p.read); err != nil {
		return false
	}
	return p.errno == syscall.EAGAIN || p.errno == syscall.EWOULDBLOCK
}
