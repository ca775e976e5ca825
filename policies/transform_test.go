package policies

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestTransformRequest(t *testing.T) {
	t.Parallel()
	const yaml = `
policies:
  - name: headers
    applies_to: {path_prefixes: [/h]}
    transforms:
      request:
        headers:
          remove: [X-Internal, x-debug]
          set: {X-Set: new, Host: api.internal:8080}
          add: {X-Add: second, X-Fresh: one}
  - name: path
    applies_to: {path_prefixes: [/v1]}
    transforms:
      request:
        path:
          pattern: ^/v1/(?P<rest>.*)$
          replacement: /v2/${rest}
  - name: bad-path
    applies_to: {path_prefixes: [/strip]}
    transforms:
      request:
        path:
          pattern: ^/strip/(.*)$
          replacement: $1
  - name: query
    applies_to: {path_prefixes: [/q]}
    transforms:
      request:
        query:
          remove: [debug]
          set: {page: "1"}
          add: {tag: "x y"}
  - name: keep-query
    applies_to: {path_prefixes: [/k]}
    transforms:
      request:
        headers:
          set: {X-Seen: "yes"}
`
	front, up, obs := guardProxy(t, yaml, nil)
	t.Run("headers", func(t *testing.T) {
		req := guardRequest(t, "GET", front.URL+"/h", nil, map[string]string{
			"X-Internal": "secret", "X-Debug": "1", "X-Set": "client", "X-Add": "first", "X-Kept": "k",
		})
		res, _ := guardDo(t, req)
		if res.StatusCode != 200 {
			t.Fatalf("status %d", res.StatusCode)
		}
		seen := up.last(t)
		h := seen.Header
		switch {
		case h.Get("X-Internal") != "" || h.Get("X-Debug") != "":
			t.Errorf("removed headers reached the upstream: %v", h)
		case !slices.Equal(h.Values("X-Set"), []string{"new"}):
			t.Errorf("X-Set %q; want [new]", h.Values("X-Set"))
		case !slices.Equal(h.Values("X-Add"), []string{"first", "second"}):
			t.Errorf("X-Add %q; want [first second]", h.Values("X-Add"))
		case h.Get("X-Fresh") != "one" || h.Get("X-Kept") != "k":
			t.Errorf("X-Fresh %q X-Kept %q", h.Get("X-Fresh"), h.Get("X-Kept"))
		case seen.Host != "api.internal:8080":
			t.Errorf("upstream Host %q; want api.internal:8080", seen.Host)
		}
	})
	for _, tt := range []struct{ in, path, escaped string }{
		{in: "/v1/orders/42", path: "/v2/orders/42", escaped: "/v2/orders/42"},
		{in: "/v1/caf%C3%A9/a%3Fb", path: "/v2/café/a?b", escaped: "/v2/caf%C3%A9/a%3Fb"},
		{in: "/v1/", path: "/v2/", escaped: "/v2/"},
	} {
		t.Run("path "+tt.in, func(t *testing.T) {
			res, _ := guardDo(t, guardRequest(t, "GET", front.URL+tt.in+"?a=1", nil, nil))
			seen := up.last(t)
			if res.StatusCode != 200 || seen.Path != tt.path || seen.EscapedPath != tt.escaped || seen.RawQuery != "a=1" {
				t.Errorf("status %d, upstream path %q (escaped %q) query %q; want %q (%q) a=1", res.StatusCode, seen.Path, seen.EscapedPath, seen.RawQuery, tt.path, tt.escaped)
			}
		})
	}
	t.Run("path rewritten to a relative path", func(t *testing.T) {
		before := up.count()
		res, body := guardDo(t, guardRequest(t, "GET", front.URL+"/strip/x", nil, nil))
		if res.StatusCode != 500 || string(body) != guardErrorBody(500, "policy transform produced an invalid path") {
			t.Fatalf("status %d body %q; want 500 and the contract's error", res.StatusCode, body)
		}
		if up.count() != before {
			t.Fatal("the request reached the upstream")
		}
		if !obs.has("bad-path/transform/invalid_path") {
			t.Errorf("decisions %v lack invalid_path", obs.got)
		}
	})
	t.Run("query", func(t *testing.T) {
		guardDo(t, guardRequest(t, "GET", front.URL+"/q?debug=1&page=5&tag=a&z=%2F", nil, nil))
		if got, want := up.last(t).RawQuery, "page=1&tag=a&tag=x+y&z=%2F"; got != want {
			t.Errorf("upstream query %q; want %q", got, want)
		}
	})
	t.Run("query untouched without query operations", func(t *testing.T) {
		guardDo(t, guardRequest(t, "GET", front.URL+"/k?b=2&a=1&c", nil, nil))
		if got := up.last(t); got.RawQuery != "b=2&a=1&c" || got.Header.Get("X-Seen") != "yes" {
			t.Errorf("upstream query %q X-Seen %q; want b=2&a=1&c and yes", got.RawQuery, got.Header.Get("X-Seen"))
		}
	})
}

func TestTransformResponseHeaders(t *testing.T) {
	t.Parallel()
	const yaml = `
policies:
  - name: res
    applies_to: {all: true}
    transforms:
      response:
        headers:
          remove: [Server, X-Powered-By]
          set: {Cache-Control: no-store, X-Frame-Options: DENY}
          add: {Vary: Cookie}
`
	front, _, _ := guardProxy(t, yaml, func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Server", "leaky/1.0")
		h.Set("X-Powered-By", "php")
		h.Set("Cache-Control", "public, max-age=60")
		h.Set("Vary", "Accept-Encoding")
		if r.URL.Path == "/404" {
			w.WriteHeader(404)
		}
		_, _ = io.WriteString(w, "hello")
	})
	for _, path := range []string{"/", "/404"} {
		res, body := guardDo(t, guardRequest(t, "GET", front.URL+path, nil, nil))
		h := res.Header
		if string(body) != "hello" || h.Get("Server") != "" || h.Get("X-Powered-By") != "" ||
			h.Get("Cache-Control") != "no-store" || h.Get("X-Frame-Options") != "DENY" ||
			!slices.Equal(h.Values("Vary"), []string{"Accept-Encoding", "Cookie"}) {
			t.Errorf("%s: body %q header %v", path, body, h)
		}
	}

	// A handler that writes nothing, one that only flushes, and one that
	// sends 103 Early Hints first: the operations apply to the final head
	// only.
	set, err := guardCompile(t, yaml, &Env{})
	if err != nil {
		t.Fatal(err)
	}
	final := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Server", "x")
		switch r.URL.Path {
		case "/flush":
			if err := http.NewResponseController(w).Flush(); err != nil {
				t.Errorf("Flush: %v", err)
			}
		case "/hints":
			w.Header().Set("Link", "</a.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.WriteHeader(http.StatusAccepted)
		}
	})
	srv := httptest.NewServer(set.Chain(RouteInfo{Name: "r"}, final))
	defer srv.Close()
	for _, tt := range []struct {
		path   string
		status int
	}{{"/nothing", 200}, {"/flush", 200}, {"/hints", 202}} {
		res, _ := guardDo(t, guardRequest(t, "GET", srv.URL+tt.path, nil, nil))
		if res.StatusCode != tt.status || res.Header.Get("Server") != "" || res.Header.Get("X-Frame-Options") != "DENY" {
			t.Errorf("%s: status %d header %v; want %d, no Server, X-Frame-Options", tt.path, res.StatusCode, res.Header, tt.status)
		}
	}
}

const xformJSONYAML = `
policies:
  - name: json
    applies_to: {all: true}
    transforms:
      response:
        headers:
          set: {X-Transformed: "yes"}
        json:
          deny: [user.password, internal, items.secret]
          allow: [id, user, items.sku, items.cost, big, list]
          rename: {user.email: mail, items.sku: product, id: ID}
          max_body_size: 256
`

func TestTransformJSON(t *testing.T) {
	t.Parallel()
	type reply struct {
		ct, ce, body string
		status       int
		chunked      bool
	}
	replies := map[string]reply{
		"/nested": {ct: "application/json; charset=utf-8", body: `{"id":7,"user":{"email":"e@x","name":"n","password":"p"},` +
			`"items":[{"sku":"a","cost":1,"secret":2,"extra":0},{"sku":"b","cost":3}],"internal":true,"other":"o","big":12345678901234567890}`},
		"/array":     {ct: "application/vnd.api+json", body: `[{"id":1,"internal":1,"x":2},{"id":2,"user":{"password":"p","email":"m"}}]`},
		"/scalars":   {ct: "application/json", body: `{"user":"a string","items":[1,{"sku":"s"},null],"list":[1,2]}`},
		"/error":     {ct: "application/problem+json", status: 403, body: `{"id":1,"internal":"stack trace"}`},
		"/text":      {ct: "text/plain", body: `{"password":"p"}`},
		"/gzip":      {ct: "application/json", ce: "gzip", body: "\x1f\x8bnot really gzip"},
		"/invalid":   {ct: "application/json", body: `{"password":"p"`},
		"/trailing":  {ct: "application/json", body: `{"id":1} {"password":"p"}`},
		"/empty":     {ct: "application/json", body: ``},
		"/large-cl":  {ct: "application/json", body: `{"password":"` + strings.Repeat("p", 300) + `"}`},
		"/streamed":  {ct: "application/json", body: `{"user":{"password":"p","name":"n"}}`, chunked: true},
		"/too-large": {ct: "application/json", body: `{"password":"` + strings.Repeat("p", 300) + `"}`, chunked: true},
	}
	front, up, obs := guardProxy(t, xformJSONYAML, func(w http.ResponseWriter, r *http.Request) {
		rp := replies[r.URL.Path]
		h := w.Header()
		h.Set("Content-Type", rp.ct)
		h.Set("ETag", `"v1"`)
		h.Set("X-Upstream", "1")
		if rp.ce != "" {
			h.Set("Content-Encoding", rp.ce)
		}
		if !rp.chunked {
			h.Set("Content-Length", strconv.Itoa(len(rp.body)))
		}
		if rp.status != 0 {
			w.WriteHeader(rp.status)
		}
		if rp.chunked {
			// In pieces, flushed: the gateway flushes after each.
			for i := 0; i < len(rp.body); i += 10 {
				_, _ = io.WriteString(w, rp.body[i:min(i+10, len(rp.body))])
				w.(http.Flusher).Flush()
			}
			return
		}
		_, _ = io.WriteString(w, rp.body)
	})
	tests := []struct {
		path      string
		status    int
		body      string
		etag      bool // the upstream's ETag kept: the body was not changed
		errorBody bool
	}{
		{path: "/nested", status: 200, body: `{"ID":7,"big":12345678901234567890,"items":[{"cost":1,"product":"a"},{"cost":3,"product":"b"}],"user":{"mail":"e@x","name":"n"}}`},
		{path: "/array", status: 200, body: `[{"ID":1},{"ID":2,"user":{"mail":"m"}}]`},
		{path: "/scalars", status: 200, body: `{"items":[{"product":"s"},null],"list":[1,2],"user":"a string"}`},
		{path: "/error", status: 403, body: `{"ID":1}`},
		{path: "/text", status: 200, body: `{"password":"p"}`, etag: true},
		{path: "/gzip", status: 502, body: guardErrorBody(502, "upstream sent an encoded JSON body that cannot be transformed"), errorBody: true},
		{path: "/invalid", status: 502, body: guardErrorBody(502, "upstream sent invalid JSON"), errorBody: true},
		{path: "/trailing", status: 502, body: guardErrorBody(502, "upstream sent invalid JSON"), errorBody: true},
		{path: "/empty", status: 200, body: ``},
		{path: "/large-cl", status: 502, body: guardErrorBody(502, "response too large to transform"), errorBody: true},
		{path: "/streamed", status: 200, body: `{"user":{"name":"n"}}`},
		{path: "/too-large", status: 502, body: guardErrorBody(502, "response too large to transform"), errorBody: true},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			// identity: the client must not decompress the gzip case.
			res, body := guardDo(t, guardRequest(t, "GET", front.URL+tt.path, nil, map[string]string{"Accept-Encoding": "identity"}))
			if res.StatusCode != tt.status || string(body) != tt.body {
				t.Fatalf("status %d body %s; want %d %s", res.StatusCode, body, tt.status, tt.body)
			}
			if res.ContentLength != int64(len(body)) {
				t.Errorf("Content-Length %d for a %d-byte body", res.ContentLength, len(body))
			}
			if got := res.Header.Get("Etag") != ""; got != tt.etag {
				t.Errorf("ETag present %v; want %v", got, tt.etag)
			}
			if tt.errorBody {
				if res.Header.Get("X-Upstream") != "" || res.Header.Get("Content-Type") != "application/json" {
					t.Errorf("the 502 carries the upstream's head: %v", res.Header)
				}
				return
			}
			if res.Header.Get("X-Transformed") != "yes" || res.Header.Get("X-Upstream") != "1" {
				t.Errorf("header %v; want the upstream's and the transform's", res.Header)
			}
		})
	}
	// Every request asked for identity; none reached the upstream with
	// Accept-Encoding, so it could not compress.
	if ae := up.last(t).Header.Values("Accept-Encoding"); len(ae) != 0 {
		t.Errorf("the upstream saw Accept-Encoding %q on a route with a JSON transform", ae)
	}
	for _, d := range []string{"json/transform/json_encoded", "json/transform/json_too_large", "json/transform/json_invalid"} {
		if !obs.has(d) {
			t.Errorf("decisions %v lack %s", obs.got, d)
		}
	}
	// HEAD: no body to change, and no length or validator of the
	// untransformed one.
	res, _ := guardDo(t, guardRequest(t, "HEAD", front.URL+"/nested", nil, nil))
	if res.StatusCode != 200 || res.Header.Get("Etag") != "" || res.Header.Get("X-Transformed") != "yes" {
		t.Errorf("HEAD: status %d header %v", res.StatusCode, res.Header)
	}
}

// TestTransformJSONNoPartialFlush: while a JSON body is buffered, the
// forwarder's flushes send nothing, not even the head.
func TestTransformJSONNoPartialFlush(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	front, _, _ := guardProxy(t, xformJSONYAML, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"internal":"secret",`)
		w.(http.Flusher).Flush()
		<-release
		_, _ = io.WriteString(w, `"id":1}`)
	})
	got := make(chan string, 1)
	go func() {
		res, err := http.Get(front.URL)
		if err != nil {
			got <- err.Error()
			return
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		got <- string(b)
	}()
	select {
	case s := <-got:
		t.Fatalf("the response came before the upstream finished: %q", s)
	case <-time.After(300 * time.Millisecond):
	}
	close(release)
	if s := <-got; s != `{"ID":1}` {
		t.Fatalf("body %q; want {\"ID\":1}", s)
	}
}

// TestTransformStreaming: a non-JSON stream (Server-Sent Events) flows
// through the transform writers event by event.
func TestTransformStreaming(t *testing.T) {
	t.Parallel()
	for _, yaml := range []string{xformJSONYAML, `
policies:
  - name: h
    applies_to: {all: true}
    transforms:
      response:
        headers:
          set: {X-Transformed: "yes"}
`} {
		next := make(chan struct{})
		front, _, _ := guardProxy(t, yaml, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			for i := range 3 {
				_, _ = io.WriteString(w, "data: "+strconv.Itoa(i)+"\n\n")
				w.(http.Flusher).Flush()
				select {
				case <-next:
				case <-time.After(5 * time.Second):
					return
				}
			}
		})
		res, err := http.Get(front.URL)
		if err != nil {
			t.Fatal(err)
		}
		if res.Header.Get("X-Transformed") != "yes" {
			t.Errorf("stream head %v lacks the transform", res.Header)
		}
		br := bufio.NewReader(res.Body)
		for i := range 3 {
			// Each event must arrive while the upstream waits for us.
			line, err := br.ReadString('\n')
			if err != nil || line != "data: "+strconv.Itoa(i)+"\n" {
				t.Fatalf("event %d: %q, %v", i, line, err)
			}
			_, _ = br.ReadString('\n')
			next <- struct{}{}
		}
		res.Body.Close()
	}
}

// TestTransformResponseController: the writers keep the optional
// interfaces reachable through http.ResponseController.
func TestTransformResponseController(t *testing.T) {
	t.Parallel()
	for _, yaml := range []string{xformJSONYAML, `
policies:
  - name: h
    applies_to: {all: true}
    transforms:
      response:
        headers:
          set: {X-Transformed: "yes"}
`, guardCORSYAML} {
		set, err := guardCompile(t, yaml, &Env{})
		if err != nil {
			t.Fatal(err)
		}
		final := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rc := http.NewResponseController(w)
			if err := rc.EnableFullDuplex(); err != nil {
				t.Errorf("EnableFullDuplex: %v", err)
			}
			if err := rc.SetWriteDeadline(time.Now().Add(5 * time.Second)); err != nil {
				t.Errorf("SetWriteDeadline: %v", err)
			}
			conn, brw, err := rc.Hijack()
			if err != nil {
				t.Errorf("Hijack: %v", err)
				return
			}
			defer conn.Close()
			_, _ = brw.WriteString("HTTP/1.1 299 Hijacked\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
			_ = brw.Flush()
		})
		srv := httptest.NewServer(set.Chain(RouteInfo{Name: "r"}, final))
		res, err := http.Get(srv.URL + "/shop/x")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		srv.Close()
		if res.StatusCode != 299 {
			t.Errorf("status %d; want the hijacker's 299", res.StatusCode)
		}
	}
}

func TestJSONFieldsApply(t *testing.T) {
	t.Parallel()
	set, err := guardCompile(t, `
policies:
  - name: swap
    applies_to: {all: true}
    transforms:
      response:
        json:
          rename: {a: b, b: a, deep.x.y: z}
`, &Env{})
	if err != nil {
		t.Fatal(err)
	}
	f := set.policies[0].spec.Transforms.Response.JSON
	if f.MaxBodySize != 1<<20 {
		t.Errorf("max_body_size default %v; want 1MiB", f.MaxBodySize)
	}
	jf := xformFind(t, set)
	out, err := jf.apply([]byte(`{"a":1,"b":2,"deep":[{"x":{"y":1}},{"x":[{"y":2},{"q":3}]}],"html":"<&>"}`))
	if err != nil {
		t.Fatal(err)
	}
	var got, want any
	_ = json.Unmarshal(out, &got)
	_ = json.Unmarshal([]byte(`{"a":2,"b":1,"deep":[{"x":{"z":1}},{"x":[{"z":2},{"q":3}]}],"html":"<&>"}`), &want)
	if !jsonEqual(got, want) || !strings.Contains(string(out), `"<&>"`) {
		t.Errorf("got %s", out)
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// xformFind returns the compiled JSON rules of the set's first policy.
func xformFind(t *testing.T, set *Set) *jsonFields {
	t.Helper()
	var found *jsonFields
	mw := set.policies[0].steps[6]
	h := mw(http.NotFoundHandler())
	if th, ok := h.(*transformHandler); ok {
		found = th.t.json
	}
	if found == nil {
		t.Fatal("no JSON rules compiled")
	}
	return found
}

func TestTransformValidation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{
			name: "request",
			yaml: `
policies:
  - name: a
    applies_to: {all: true}
    transforms:
      request:
        headers:
          remove: [Connection, "bad name", Host, x-ok]
          set:
            Content-Length: "1"
            X-Ok: "a\nb"
            Host: a/b
          add: {Host: x, transfer-encoding: chunked}
        path:
          pattern: ^/v1/(.*
          replacement: /v2/$1
        query:
          remove: [""]
          set: {"": x}
  - name: b
    applies_to: {all: true}
    transforms:
      request:
        path: {pattern: ^/(\w+)$, replacement: x$1}
  - name: c
    applies_to: {all: true}
    transforms:
      request:
        path: {pattern: ^/(\w+)$, replacement: /$2}
  - name: d
    applies_to: {all: true}
    transforms:
      request:
        path: {pattern: ^/(\w+)$, replacement: /$1x}
  - name: e
    applies_to: {all: true}
    transforms:
      request:
        path: {replacement: /x}
  - name: f
    applies_to: {all: true}
    transforms:
      request:
        path:
          pattern: ^/(?P<id>\w+)$
          replacement: "/$$/${id}/${nope}"
`,
			want: []string{
				`p.yaml:8: policies[0].transforms.request.headers.remove[0]: Connection is managed by meshgate (hop-by-hop or message framing) and cannot be changed`,
				`p.yaml:8: policies[0].transforms.request.headers.remove[1]: "bad name" is not a header name; want a token such as X-Request-Id`,
				`p.yaml:8: policies[0].transforms.request.headers.remove[2]: Host can only be set (it becomes the request's host); it cannot be removed or added`,
				`p.yaml:10: policies[0].transforms.request.headers.set.Content-Length: Content-Length is managed by meshgate (hop-by-hop or message framing) and cannot be changed`,
				`p.yaml:11: policies[0].transforms.request.headers.set.X-Ok: the value has a control character (CR, LF, NUL, ...); header values cannot carry them`,
				`p.yaml:12: policies[0].transforms.request.headers.set.Host: "a/b" is not a host; want host[:port]`,
				`p.yaml:13: policies[0].transforms.request.headers.add.Host: Host can only be set (it becomes the request's host); it cannot be removed or added`,
				`p.yaml:13: policies[0].transforms.request.headers.add.transfer-encoding: Transfer-Encoding is managed by meshgate (hop-by-hop or message framing) and cannot be changed`,
				"p.yaml:15: policies[0].transforms.request.path.pattern: invalid regular expression: error parsing regexp: missing closing ): `^/v1/(.*`",
				`p.yaml:18: policies[0].transforms.request.query.remove[0]: a parameter name cannot be empty`,
				`p.yaml:19: policies[0].transforms.request.query.set[""]: a parameter name cannot be empty`,
				`p.yaml:24: policies[1].transforms.request.path.replacement: "x$1" must start with / or a group reference ($1, ${name}): the rewritten path must be absolute`,
				`p.yaml:29: policies[2].transforms.request.path.replacement: refers to group $2 but the pattern has 1 group(s)`,
				`p.yaml:34: policies[3].transforms.request.path.replacement: refers to group "1x", which the pattern does not name (write ${1}x to follow group 1 by text)`,
				`p.yaml:39: policies[4].transforms.request.path.pattern: required; want an RE2 regular expression such as ^/v1/(.*)$`,
				`p.yaml:46: policies[5].transforms.request.path.replacement: refers to group "nope", which the pattern does not name (write ${1}x to follow group 1 by text)`,
			},
		},
		{
			name: "response and shape",
			yaml: `
policies:
  - name: a
    applies_to: {all: true}
    transforms:
      response:
        headers:
          set: {Host: x, Upgrade: y}
        json:
          allow: [user.email, "a..b", ""]
          deny: [user.password, .x]
          rename:
            user.password: pw
            user.name: x.y
            user.email: mail
            other: o
            .x: y
            user.mail2: ""
  - name: b
    applies_to: {all: true}
    transforms: {}
  - name: c
    applies_to: {all: true}
    transforms:
      request: {}
      response: {}
  - name: d
    applies_to: {all: true}
    transforms:
      request:
        headers: {}
        query: {}
      response:
        json: {}
  - name: e
    applies_to: {all: true}
    transforms:
      response:
        json:
          rename: {a.b: c, a.d: c}
`,
			want: []string{
				`p.yaml:8: policies[0].transforms.response.headers.set.Host: Host is not a response header`,
				`p.yaml:8: policies[0].transforms.response.headers.set.Upgrade: Upgrade is managed by meshgate (hop-by-hop or message framing) and cannot be changed`,
				`p.yaml:10: policies[0].transforms.response.json.allow[1]: "a..b" is not a field path; want field names joined by "." such as user.email`,
				`p.yaml:10: policies[0].transforms.response.json.allow[2]: "" is not a field path; want field names joined by "." such as user.email`,
				`p.yaml:11: policies[0].transforms.response.json.deny[1]: ".x" is not a field path; want field names joined by "." such as user.email`,
				`p.yaml:13: policies[0].transforms.response.json.rename["user.password"]: "user.password" is removed by deny, so it cannot be renamed`,
				`p.yaml:14: policies[0].transforms.response.json.rename["user.name"]: "x.y" is not a field name; want a single name (a rename stays in the same object)`,
				`p.yaml:16: policies[0].transforms.response.json.rename.other: "other" is not kept by allow, so it cannot be renamed; add it to allow`,
				`p.yaml:17: policies[0].transforms.response.json.rename[".x"]: ".x" is not a field path; want field names joined by "." such as user.email`,
				`p.yaml:18: policies[0].transforms.response.json.rename["user.mail2"]: "" is not a field name; want a single name (a rename stays in the same object)`,
				`p.yaml:21: policies[1].transforms: want at least one of request, response`,
				`p.yaml:25: policies[2].transforms.request: want at least one of headers, path, query`,
				`p.yaml:26: policies[2].transforms.response: want at least one of headers, json`,
				`p.yaml:31: policies[3].transforms.request.headers: want at least one of remove, set, add`,
				`p.yaml:32: policies[3].transforms.request.query: want at least one of remove, set, add`,
				`p.yaml:34: policies[3].transforms.response.json: want at least one of allow, deny, rename`,
				`p.yaml:40: policies[4].transforms.response.json.rename["a.d"]: renames "a.d" to "c" like "a.b" does; each new name must be unique in its object`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			guardCheckErrors(t, tt.yaml, tt.want)
		})
	}
}
