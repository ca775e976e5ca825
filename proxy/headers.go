package proxy

import (
	"net"
	"net/http"
	"net/textproto"
	"strings"
)

// hopHeaders are the hop-by-hop headers of RFC 9110 §7.6.1 plus the
// historical ones httputil.ReverseProxy also drops. They describe one
// connection and are never forwarded.
var hopHeaders = [...]string{
	"Connection",
	"Proxy-Connection", // non-standard, sent by old clients
	"Keep-Alive",
	"Proxy-Authenticate",
	"Proxy-Authorization",
	"Te", // canonical form of "TE"
	"Trailer",
	"Transfer-Encoding",
	"Upgrade",
}

// removeHopHeaders deletes the hop-by-hop headers from h, including every
// header named in Connection (RFC 9110 §7.6.1). It does not allocate when
// Connection lists nothing.
func removeHopHeaders(h http.Header) {
	for _, v := range h["Connection"] {
		for len(v) > 0 {
			var name string
			name, v, _ = strings.Cut(v, ",")
			if name = textproto.TrimString(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range hopHeaders {
		delete(h, name)
	}
}

// upgradeType returns the protocol a request or response asks to switch
// to (RFC 9110 §7.8), or "" when Connection does not carry "upgrade".
func upgradeType(h http.Header) string {
	if !headerHasToken(h, "Connection", "upgrade") {
		return ""
	}
	return h.Get("Upgrade")
}

// requestedUpgrade returns the Upgrade value of a request that asks to
// switch to WebSocket (RFC 6455), the one protocol meshgate tunnels, or "".
//
// Any other upgrade is refused by forwarding the request as an ordinary
// one, without its upgrade headers (hop-by-hop, so dropped anyway): a
// tunnel for h2c, say, would carry every request that follows on the
// connection to the upstream unrouted.
func requestedUpgrade(h http.Header) string {
	up := upgradeType(h)
	if up == "" || !strings.EqualFold(textproto.TrimString(up), "websocket") {
		return ""
	}
	return up
}

// headerHasToken reports whether the comma-separated header contains token,
// case-insensitively.
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h[name] {
		for len(v) > 0 {
			var t string
			t, v, _ = strings.Cut(v, ",")
			if strings.EqualFold(textproto.TrimString(t), token) {
				return true
			}
		}
	}
	return false
}

// forwarded is what the X-Forwarded-* headers of an upstream request say,
// decided once for both forwarding paths.
//
// With trustedHops 0 the client's own X-Forwarded-* (and Forwarded)
// headers are discarded: a client could otherwise claim any address. With
// trustedHops N > 0 the N proxies in front of meshgate are trusted to have
// set them, so the received chain is kept and the peer's address is
// appended, and the received X-Forwarded-Proto and -Host are kept when
// present.
type forwarded struct {
	prior     []string // the X-Forwarded-For values kept, before ip
	ip        string   // the peer's address
	proto     string   // X-Forwarded-Proto to set, "" to keep the received one
	host      string   // X-Forwarded-Host to set, "" to keep the received one
	dropOwned bool     // the client's X-Forwarded-* and Forwarded go
}

func forwardedOf(r *http.Request, trustedHops int) forwarded {
	f := forwarded{ip: remoteIP(r.RemoteAddr), proto: "http", host: r.Host, dropOwned: trustedHops == 0}
	if r.TLS != nil {
		f.proto = "https"
	}
	if trustedHops > 0 {
		f.prior = r.Header["X-Forwarded-For"]
		if len(r.Header["X-Forwarded-Proto"]) > 0 {
			f.proto = ""
		}
		if len(r.Header["X-Forwarded-Host"]) > 0 {
			f.host = ""
		}
	}
	return f
}

// setOn applies f to an outbound header that was copied from the client's.
func (f forwarded) setOn(out http.Header) {
	if f.dropOwned {
		delete(out, "Forwarded")
	}
	if len(f.prior) > 0 {
		out["X-Forwarded-For"] = []string{strings.Join(f.prior, ", ") + ", " + f.ip}
	} else {
		out["X-Forwarded-For"] = []string{f.ip}
	}
	if f.proto != "" {
		out["X-Forwarded-Proto"] = []string{f.proto}
	}
	if f.host != "" {
		out["X-Forwarded-Host"] = []string{f.host}
	}
}

// ClientIP returns the address of the client as seen through trustedHops
// trusted proxies: the peer address with no trusted hops, else the entry
// trustedHops places from the right of X-Forwarded-For (the chain the last
// trusted proxy received). Entries a client forged further left are never
// returned. It falls back to the leftmost entry when the chain is shorter.
func ClientIP(h http.Header, remoteAddr string, trustedHops int) string {
	peer := remoteIP(remoteAddr)
	if trustedHops <= 0 {
		return peer
	}
	var chain []string
	for _, v := range h["X-Forwarded-For"] {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				chain = append(chain, p)
			}
		}
	}
	if len(chain) == 0 {
		return peer
	}
	i := len(chain) - trustedHops
	if i < 0 {
		i = 0
	}
	return chain[i]
}

// remoteIP strips the port from an http.Request.RemoteAddr.
func remoteIP(remoteAddr string) string {
	if host, _, err := net.SplitHostPort(remoteAddr); err == nil {
		return host
	}
	return remoteAddr
}
