//go:build !unix

package proxy

import "net"

// idleProbe is a no-op where there is no non-blocking read(2) to probe
// with: a connection the upstream closed while idle is then caught by the
// stale-connection retry of roundTrip alone.
type idleProbe struct{}

func (p *idleProbe) init(net.Conn) {}

func (p *idleProbe) clean() bool { return true }
