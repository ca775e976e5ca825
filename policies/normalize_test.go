package policies

import (
	"errors"
	"net/url"
	"strings"
	"testing"
)

func TestNormalizePath(t *testing.T) {
	t.Parallel()
	const rej, dec = EscapedSlashesReject, EscapedSlashesDecode
	tests := []struct {
		name    string
		in      string
		slashes string
		noMerge bool
		want    string
		err     error
	}{
		{name: "clean", in: "/a/b", want: "/a/b"},
		{name: "root", in: "/", want: "/"},
		{name: "empty", in: "", want: "/"},
		{name: "relative", in: "a/b", want: "/a/b"},
		{name: "dotdot escapes the prefix", in: "/public/../admin", want: "/admin"},
		{name: "double slash", in: "//admin", want: "/admin"},
		{name: "double slash kept without merge", in: "//admin", noMerge: true, want: "//admin"},
		{name: "many slashes", in: "/a///b////", want: "/a/b/"},
		{name: "encoded slash rejected", in: "/admin%2F..", slashes: rej, err: ErrPathEscapedSlash},
		{name: "encoded slash decoded", in: "/admin%2F..", slashes: dec, want: "/"},
		{name: "lower-case encoded slash rejected", in: "/a%2fb", slashes: rej, err: ErrPathEscapedSlash},
		{name: "lower-case encoded slash decoded", in: "/a%2fb", slashes: dec, want: "/a/b"},
		{name: "encoded backslash rejected", in: "/a%5Cb", slashes: rej, err: ErrPathEscapedSlash},
		{name: "encoded backslash decoded", in: "/a%5c..%5cb", slashes: dec, want: "/b"},
		{name: "raw backslash rejected", in: `/a\b`, slashes: rej, err: ErrPathEscapedSlash},
		{name: "raw backslash decoded", in: `\a\..\b`, slashes: dec, want: "/b"},
		{name: "unknown policy rejects", in: "/a%2Fb", slashes: "maybe", err: ErrPathEscapedSlash},
		{name: "encoded dots", in: "/admin/%2e%2e/x", want: "/x"},
		{name: "mixed encoded dots", in: "/a/.%2E/b", want: "/b"},
		{name: "encoded single dot", in: "/a/%2E/b", want: "/a/b"},
		{name: "dot keeps trailing slash", in: "/a/./b/", want: "/a/b/"},
		{name: "trailing dot", in: "/a/.", want: "/a/"},
		{name: "case-sensitive", in: "/ADMIN", want: "/ADMIN"},
		{name: "unreserved decoded", in: "/%41dmin", want: "/Admin"},
		{name: "unreserved decoded lower hex", in: "/%7e%5f%2d", want: "/~_-"},
		{name: "reserved kept, hex upper-cased", in: "/a%3fb%c3%a9", want: "/a%3Fb%C3%A9"},
		{name: "percent kept", in: "/100%25", want: "/100%25"},
		{name: "double encoding not decoded twice", in: "/%252e%252e/x", want: "/%252e%252e/x"},
		{name: "dotdot at root", in: "/..", want: "/"},
		{name: "dotdot above root", in: "/../../a", want: "/a"},
		{name: "dotdot at end", in: "/a/b/..", want: "/a/"},
		{name: "dotdot then merge", in: "/a//..", want: "/"},
		{name: "dotdot over empty segment without merge", in: "/a//..", noMerge: true, want: "/a/"},
		{name: "dot names are not dot segments", in: "/.well-known/a..b/...", want: "/.well-known/a..b/..."},
		{name: "invalid escape", in: "/a%zz", err: ErrPathEscape},
		{name: "truncated escape", in: "/a%", err: ErrPathEscape},
		{name: "one hex digit", in: "/a%4", err: ErrPathEscape},
		{name: "encoded NUL", in: "/a%00b", err: ErrPathControl},
		{name: "dot-dot with a path parameter", in: "/public/..;/admin", err: ErrPathDotParam},
		{name: "dot with a path parameter", in: "/.;x/admin", err: ErrPathDotParam},
		{name: "encoded dot-dot with a path parameter", in: "/public/%2e%2e;jsessionid=1/admin", err: ErrPathDotParam},
		{name: "parameter on a normal segment is data", in: "/a;v=1/b", want: "/a;v=1/b"},
		{name: "encoded newline", in: "/a%0Ab", err: ErrPathControl},
		{name: "encoded DEL", in: "/a%7f", err: ErrPathControl},
		{name: "raw NUL", in: "/a\x00b", err: ErrPathControl},
		{name: "raw tab", in: "/a\tb", err: ErrPathControl},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			slashes := tt.slashes
			if slashes == "" {
				slashes = rej
			}
			got, err := NormalizePath(tt.in, slashes, !tt.noMerge)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("NormalizePath(%q) = %q, %v; want error %v", tt.in, got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("NormalizePath(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
			again, err := NormalizePath(got, slashes, !tt.noMerge)
			if err != nil || again != got {
				t.Fatalf("not idempotent: NormalizePath(%q) = %q, %v", got, again, err)
			}
		})
	}
}

// TestNormalizePathErrorMessages pins the messages the gateway sends
// with its 400.
func TestNormalizePathErrorMessages(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"/%zz":   "invalid percent-encoding in path",
		"/a%2Fb": "encoded slash in path is not allowed",
		"/%00":   "control character in path",
	} {
		if _, err := NormalizePath(in, EscapedSlashesReject, true); err == nil || err.Error() != want {
			t.Errorf("NormalizePath(%q) error = %v; want %q", in, err, want)
		}
	}
}

func TestSetNormalizedPath(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ in, path, raw, escaped string }{
		{in: "/a/b", path: "/a/b", raw: "", escaped: "/a/b"},
		{in: "/a%3Fb/%C3%A9", path: "/a?b/é", raw: "/a%3Fb/%C3%A9", escaped: "/a%3Fb/%C3%A9"},
		{in: "/100%25", path: "/100%", raw: "/100%25", escaped: "/100%25"},
	} {
		u, _ := url.Parse("http://x/old%2Fpath")
		SetNormalizedPath(u, tt.in)
		if u.Path != tt.path || u.RawPath != tt.raw || u.EscapedPath() != tt.escaped {
			t.Errorf("SetNormalizedPath(%q): Path %q RawPath %q EscapedPath %q; want %q %q %q",
				tt.in, u.Path, u.RawPath, u.EscapedPath(), tt.path, tt.raw, tt.escaped)
		}
	}
}

// TestNormalizePathProperties checks the normal form's properties on
// paths built from the pieces attackers combine.
func TestNormalizePathProperties(t *testing.T) {
	t.Parallel()
	pieces := []string{"/", "//", ".", "..", "%2e", "%2E%2e", "a", "%41", "%2F", "%5c", `\`, "%3f", "%c3%a9", "~", "%7E"}
	var paths []string
	var build func(prefix string, depth int)
	build = func(prefix string, depth int) {
		paths = append(paths, prefix)
		if depth == 0 {
			return
		}
		for _, p := range pieces {
			build(prefix+p, depth-1)
		}
	}
	build("", 4)
	for _, p := range paths {
		for _, slashes := range []string{EscapedSlashesReject, EscapedSlashesDecode} {
			for _, merge := range []bool{true, false} {
				normCheckProperties(t, p, slashes, merge)
			}
		}
	}
}

// normCheckProperties fails t when the normal form of p breaks one of
// NormalizePath's promises.
func normCheckProperties(t *testing.T, p, slashes string, merge bool) {
	t.Helper()
	n, err := NormalizePath(p, slashes, merge)
	if err != nil {
		if n != "" {
			t.Fatalf("NormalizePath(%q) returned %q with error %v", p, n, err)
		}
		return
	}
	if !strings.HasPrefix(n, "/") {
		t.Fatalf("NormalizePath(%q) = %q: not absolute", p, n)
	}
	for _, seg := range strings.Split(n[1:], "/") {
		if seg == "." || seg == ".." {
			t.Fatalf("NormalizePath(%q) = %q: has a dot segment", p, n)
		}
	}
	if merge && strings.Contains(n, "//") {
		t.Fatalf("NormalizePath(%q) = %q: has //", p, n)
	}
	if strings.Contains(n, `\`) {
		t.Fatalf("NormalizePath(%q) = %q: has a backslash", p, n)
	}
	up := strings.ToUpper(n)
	if strings.Contains(up, "%2F") || strings.Contains(up, "%5C") || strings.Contains(up, "%2E") {
		t.Fatalf("NormalizePath(%q) = %q: has an encoded slash or dot", p, n)
	}
	again, err := NormalizePath(n, slashes, merge)
	if err != nil || again != n {
		t.Fatalf("not idempotent: NormalizePath(%q) = %q, NormalizePath(%q) = %q, %v", p, n, n, again, err)
	}
	// The decoded path has no dot segments either: what a backend
	// reads is what routing, authz and rate limits saw.
	dec, err := url.PathUnescape(n)
	if err != nil {
		t.Fatalf("NormalizePath(%q) = %q, which does not unescape: %v", p, n, err)
	}
	for _, seg := range strings.Split(dec[1:], "/") {
		if seg == "." || seg == ".." {
			t.Fatalf("NormalizePath(%q) = %q: decodes to %q with a dot segment", p, n, dec)
		}
	}
}

func FuzzNormalizePath(f *testing.F) {
	for _, s := range []string{
		"/public/../admin", "//admin", "/admin%2F..", "/admin/%2e%2e/x", "/a/./b/", "/ADMIN", "/%41dmin",
		"/a%2fb", "/..", "/a/b/..", `\..\a`, "/%zz", "/%", "/a%00", "/%c3%a9/%3F", "", "a/../../b",
	} {
		f.Add(s, false, true)
		f.Add(s, true, false)
	}
	f.Fuzz(func(t *testing.T, p string, decode, merge bool) {
		slashes := EscapedSlashesReject
		if decode {
			slashes = EscapedSlashesDecode
		}
		normCheckProperties(t, p, slashes, merge)
	})
}

func TestNormalizePathNoAllocs(t *testing.T) {
	for _, p := range []string{"/api/v1/orders/42", "/caf%C3%A9/a%3Fb", "/.well-known/x", "/a/b/"} {
		allocs := testing.AllocsPerRun(100, func() {
			if n, err := NormalizePath(p, EscapedSlashesReject, true); err != nil || n != p {
				t.Fatalf("NormalizePath(%q) = %q, %v", p, n, err)
			}
		})
		if allocs != 0 {
			t.Errorf("NormalizePath(%q) allocates %v times; want 0 on a normal path", p, allocs)
		}
	}
}

func BenchmarkNormalizePath(b *testing.B) {
	for _, bc := range []struct{ name, path string }{
		{"clean", "/api/v1/orders/42/items"},
		{"dirty", "/api/v1/../v1//orders/%34%32/./items"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := NormalizePath(bc.path, EscapedSlashesReject, true); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
