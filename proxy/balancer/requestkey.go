package balancer

import (
	"net/http"
	"strings"
)

// cookieValue returns the value of the first cookie called name in h's
// Cookie header lines, without allocating. It reads cookies exactly as
// net/http's Request.Cookie does (RFC 6265 section 4.2.1 syntax,
// `a=b; c="d"`, applied leniently): pairs are separated by ';', pairs and
// names are trimmed of ASCII white space, white space right after '=' is
// part of the value, one pair of double quotes around the whole value is
// removed, and a pair whose value holds a byte RFC 6265 does not allow
// (control bytes, '"', ';', '\\', non-ASCII) is passed over, so a later
// well-formed cookie of the same name still counts. A pair without '=' is
// a cookie with an empty value.
//
// Unlike net/http it does not give up on headers with more than 3000
// cookies (its httpcookiemaxnum GODEBUG limit): that limit bounds the
// cost of building every cookie, which a scan that stops at the first
// match and keeps nothing does not have.
//
// name must be a valid cookie name (an RFC 7230 token).
func cookieValue(h http.Header, name string) (value string, ok bool) {
	for _, line := range h["Cookie"] {
		for line != "" {
			var pair string
			pair, line, _ = strings.Cut(line, ";")
			// Like net/http, trim the pair and the name but not the value
			// apart from its end: in "a= b" the value is " b".
			k, v, _ := strings.Cut(trimSpace(pair), "=")
			if trimSpace(k) != name {
				continue
			}
			if v, ok := parseCookieValue(v); ok {
				return v, true
			}
		}
	}
	return "", false
}

// parseCookieValue strips one pair of surrounding double quotes from raw
// and reports whether what remains is a valid cookie value
// (RFC 6265 section 4.1.1 cookie-octets, plus space and comma, which
// browsers send and net/http accepts).
func parseCookieValue(raw string) (string, bool) {
	if len(raw) > 1 && raw[0] == '"' && raw[len(raw)-1] == '"' {
		raw = raw[1 : len(raw)-1]
	}
	for i := 0; i < len(raw); i++ {
		if b := raw[i]; b < 0x20 || b >= 0x7f || b == '"' || b == ';' || b == '\\' {
			return "", false
		}
	}
	return raw, true
}

// trimSpace removes leading and trailing ASCII white space (space, tab,
// CR, LF), as net/textproto.TrimString does.
func trimSpace(s string) string {
	for len(s) > 0 && isSpace(s[0]) {
		s = s[1:]
	}
	for len(s) > 0 && isSpace(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	return s
}

func isSpace(b byte) bool { return b == ' ' || b == '\t' || b == '\r' || b == '\n' }

// isToken reports whether s is a non-empty RFC 7230 token, the syntax of
// header and cookie names.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTokenByte(s[i]) {
			return false
		}
	}
	return true
}

func isTokenByte(b byte) bool {
	switch {
	case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", b) >= 0
}
