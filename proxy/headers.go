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

// forwardedFor sets X-Forwarded-For, -Proto and -Host on the outbound
// header out for a request received from remoteAddr.
//
// With trustedHops 0 the client's own X-Forwarded-* headers are discarded,
// and so is its Forwarded header (RFC 7239), as httputil.ReverseProxy's
// Rewrite does: a client could otherwise claim any address. With
// trustedHops N > 0 the N proxies in front of meshgate are trusted to have
// set them, so the received chain is kept and the peer's address is
// appended, the received X-Forwarded-Proto and -Host are kept when
// present, and Forwarded passes through.
func forwardedFor(out http.Header, remoteAddr, host string, tls bool, trustedHops int) {
	ip := remoteIP(remoteAddr)
	proto := "http"
	if tls {
		proto = "https"
	}
	if trustedHops == 0 {
		delete(out, "Forwarded")
		out["X-Forwarded-For"] = []string{ip}
		out["X-Forwarded-Proto"] = []string{proto}
		out["X-Forwarded-Host"] = []string{host}
		return
	}
	if prior := out["X-Forwarded-For"]; len(prior) > 0 {
		out["X-Forwarded-For"] = []string{strings.Join(prior, ", ") + ", " + ip}
	} else {
		out["X-Forwarded-For"] = []string{ip}
	}
	if len(out["X-Forwarded-Proto"]) == 0 {
		out["X-Forwarded-Proto"] = []string{proto}
	}
	if len(out["X-Forwarded-Host"]) == 0 {
		out["X-Forwarded-Host"] = []string{host}
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
