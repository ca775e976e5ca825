package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
)

// rawBackend accepts connections and answers each request read from them
// with the bytes respond returns for the connection's n-th request (from 0).
// When respond returns close=true the connection is closed after writing.
type rawBackend struct {
	ln    net.Listener
	conns atomic.Int32
	reqs  chan *http.Request
}

func newRawBackend(t *testing.T, respond func(conn, n int, req *http.Request) (string, bool)) *rawBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &rawBackend{ln: ln, reqs: make(chan *http.Request, 100)}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			id := int(b.conns.Add(1)) - 1
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for n := 0; ; n++ {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					body, _ := io.ReadAll(req.Body)
					req.Body = io.NopCloser(bytes.NewReader(body))
					select {
					case b.reqs <- req:
					default:
					}
					out, closeAfter := respond(id, n, req)
					if _, err := io.WriteString(c, out); err != nil || closeAfter {
						return
					}
				}
			}()
		}
	}()
	return b
}

func (b *rawBackend) config(t *testing.T, extra string) string {
	h, p, _ := net.SplitHostPort(b.ln.Addr().String())
	return fmt.Sprintf(`
listeners: [{address: "127.0.0.1:0"}]
%s
services:
  svc:
    instances: [{address: %s, port: %s}]
routes: [{match: {path_prefix: /}, service: svc}]
`, extra, h, p)
}

func do(t *testing.T, h *harness, method, path string, body io.Reader) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, h.front.URL+path, body)
	return get(t, nil, req)
}

func TestH1StaleConnectionIsRetriedOnce(t *testing.T) {
	t.Parallel()
	// Every connection answers one request and then closes without saying
	// so: the pooled connection is stale when the next request takes it.
	b := newRawBackend(t, func(conn, n int, req *http.Request) (string, bool) {
		return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\nconn%d", len(fmt.Sprint("conn", conn)), conn), true
	})
	h := newHarness(t, parseConfig(t, b.config(t, "")))
	for i := 0; i < 5; i++ {
		method, body := "GET", io.Reader(nil)
		if i%2 == 1 {
			method, body = "POST", strings.NewReader("small body") // buffered, so replayable
		}
		res, got := do(t, h, method, "/", body)
		if res.StatusCode != 200 {
			t.Fatalf("request %d: status %d %s", i, res.StatusCode, got)
		}
	}
}

func TestH1ResponseFraming(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		method     string
		resp       string
		wantStatus int
		wantBody   string
		wantHeader map[string]string
		wantTrail  map[string]string
	}{
		{name: "content length", resp: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello",
			wantStatus: 200, wantBody: "hello", wantHeader: map[string]string{"X-A": "1", "Content-Length": "5"}},
		{name: "chunked with trailer", resp: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 42\r\n\r\n",
			wantStatus: 200, wantBody: "hello world", wantTrail: map[string]string{"X-Sum": "42"}},
		{name: "read to close", resp: "HTTP/1.0 200 OK\r\nX-Old: yes\r\n\r\nuntil close",
			wantStatus: 200, wantBody: "until close", wantHeader: map[string]string{"X-Old": "yes"}},
		{name: "interim 100 and 103 skipped", resp: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
			wantStatus: 201, wantBody: "ok"},
		{name: "no content", resp: "HTTP/1.1 204 No Content\r\nX-B: 2\r\n\r\n",
			wantStatus: 204, wantHeader: map[string]string{"X-B": "2"}},
		{name: "head keeps length", method: "HEAD", resp: "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n",
			wantStatus: 200, wantHeader: map[string]string{"Content-Length": "1234"}},
		{name: "lower case names canonicalised", resp: "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-lower-case: v\r\n\r\nhi",
			wantStatus: 200, wantBody: "hi", wantHeader: map[string]string{"X-Lower-Case": "v"}},
		{name: "connection-listed header dropped", resp: "HTTP/1.1 200 OK\r\nConnection: X-Hop\r\nX-Hop: secret\r\nContent-Length: 0\r\n\r\n",
			wantStatus: 200, wantHeader: map[string]string{"X-Hop": ""}},
		{name: "garbage status line", resp: "HTTX/1.1 200 OK\r\n\r\n", wantStatus: 502},
		{name: "bad content length", resp: "HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n", wantStatus: 502},
		{name: "conflicting content lengths", resp: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello", wantStatus: 502},
		{name: "unsupported transfer coding", resp: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", wantStatus: 502},
		{name: "obsolete folding", resp: "HTTP/1.1 200 OK\r\nX-A: 1\r\n  folded\r\n\r\n", wantStatus: 502},
		{name: "space before colon", resp: "HTTP/1.1 200 OK\r\nX-A : 1\r\n\r\n", wantStatus: 502},
		{name: "closed without answer", resp: "", wantStatus: 502},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := newRawBackend(t, func(conn, n int, req *http.Request) (string, bool) { return tc.resp, true })
			h := newHarness(t, parseConfig(t, b.config(t, "")))
			method := tc.method
			if method == "" {
				method = "GET"
			}
			res, body := do(t, h, method, "/", nil)
			if res.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d (body %q)", res.StatusCode, tc.wantStatus, body)
			}
			if tc.wantStatus == 502 {
				if !strings.Contains(body, `"status":502`) {
					t.Errorf("502 without the JSON error body: %q", body)
				}
				return
			}
			if body != tc.wantBody {
				t.Errorf("body %q, want %q", body, tc.wantBody)
			}
			for k, v := range tc.wantHeader {
				if got := res.Header.Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			for k, v := range tc.wantTrail {
				if got := res.Trailer.Get(k); got != v {
					t.Errorf("trailer %s = %q, want %q (trailers %v)", k, got, v, res.Trailer)
				}
			}
		})
	}
}

func TestH1ConnectionsAreReused(t *testing.T) {
	t.Parallel()
	b := newRawBackend(t, func(conn, n int, req *http.Request) (string, bool) {
		return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false
	})
	h := newHarness(t, parseConfig(t, b.config(t, "")))
	for i := 0; i < 20; i++ {
		if res, _ := do(t, h, "GET", "/", nil); res.StatusCode != 200 {
			t.Fatal(res.Status)
		}
	}
	if n := b.conns.Load(); n != 1 {
		t.Errorf("20 sequential requests used %d upstream connections, want 1", n)
	}
}

func TestH1ConnectionCloseIsHonoured(t *testing.T) {
	t.Parallel()
	b := newRawBackend(t, func(conn, n int, req *http.Request) (string, bool) {
		return "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", false
	})
	h := newHarness(t, parseConfig(t, b.config(t, "")))
	for i := 0; i < 3; i++ {
		do(t, h, "GET", "/", nil)
	}
	if n := b.conns.Load(); n != 3 {
		t.Errorf("used %d connections for 3 requests answered with Connection: close, want 3", n)
	}
}

func TestH1RequestWireFormat(t *testing.T) {
	t.Parallel()
	b := newRawBackend(t, func(conn, n int, req *http.Request) (string, bool) {
		return "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false
	})
	h := newHarness(t, parseConfig(t, b.config(t, "")))
	tests := []struct {
		name, method, path string
		body               io.Reader
		wantBody           string
		wantTE             []string
		wantLen            int64
	}{
		{name: "get", method: "GET", path: "/a/b%2Fc?x=1&y=%20", wantLen: 0},
		{name: "empty post", method: "POST", path: "/p", wantLen: 0},
		{name: "sized body", method: "PUT", path: "/p", body: strings.NewReader("0123456789"), wantBody: "0123456789", wantLen: 10},
		{name: "chunked body", method: "POST", path: "/p", body: io.MultiReader(strings.NewReader("abc"), strings.NewReader("def")), wantBody: "abcdef", wantTE: []string{"chunked"}, wantLen: -1},
		{name: "large sized body", method: "POST", path: "/p", body: strings.NewReader(strings.Repeat("L", 100<<10)), wantBody: strings.Repeat("L", 100<<10), wantLen: 100 << 10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, h.front.URL+tc.path, tc.body)
			req.Host = "shop.test"
			res, _ := get(t, nil, req)
			if res.StatusCode != 200 {
				t.Fatalf("status %d", res.StatusCode)
			}
			got := <-b.reqs
			if got.Method != tc.method || got.RequestURI != tc.path || got.Host != "shop.test" {
				t.Errorf("upstream saw %s %s Host %s", got.Method, got.RequestURI, got.Host)
			}
			body, _ := io.ReadAll(got.Body)
			if string(body) != tc.wantBody {
				t.Errorf("body %d bytes, want %d", len(body), len(tc.wantBody))
			}
			if fmt.Sprint(got.TransferEncoding) != fmt.Sprint(tc.wantTE) || got.ContentLength != tc.wantLen {
				t.Errorf("framing TE=%v CL=%d, want TE=%v CL=%d", got.TransferEncoding, got.ContentLength, tc.wantTE, tc.wantLen)
			}
		})
	}
}

// FuzzReadResponseHead feeds arbitrary bytes to the response parser: it
// must never panic, must accept only final statuses, and may pass on only
// canonical field names and values free of CR, LF and NUL.
func FuzzReadResponseHead(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"HTTP/1.0 404 Not Found\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.1 200 OK\r\nConnection: close, X-A\r\nX-A: b\r\n\r\n",
		"HTTP/1.1 200\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		dst := http.Header{}
		res, err := readResponseHead(bufio.NewReader(bytes.NewReader(data)), "GET", dst)
		if err != nil {
			return
		}
		if res.status < 200 || res.status > 999 {
			t.Fatalf("accepted status %d", res.status)
		}
		for k, vv := range dst {
			if k != http.CanonicalHeaderKey(k) && strings.IndexFunc(k, func(r rune) bool { return r == ' ' }) < 0 {
				t.Fatalf("non-canonical key %q", k)
			}
			for _, v := range vv {
				if strings.ContainsAny(v, "\r\n\x00") {
					t.Fatalf("value with control bytes %q", v)
				}
			}
		}
	})
}
