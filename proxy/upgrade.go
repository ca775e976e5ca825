package proxy

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// upgradeTracker follows WebSocket upgrades from the moment their request
// is routed until their tunnel closes. http.Server.Shutdown stops seeing a
// connection once it is hijacked, so the gateway waits for upgrades itself
// and closes their connections when the grace period runs out.
type upgradeTracker struct {
	mu       sync.Mutex
	conns    map[net.Conn]struct{} // hijacked client connections
	active   int                   // upgrade requests not yet ended
	draining bool                  // WaitUpgraded began: new upgrades are refused
	closing  bool                  // the grace period ran out: tunnels close at once
	idle     chan struct{}         // closed when active drops to 0 while draining
}

// begin counts an upgrade request. It reports false once shutdown has
// begun: the request is then refused, since a tunnel that opened later
// would escape it.
func (t *upgradeTracker) begin() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.draining {
		return false
	}
	t.active++
	return true
}

// end marks the end of an upgrade request counted by begin.
func (t *upgradeTracker) end() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.active--
	if t.active == 0 && t.idle != nil {
		close(t.idle)
		t.idle = nil
	}
}

// add tracks a hijacked connection. It reports false when the grace
// period has run out already: the caller closes the connection.
func (t *upgradeTracker) add(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closing {
		return false
	}
	if t.conns == nil {
		t.conns = make(map[net.Conn]struct{})
	}
	t.conns[c] = struct{}{}
	return true
}

func (t *upgradeTracker) remove(c net.Conn) {
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
}

// Len returns how many upgraded connections are open.
func (t *upgradeTracker) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.conns)
}

// WaitUpgraded waits until every upgrade (WebSocket) has ended, those still
// waiting for the upstream's agreement included, or ctx is done; then it
// closes the connections still open and returns ctx's error. From the call
// on, new upgrade requests are refused with 503.
func (g *Gateway) WaitUpgraded(ctx context.Context) error {
	t := &g.upgrades
	t.mu.Lock()
	t.draining = true
	if t.active == 0 {
		t.mu.Unlock()
		return nil
	}
	if t.idle == nil {
		t.idle = make(chan struct{})
	}
	idle := t.idle
	t.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
	}
	t.mu.Lock()
	t.closing = true
	for c := range t.conns {
		c.Close()
	}
	t.mu.Unlock()
	<-idle
	return ctx.Err()
}

// serveUpgrade completes a protocol switch: it checks the upstream agreed
// to the protocol the client asked for, hijacks the client connection,
// relays the 101 response and then copies bytes both ways until either
// side closes.
func (g *Gateway) serveUpgrade(w http.ResponseWriter, r *http.Request, res *http.Response, reqUpgrade string) int {
	resUpgrade := upgradeType(res.Header)
	backConn, ok := res.Body.(io.ReadWriteCloser)
	if reqUpgrade == "" || !strings.EqualFold(reqUpgrade, resUpgrade) || !ok {
		res.Body.Close()
		g.log.Warn("upstream switched protocols unexpectedly", "requested", reqUpgrade, "got", resUpgrade)
		writeError(w, http.StatusBadGateway, msgUpgradeFailed)
		return http.StatusBadGateway
	}
	rc := http.NewResponseController(w)
	conn, brw, err := rc.Hijack()
	if err != nil {
		// HTTP/2 clients cannot be hijacked; extended CONNECT is not offered.
		backConn.Close()
		writeError(w, http.StatusBadGateway, msgUpgradeFailed)
		return http.StatusBadGateway
	}
	defer conn.Close()
	defer backConn.Close()
	if !g.upgrades.add(conn) {
		// Shutdown's grace period ran out while the upstream was agreeing:
		// the tunnel is cut before it opens.
		return http.StatusSwitchingProtocols
	}
	defer g.upgrades.remove(conn)
	// Clear the deadlines the server set for the request: the tunnel lives
	// as long as both ends want it.
	_ = conn.SetDeadline(time.Time{})

	removeHopHeaders(res.Header)
	res.Header["Connection"] = []string{"Upgrade"}
	res.Header["Upgrade"] = []string{resUpgrade}
	res.Body = nil
	if err := res.Write(brw); err != nil {
		return http.StatusSwitchingProtocols
	}
	if err := brw.Flush(); err != nil {
		return http.StatusSwitchingProtocols
	}
	errc := make(chan error, 2)
	go func() {
		// Bytes the client sent after the upgrade request may already sit
		// in the server's read buffer.
		_, err := io.Copy(backConn, brw.Reader)
		errc <- err
	}()
	go func() {
		_, err := io.Copy(conn, backConn)
		errc <- err
	}()
	<-errc
	// One direction ended: close both so the other copy returns too.
	conn.Close()
	backConn.Close()
	<-errc
	return http.StatusSwitchingProtocols
}
