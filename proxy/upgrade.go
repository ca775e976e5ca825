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

// upgradeTracker keeps the connections that left net/http through a
// protocol upgrade (WebSocket): http.Server.Shutdown does not see hijacked
// connections, so the gateway waits for them and closes them itself.
type upgradeTracker struct {
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func (t *upgradeTracker) add(c net.Conn) {
	t.mu.Lock()
	if t.conns == nil {
		t.conns = make(map[net.Conn]struct{})
	}
	t.conns[c] = struct{}{}
	t.wg.Add(1)
	t.mu.Unlock()
}

func (t *upgradeTracker) done(c net.Conn) {
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
	t.wg.Done()
}

// Len returns how many upgraded connections are open.
func (t *upgradeTracker) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.conns)
}

// WaitUpgraded waits until every upgraded connection (WebSocket) has ended
// or ctx is done; then it closes those still open and returns ctx's error.
func (g *Gateway) WaitUpgraded(ctx context.Context) error {
	done := make(chan struct{})
	go func() { g.upgrades.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		g.upgrades.mu.Lock()
		for c := range g.upgrades.conns {
			c.Close()
		}
		g.upgrades.mu.Unlock()
		<-done
		return ctx.Err()
	}
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
	g.upgrades.add(conn)
	defer g.upgrades.done(conn)
	defer conn.Close()
	defer backConn.Close()
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
