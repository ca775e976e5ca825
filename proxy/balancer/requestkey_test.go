package balancer

import (
	"errors"
	"net/http"
	"strings"
	"testing"
)

var cookieTests = []struct {
	name   string
	lines  []string
	cookie string
	want   string
	ok     bool
}{
	{name: "only cookie", lines: []string{"sid=abc"}, cookie: "sid", want: "abc", ok: true},
	{name: "among others", lines: []string{"a=1; sid=abc; b=2"}, cookie: "sid", want: "abc", ok: true},
	{name: "no space after ;", lines: []string{"a=1;sid=abc;b=2"}, cookie: "sid", want: "abc", ok: true},
	{name: "last", lines: []string{"a=1; sid=abc"}, cookie: "sid", want: "abc", ok: true},
	{name: "quoted", lines: []string{`sid="abc"`}, cookie: "sid", want: "abc", ok: true},
	{name: "empty quoted", lines: []string{`sid=""`}, cookie: "sid", want: "", ok: true},
	{name: "lone quote is invalid", lines: []string{`sid="`}, cookie: "sid", ok: false},
	{name: "unbalanced quote is invalid", lines: []string{`sid="abc`}, cookie: "sid", ok: false},
	{name: "inner quote is invalid", lines: []string{`sid=a"b`}, cookie: "sid", ok: false},
	{name: "invalid then valid duplicate", lines: []string{`sid=a"b; sid=ok`}, cookie: "sid", want: "ok", ok: true},
	{name: "first of duplicates", lines: []string{"sid=one; sid=two"}, cookie: "sid", want: "one", ok: true},
	{name: "prefix and suffix names do not match", lines: []string{"sidx=1; xsid=2"}, cookie: "sid", ok: false},
	{name: "names are case-sensitive", lines: []string{"SID=abc"}, cookie: "sid", ok: false},
	{name: "no = means empty value", lines: []string{"a=1; sid"}, cookie: "sid", want: "", ok: true},
	{name: "second header line", lines: []string{"a=1", "sid=two"}, cookie: "sid", want: "two", ok: true},
	{name: "space and comma allowed in value", lines: []string{"sid=a,b c"}, cookie: "sid", want: "a,b c", ok: true},
	{name: "space after = kept", lines: []string{"sid= abc"}, cookie: "sid", want: " abc", ok: true},
	{name: "space before = trimmed", lines: []string{"sid =abc"}, cookie: "sid", want: "abc", ok: true},
	{name: "space then quotes is invalid", lines: []string{`sid= "abc"`}, cookie: "sid", ok: false},
	{name: "surrounding white space", lines: []string{"\t sid=abc \t"}, cookie: "sid", want: "abc", ok: true},
	{name: "= in value", lines: []string{"a=b=c; sid=x=y"}, cookie: "sid", want: "x=y", ok: true},
	{name: "empty pairs", lines: []string{";;; sid=abc;;"}, cookie: "sid", want: "abc", ok: true},
	{name: "DEL is invalid", lines: []string{"sid=a\x7f"}, cookie: "sid", ok: false},
	{name: "non-ASCII is invalid", lines: []string{"sid=é"}, cookie: "sid", ok: false},
	{name: "backslash is invalid", lines: []string{`sid=a\b`}, cookie: "sid", ok: false},
	{name: "control byte is invalid", lines: []string{"sid=a\x01b"}, cookie: "sid", ok: false},
	{name: "empty line", lines: []string{""}, cookie: "sid", ok: false},
	{name: "no Cookie header", lines: nil, cookie: "sid", ok: false},
	{name: "name with token punctuation", lines: []string{"a=1; __Host-s.id=v"}, cookie: "__Host-s.id", want: "v", ok: true},
}

func TestCookieValue(t *testing.T) {
	t.Parallel()
	for _, tt := range cookieTests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := http.Header{}
			for _, l := range tt.lines {
				h.Add("Cookie", l)
			}
			got, ok := cookieValue(h, tt.cookie)
			if got != tt.want || ok != tt.ok {
				t.Errorf("cookieValue = %q, %v; want %q, %v", got, ok, tt.want, tt.ok)
			}
			// The expectations are net/http's.
			c, err := (&http.Request{Header: h}).Cookie(tt.cookie)
			if (err == nil) != tt.ok || (err == nil && c.Value != tt.want) {
				t.Errorf("test case disagrees with net/http: Cookie = %+v, %v", c, err)
			}
		})
	}
}

func TestCookieValueDoesNotAllocate(t *testing.T) {
	h := http.Header{"Cookie": {"theme=dark; lang=en", `a=1; sid="abcdef"; b=2`}}
	var v string
	allocs := testing.AllocsPerRun(100, func() { v, _ = cookieValue(h, "sid") })
	if v != "abcdef" {
		t.Fatalf("value = %q, want abcdef", v)
	}
	if allocs != 0 {
		t.Errorf("%v allocations per call, want 0", allocs)
	}
}

func TestIsToken(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]bool{
		"X-User": true, "sid": true, "__Host-a.b": true, "!#$%&'*+-.^_`|~09azAZ": true,
		"": false, "a b": false, "a=b": false, "a;": false, "a:": false, `"a"`: false, "é": false, "a\x00": false,
	} {
		if got := isToken(s); got != want {
			t.Errorf("isToken(%q) = %v, want %v", s, got, want)
		}
	}
}

// FuzzCookieValue checks the scanner against net/http's Request.Cookie for
// every valid cookie name and header lines within net/http's cookie limit.
func FuzzCookieValue(f *testing.F) {
	for _, tt := range cookieTests {
		var l1, l2 string
		if len(tt.lines) > 0 {
			l1 = tt.lines[0]
		}
		if len(tt.lines) > 1 {
			l2 = tt.lines[1]
		}
		f.Add(l1, l2, tt.cookie)
	}
	f.Fuzz(func(t *testing.T, line1, line2, name string) {
		if !isToken(name) {
			t.Skip("New rejects invalid cookie names")
		}
		h := http.Header{"Cookie": {line1}}
		if line2 != "" {
			h["Cookie"] = append(h["Cookie"], line2)
		}
		if strings.Count(line1, ";")+strings.Count(line2, ";")+2 > 3000 {
			t.Skip("net/http ignores headers with more than 3000 cookies")
		}
		got, ok := cookieValue(h, name)
		c, err := (&http.Request{Header: h}).Cookie(name)
		switch {
		case errors.Is(err, http.ErrNoCookie):
			if ok {
				t.Errorf("cookieValue(%q, %q) = %q, true; net/http finds no cookie", h["Cookie"], name, got)
			}
		case err != nil:
			t.Fatalf("net/http: %v", err)
		case !ok || got != c.Value:
			t.Errorf("cookieValue(%q, %q) = %q, %v; net/http: %q", h["Cookie"], name, got, ok, c.Value)
		}
	})
}
