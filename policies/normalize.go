package policies

import (
	"errors"
	"net/url"
	"strings"
)

// Escaped-slash policies of NormalizePath: what an encoded slash (%2F) or
// backslash (%5C, or a raw "\") in a request path means.
const (
	// EscapedSlashesReject refuses such paths: the gateway answers 400.
	// Backends disagree on whether "/a%2Fb" is one segment or two, so a
	// gateway that routes, authorizes and limits on one reading may let
	// the backend act on the other.
	EscapedSlashesReject = "reject"
	// EscapedSlashesDecode reads them as "/" before dot segments are
	// removed, so "/admin%2F.." is "/".
	EscapedSlashesDecode = "decode"
)

// Errors of NormalizePath. Their messages are short enough for the
// gateway to send to the client with its 400.
var (
	// ErrPathEscape is a "%" not followed by two hex digits.
	ErrPathEscape = errors.New("invalid percent-encoding in path")
	// ErrPathEscapedSlash is an encoded slash or backslash under
	// EscapedSlashesReject.
	ErrPathEscapedSlash = errors.New("encoded slash in path is not allowed")
	// ErrPathControl is a NUL or other control character, raw or encoded.
	ErrPathControl = errors.New("control character in path")
	// ErrPathDotParam is a dot segment with a path parameter ("..;x"):
	// servlet containers read it as "..", meshgate cannot route on both
	// readings, so it refuses it.
	ErrPathDotParam = errors.New("path parameter on a dot segment is not allowed")
)

// NormalizePath returns the normal form of a request path, so that
// routing, authorization and rate limits all see one path whatever
// spelling the client chose:
//
//   - path is the escaped form (r.URL.EscapedPath()); so is the result;
//   - percent-encoded unreserved characters (ALPHA DIGIT - . _ ~) are
//     decoded and the hex digits of the other escapes upper-cased (RFC 3986
//     §6.2.2);
//   - an encoded slash or backslash (%2F, %5C, or a raw "\") is an error
//     under EscapedSlashesReject and a "/" under EscapedSlashesDecode (any
//     other value of escapedSlashes is read as EscapedSlashesReject);
//   - dot segments are removed (RFC 3986 §5.2.4), "%2E" included, and ".."
//     above the root stays at the root; a trailing slash is kept;
//   - with mergeSlashes, runs of "/" are one "/";
//   - the result starts with "/";
//   - invalid escapes and control characters (raw or encoded, NUL
//     included) are errors ([ErrPathEscape], [ErrPathControl]).
//
// Paths are case-sensitive: "/ADMIN" stays "/ADMIN". A path already in
// normal form is returned as it is, without allocating.
//
// The gateway puts the result in the request with [SetNormalizedPath].
// NormalizePath is idempotent: a normal path normalises to itself.
func NormalizePath(path, escapedSlashes string, mergeSlashes bool) (string, error) {
	if normIsNormal(path, mergeSlashes) {
		return path, nil
	}
	decode := escapedSlashes == EscapedSlashesDecode
	// Pass 1: escapes, slashes and control characters, into buf.
	buf := make([]byte, 0, len(path)+1)
	if !strings.HasPrefix(path, "/") && !(decode && (strings.HasPrefix(path, `\`) || normHasEscapedSlashAt(path, 0))) {
		buf = append(buf, '/')
	}
	for i := 0; i < len(path); i++ {
		c := path[i]
		switch {
		case c == '%':
			if i+2 >= len(path) || !isHex(path[i+1]) || !isHex(path[i+2]) {
				return "", ErrPathEscape
			}
			b := unhex(path[i+1])<<4 | unhex(path[i+2])
			i += 2
			switch {
			case b < 0x20 || b == 0x7f:
				return "", ErrPathControl
			case b == '/' || b == '\\':
				if !decode {
					return "", ErrPathEscapedSlash
				}
				buf = append(buf, '/')
			case isUnreserved(b):
				buf = append(buf, b)
			default:
				buf = append(buf, '%', upperHex[b>>4], upperHex[b&15])
			}
		case c < 0x20 || c == 0x7f:
			return "", ErrPathControl
		case c == '\\':
			if !decode {
				return "", ErrPathEscapedSlash
			}
			buf = append(buf, '/')
		default:
			buf = append(buf, c)
		}
	}
	if normHasDotParam(buf) {
		return "", ErrPathDotParam
	}
	// Pass 2: dot segments and repeated slashes, in place: the output
	// never runs ahead of the input.
	out := normRemoveDots(buf, mergeSlashes)
	if string(out) == path {
		return path, nil
	}
	return string(out), nil
}

// SetNormalizedPath puts a path NormalizePath returned into u: RawPath is
// the normal form and Path its decoding, so that u.EscapedPath() returns
// the normal form and handlers reading u.Path see the same path. A path
// without escapes is set without allocating.
func SetNormalizedPath(u *url.URL, normalized string) {
	if strings.IndexByte(normalized, '%') < 0 {
		u.Path, u.RawPath = normalized, ""
		return
	}
	p, err := url.PathUnescape(normalized)
	if err != nil {
		// Not a result of NormalizePath; keep it as it came.
		u.Path, u.RawPath = normalized, ""
		return
	}
	u.Path, u.RawPath = p, normalized
}

// normIsNormal reports whether NormalizePath would return path unchanged,
// without allocating: the fast path of every well-behaved request.
func normIsNormal(path string, mergeSlashes bool) bool {
	if len(path) == 0 || path[0] != '/' {
		return false
	}
	for i := 0; i < len(path); i++ {
		c := path[i]
		switch {
		case c < 0x20 || c == 0x7f || c == '\\':
			return false
		case c == '%':
			if i+2 >= len(path) {
				return false
			}
			h, l := path[i+1], path[i+2]
			if !isUpperHex(h) || !isUpperHex(l) {
				return false
			}
			b := unhex(h)<<4 | unhex(l)
			if b < 0x20 || b == 0x7f || b == '/' || b == '\\' || isUnreserved(b) {
				return false
			}
			i += 2
		case c == '/':
			rest := path[i+1:]
			if mergeSlashes && len(rest) > 0 && rest[0] == '/' {
				return false
			}
			if rest == "." || rest == ".." || strings.HasPrefix(rest, "./") || strings.HasPrefix(rest, "../") ||
				strings.HasPrefix(rest, ".;") || strings.HasPrefix(rest, "..;") {
				return false
			}
		}
	}
	return true
}

// normHasDotParam reports whether a segment of p is "." or ".." followed
// by a path parameter (";..."), as in "/public/..;/admin".
func normHasDotParam(p []byte) bool {
	for i := 0; i < len(p); i++ {
		if p[i] != '/' {
			continue
		}
		rest := p[i+1:]
		if len(rest) >= 2 && rest[0] == '.' && rest[1] == ';' ||
			len(rest) >= 3 && rest[0] == '.' && rest[1] == '.' && rest[2] == ';' {
			return true
		}
	}
	return false
}

// normHasEscapedSlashAt reports whether path has "%2F" or "%5C" at i.
func normHasEscapedSlashAt(path string, i int) bool {
	if i+2 >= len(path) || path[i] != '%' {
		return false
	}
	e := strings.ToUpper(path[i+1 : i+3])
	return e == "2F" || e == "5C"
}

// normRemoveDots removes the dot segments of p (which starts with "/")
// and, with merge, its empty segments, in place. Each segment in the
// output is "/" followed by the segment; ".." drops the last one.
func normRemoveDots(p []byte, merge bool) []byte {
	out := p[:0]
	trailing := false
	i := 0
	for i < len(p) {
		// p[i] is '/': the segment runs to the next '/'.
		j := i + 1
		for j < len(p) && p[j] != '/' {
			j++
		}
		seg := p[i+1 : j]
		last := j >= len(p)
		trailing = false
		switch {
		case len(seg) == 1 && seg[0] == '.':
			trailing = last
		case len(seg) == 2 && seg[0] == '.' && seg[1] == '.':
			if k := lastSlash(out); k >= 0 {
				out = out[:k]
			}
			trailing = last
		case len(seg) == 0 && merge:
			trailing = last
		default:
			// Moving left never overwrites unread input: out is
			// always at or before i.
			out = append(out, '/')
			out = append(out, seg...)
		}
		i = j
	}
	if trailing || len(out) == 0 {
		out = append(out, '/')
	}
	return out
}

func lastSlash(b []byte) int {
	for k := len(b) - 1; k >= 0; k-- {
		if b[k] == '/' {
			return k
		}
	}
	return -1
}

// isUnreserved reports whether c is an RFC 3986 unreserved character.
func isUnreserved(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func isUpperHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'A' && c <= 'F' }

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

const upperHex = "0123456789ABCDEF"
