package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
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

func TestH1StaleConnectionRetry(t *testing.T) {
	t.Parallel()
	// The second request on a connection reaches the upstream, which then
	// closes the connection without answering: as if it closed it while
	// idle, or as if it processed the request and died. Only a request that
	// is safe to repeat is sent again (RFC 9110 §9.2.2).
	tests := []struct {
		name, method string
		body         string
		header       map[string]string
		wantStatus   int
		wantSent     int32 // times the upstream received the request
	}{
		{name: "GET is resent", method: "GET", wantStatus: 200, wantSent: 2},
		{name: "PUT with a small body is resent", method: "PUT", body: "small body", wantStatus: 200, wantSent: 2},
		{name: "DELETE is resent", method: "DELETE", wantStatus: 200, wantSent: 2},
		{name: "POST is not", method: "POST", body: "amount=10", wantStatus: 502, wantSent: 1},
		{name: "PATCH is not", method: "PATCH", body: "x", wantStatus: 502, wantSent: 1},
		{name: "POST with an idempotency key is resent", method: "POST", body: "amount=10",
			header: map[string]string{"Idempotency-Key": "8e03978e"}, wantStatus: 200, wantSent: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var sent atomic.Int32
			b := newRawBackend(t, func(conn, n int, req *http.Request) (string, bool) {
				if req.URL.Path != "/warm" {
					sent.Add(1)
				}
				if n > 0 {
					return "", true
				}
				return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false
			})
			h := newHarness(t, parseConfig(t, b.config(t, "")))
			do(t, h, "GET", "/warm", nil) // leaves one pooled connection
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			req, _ := http.NewRequest(tc.method, h.front.URL+"/op", body)
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			res, got := get(t, nil, req)
			if res.StatusCode != tc.wantStatus {
				t.Errorf("status %d, want %d (%s)", res.StatusCode, tc.wantStatus, got)
			}
			if n := sent.Load(); n != tc.wantSent {
				t.Errorf("the upstream received the request %d times, want %d", n, tc.wantSent)
			}
		})
	}
}

func TestH1PooledConnectionIsCheckedBeforeReuse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// backend returns the address of an upstream whose first
		// connection leaves something behind once its request is answered,
		// and a channel closed when it has.
		backend    func(t *testing.T) (string, <-chan struct{})
		method     string
		wantBody   string
		wantStatus int
	}{
		{
			name: "bytes sent after the response",
			backend: func(t *testing.T) (string, <-chan struct{}) {
				var first atomic.Bool
				b := newRawBackend(t, func(conn, n int, req *http.Request) (string, bool) {
					if first.CompareAndSwap(false, true) {
						return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" +
							"HTTP/1.1 200 OK\r\nContent-Length: 8\r\nX-Evil: 1\r\n\r\npoisoned", false
					}
					return "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nclean", false
				})
				return b.ln.Addr().String(), closedChan()
			},
			method: "GET", wantStatus: 200, wantBody: "clean",
		},
		{
			name: "408 and close while idle",
			backend: func(t *testing.T) (string, <-chan struct{}) {
				return timeoutBackend(t)
			},
			method: "GET", wantStatus: 200, wantBody: "ok",
		},
		{
			name: "closed while idle, then a POST",
			backend: func(t *testing.T) (string, <-chan struct{}) {
				closed := make(chan struct{})
				var once sync.Once
				b := newRawBackend(t, func(conn, n int, req *http.Request) (string, bool) {
					// Time for the close to reach the pooled connection.
					once.Do(func() { time.AfterFunc(50*time.Millisecond, func() { close(closed) }) })
					return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", true
				})
				return b.ln.Addr().String(), closed
			},
			// Not resendable: it succeeds because the closed connection is
			// never used, not because it is retried.
			method: "POST", wantStatus: 200, wantBody: "ok",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			addr, settled := tc.backend(t)
			host, port, _ := net.SplitHostPort(addr)
			h := newHarness(t, parseConfig(t, fmt.Sprintf(`
listeners: [{address: "127.0.0.1:0"}]
services:
  svc:
    instances: [{address: %s, port: %s}]
routes: [{match: {path_prefix: /}, service: svc}]
`, host, port)))
			if res, _ := do(t, h, "GET", "/first", nil); res.StatusCode != 200 {
				t.Fatalf("first request: %d", res.StatusCode)
			}
			<-settled
			var body io.Reader
			if tc.method == "POST" {
				body = strings.NewReader("amount=10")
			}
			res, got := do(t, h, tc.method, "/second", body)
			if res.StatusCode != tc.wantStatus || got != tc.wantBody || res.Header.Get("X-Evil") != "" {
				t.Errorf("second request got %d %q X-Evil=%q, want %d %q: bytes the upstream sent outside an exchange were read as its response",
					res.StatusCode, got, res.Header.Get("X-Evil"), tc.wantStatus, tc.wantBody)
			}
		})
	}
}

func closedChan() <-chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}

// timeoutBackend answers each connection's first request, then, as many
// servers do with idle connections, sends "408 Request Timeout" and
// closes it. The channel is closed once the first connection has.
func timeoutBackend(t *testing.T) (string, <-chan struct{}) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	timedOut := make(chan struct{})
	var once sync.Once
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				io.Copy(io.Discard, req.Body)
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				time.Sleep(20 * time.Millisecond)
				io.WriteString(c, "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
				c.Close()
				time.Sleep(20 * time.Millisecond) // let the bytes reach the peer
				once.Do(func() { close(timedOut) })
			}()
		}
	}()
	return ln.Addr().String(), timedOut
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
		{name: "get", method: "GET", path: "/a/b%3Fc%20d?x=1&y=%20", wantLen: 0},
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

func TestReadResponseHead(t *testing.T) {
	t.Parallel()
	interim := func(n int) string { return strings.Repeat("HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n", n) }
	long := strings.Repeat("a", 20<<10) // longer than the 16 KiB read buffer
	tests := []struct {
		name          string
		in            string
		wantErr       bool
		wantKeepAlive bool
		wantLength    int64
		wantHeader    map[string][]string
	}{
		{name: "close before keep-alive", in: "HTTP/1.1 200 OK\r\nConnection: close, keep-alive\r\nContent-Length: 0\r\n\r\n",
			wantKeepAlive: false, wantLength: 0},
		{name: "keep-alive before close", in: "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
			wantKeepAlive: false, wantLength: 0},
		{name: "HTTP/1.0 keep-alive", in: "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
			wantKeepAlive: true, wantLength: 0},
		{name: "signed content length", in: "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello", wantErr: true},
		{name: "hex content length", in: "HTTP/1.1 200 OK\r\nContent-Length: 0x5\r\n\r\nhello", wantErr: true},
		{name: "content length list", in: "HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello", wantErr: true},
		{name: "content length passed on as parsed", in: "HTTP/1.1 200 OK\r\nContent-Length: 005\r\n\r\nhello",
			wantKeepAlive: true, wantLength: 5, wantHeader: map[string][]string{"Content-Length": {"5"}}},
		{name: "repeated equal content length passed on once", in: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
			wantKeepAlive: true, wantLength: 5, wantHeader: map[string][]string{"Content-Length": {"5"}}},
		{name: "header line longer than the read buffer", in: "HTTP/1.1 200 OK\r\nSet-Cookie: " + long + "\r\nContent-Length: 0\r\n\r\n",
			wantKeepAlive: true, wantLength: 0, wantHeader: map[string][]string{"Set-Cookie": {long}}},
		{name: "header over 1 MiB", in: "HTTP/1.1 200 OK\r\nSet-Cookie: " + strings.Repeat("a", 1<<20) + "\r\n\r\n", wantErr: true},
		{name: "five interim responses", in: interim(5) + "HTTP/1.1 204 No Content\r\n\r\n", wantKeepAlive: true, wantLength: 0},
		{name: "six interim responses", in: interim(6) + "HTTP/1.1 204 No Content\r\n\r\n", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dst := http.Header{}
			res, err := readResponseHead(bufio.NewReaderSize(strings.NewReader(tc.in), 16<<10), "GET", dst)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("accepted: keepAlive=%v length=%d header=%v", res.keepAlive, res.length, dst)
				}
				if !errors.Is(err, errMalformedResponse) {
					t.Errorf("error %v, want errMalformedResponse", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.keepAlive != tc.wantKeepAlive || res.length != tc.wantLength {
				t.Errorf("keepAlive=%v length=%d, want %v %d", res.keepAlive, res.length, tc.wantKeepAlive, tc.wantLength)
			}
			for k, want := range tc.wantHeader {
				if got := dst[k]; fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("%s = %.40q, want %.40q", k, got, want)
				}
			}
		})
	}
}

func TestReadTrailerIsBounded(t *testing.T) {
	t.Parallel()
	line := "X-Big: " + strings.Repeat("t", 100<<10) + "\r\n"
	tests := []struct {
		name    string
		in      string
		wantErr bool
	}{
		{name: "long trailer line", in: line + "\r\n"},
		{name: "over 1 MiB in all", in: strings.Repeat(line, 11) + "\r\n", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dst := http.Header{}
			err := readTrailer(bufio.NewReaderSize(strings.NewReader(tc.in), 16<<10), dst)
			if (err != nil) != tc.wantErr {
				t.Fatalf("error %v, want error %v", err, tc.wantErr)
			}
			if !tc.wantErr && len(dst[http.TrailerPrefix+"X-Big"]) != 1 {
				t.Errorf("trailer not read: %d fields", len(dst))
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
