package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/discovery"
)

// oneService returns a config routing everything to backend s.
func oneService(t testing.TB, extra string, servers ...*httptest.Server) string {
	return `
listeners: [{address: "127.0.0.1:0"}]
` + extra + `
services:
  svc:
    instances:
` + instancesYAML(t, servers...) + `
routes: [{name: all, match: {path_prefix: /}, service: svc}]
`
}

func TestHopByHopHeadersStripped(t *testing.T) {
	t.Parallel()
	seen := make(chan http.Header, 1)
	back := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Clone()
		w.Header().Set("Connection", "X-Resp-Hop")
		w.Header().Set("X-Resp-Hop", "secret")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("X-End-To-End", "kept")
		w.Header().Set("Proxy-Authenticate", "Basic")
	}))
	defer back.Close()
	h := newHarness(t, parseConfig(t, oneService(t, "", back)))

	req, _ := http.NewRequest("GET", h.front.URL+"/", nil)
	req.Header.Set("Connection", "X-Hop-A, x-hop-b")
	req.Header.Set("X-Hop-A", "1")
	req.Header.Set("X-Hop-B", "2")
	req.Header.Set("Keep-Alive", "timeout=5")
	req.Header.Set("Proxy-Authorization", "Basic Zm9vOmJhcg==")
	req.Header.Set("Proxy-Connection", "keep-alive")
	req.Header.Set("Te", "gzip")
	req.Header.Set("Upgrade", "foo") // without Connection: upgrade, a hop header only
	req.Header.Set("X-End-To-End", "kept")
	res, _ := get(t, nil, req)
	got := <-seen
	for _, k := range []string{"Connection", "X-Hop-A", "X-Hop-B", "Keep-Alive", "Proxy-Authorization", "Proxy-Connection", "Te", "Upgrade"} {
		if v, ok := got[k]; ok {
			t.Errorf("upstream received hop-by-hop %s: %q", k, v)
		}
	}
	if got.Get("X-End-To-End") != "kept" {
		t.Errorf("end-to-end header lost: %v", got)
	}
	for _, k := range []string{"X-Resp-Hop", "Keep-Alive", "Proxy-Authenticate"} {
		if v := res.Header.Get(k); v != "" {
			t.Errorf("client received hop-by-hop response header %s: %q", k, v)
		}
	}
	if res.Header.Get("X-End-To-End") != "kept" {
		t.Errorf("end-to-end response header lost")
	}
}

func TestTETrailersKeptForGRPC(t *testing.T) {
	t.Parallel()
	seen := make(chan string, 1)
	back := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Get("Te")
	}))
	defer back.Close()
	h := newHarness(t, parseConfig(t, oneService(t, "", back)))
	req, _ := http.NewRequest("GET", h.front.URL+"/", nil)
	req.Header.Set("Te", "trailers, deflate")
	get(t, nil, req)
	if got := <-seen; got != "trailers" {
		t.Fatalf("upstream TE = %q, want trailers", got)
	}
}

func TestXForwardedHeaders(t *testing.T) {
	t.Parallel()
	type fwd struct{ xff, proto, host string }
	seen := make(chan fwd, 1)
	back := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- fwd{r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Forwarded-Host")}
	}))
	defer back.Close()
	tests := []struct {
		name    string
		hops    int
		in      fwd
		want    fwd
		wantCIP string
	}{
		{name: "untrusted client headers replaced", hops: 0,
			in:   fwd{"6.6.6.6", "https", "evil.test"},
			want: fwd{"127.0.0.1", "http", "shop.test"}, wantCIP: "127.0.0.1"},
		{name: "no incoming headers", hops: 1,
			want: fwd{"127.0.0.1", "http", "shop.test"}, wantCIP: "127.0.0.1"},
		{name: "one trusted hop appends", hops: 1,
			in:   fwd{"6.6.6.6, 203.0.113.7", "https", "shop.example"},
			want: fwd{"6.6.6.6, 203.0.113.7, 127.0.0.1", "https", "shop.example"}, wantCIP: "203.0.113.7"},
		{name: "two trusted hops", hops: 2,
			in:   fwd{"6.6.6.6, 203.0.113.7, 10.0.0.2", "", ""},
			want: fwd{"6.6.6.6, 203.0.113.7, 10.0.0.2, 127.0.0.1", "http", "shop.test"}, wantCIP: "203.0.113.7"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, parseConfig(t, oneService(t, fmt.Sprintf("server: {trusted_hops: %d}", tc.hops), back)))
			req, _ := http.NewRequest("GET", h.front.URL+"/", nil)
			req.Host = "shop.test"
			if tc.in.xff != "" {
				req.Header.Set("X-Forwarded-For", tc.in.xff)
			}
			if tc.in.proto != "" {
				req.Header.Set("X-Forwarded-Proto", tc.in.proto)
			}
			if tc.in.host != "" {
				req.Header.Set("X-Forwarded-Host", tc.in.host)
			}
			get(t, nil, req)
			if got := <-seen; got != tc.want {
				t.Errorf("upstream saw %+v, want %+v", got, tc.want)
			}
			if got := ClientIP(req.Header, "127.0.0.1:5555", tc.hops); got != tc.wantCIP {
				t.Errorf("ClientIP = %q, want %q", got, tc.wantCIP)
			}
		})
	}
}

func TestServerSentEventsStream(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	back := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		<-release // the backend is still sending
		fmt.Fprint(w, "data: second\n\n")
	}))
	defer back.Close()
	defer close(release)
	h := newHarness(t, parseConfig(t, oneService(t, "", back)))

	res, err := http.Get(h.front.URL + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(res.Body).ReadString('\n')
		line <- l
	}()
	select {
	case l := <-line:
		if l != "data: first\n" {
			t.Fatalf("first line %q", l)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the first event did not reach the client while the backend was still sending")
	}
}

func TestLargeBodyStreamsBothWays(t *testing.T) {
	t.Parallel()
	back := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		w.Header().Set("X-Received", fmt.Sprint(n))
		// Answer 4 MiB without Content-Length.
		chunk := strings.Repeat("z", 64<<10)
		for i := 0; i < 64; i++ {
			io.WriteString(w, chunk)
		}
	}))
	defer back.Close()
	h := newHarness(t, parseConfig(t, oneService(t, "server: {max_body_bytes: 64MiB}", back)))
	pr, pw := io.Pipe()
	go func() {
		chunk := strings.Repeat("a", 64<<10)
		for i := 0; i < 128; i++ { // 8 MiB, chunked
			io.WriteString(pw, chunk)
		}
		pw.Close()
	}()
	req, _ := http.NewRequest("POST", h.front.URL+"/upload", pr)
	res, body := get(t, nil, req)
	if res.Header.Get("X-Received") != fmt.Sprint(8<<20) {
		t.Errorf("upstream received %s bytes, want %d", res.Header.Get("X-Received"), 8<<20)
	}
	if len(body) != 4<<20 {
		t.Errorf("client received %d bytes, want %d", len(body), 4<<20)
	}
}

func TestWebSocketEcho(t *testing.T) {
	t.Parallel()
	back := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, append([]byte("echo: "), msg...)); err != nil {
				return
			}
		}
	}))
	defer back.Close()
	h := newHarness(t, parseConfig(t, oneService(t, "", back)))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(h.front.URL, "http")+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	for i := 0; i < 3; i++ {
		msg := fmt.Sprintf("hello %d", i)
		if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		_, got, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != "echo: "+msg {
			t.Fatalf("got %q", got)
		}
	}
	if n := h.gw.upgrades.Len(); n != 1 {
		t.Errorf("tracked upgraded connections = %d, want 1", n)
	}
	c.Close(websocket.StatusNormalClosure, "bye")
}

func TestH2CUpstream(t *testing.T) {
	t.Parallel()
	back := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "Grpc-Status")
		fmt.Fprintf(w, "proto=%s", r.Proto)
		w.Header().Set("Grpc-Status", "0")
	}))
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	back.Config.Protocols = &p
	back.Start()
	defer back.Close()
	cfg := parseConfig(t, `
listeners: [{address: "127.0.0.1:0"}]
services:
  grpc:
    protocol: h2c
    instances:
`+instancesYAML(t, back)+`
routes: [{match: {path_prefix: /}, service: grpc}]
`)
	h := newHarness(t, cfg)
	// The client side speaks h2c too, as a gRPC client inside the mesh would.
	h.front.Close()
	front := httptest.NewUnstartedServer(h.gw)
	front.Config.Protocols = &p
	front.Start()
	defer front.Close()
	client := &http.Client{Transport: &http.Transport{Protocols: &p}}
	req, _ := http.NewRequest("POST", front.URL+"/pkg.Svc/Method", strings.NewReader("x"))
	req.Header.Set("Te", "trailers")
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if string(body) != "proto=HTTP/2.0" {
		t.Fatalf("upstream saw %q, want HTTP/2.0", body)
	}
	if res.ProtoMajor != 2 {
		t.Errorf("client got %s", res.Proto)
	}
	if got := res.Trailer.Get("Grpc-Status"); got != "0" {
		t.Errorf("trailer Grpc-Status = %q, want 0", got)
	}
}

func TestClientGoneIsLogged499(t *testing.T) {
	t.Parallel()
	entered := make(chan struct{})
	back := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-r.Context().Done()
	}))
	defer back.Close()
	h := newHarness(t, parseConfig(t, oneService(t, "", back)))
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", h.front.URL+"/", nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		res, err := http.DefaultClient.Do(req)
		if err == nil {
			res.Body.Close()
			t.Errorf("the client got an answer: %d", res.StatusCode)
		}
	}()
	<-entered
	cancel()
	<-done
	waitFor(t, func() bool { return strings.Contains(h.logs.String(), `"status":499`) })
	// The gateway did not count a client that left as an upstream failure.
	deadline := time.Now().Add(2 * time.Second)
	for {
		st := h.gw.table.Load().upstreams["svc"].endpoints[0].state
		if st.inFlight.Load() == 0 {
			if f := st.failures.Load(); f != 0 {
				t.Errorf("failures = %d, want 0", f)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("request still in flight after the client left")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRoundRobinAcrossInstances(t *testing.T) {
	t.Parallel()
	a, b, c := named("a"), named("b"), named("c")
	defer a.Close()
	defer b.Close()
	defer c.Close()
	h := newHarness(t, parseConfig(t, oneService(t, "", a, b, c)))
	var got []string
	for i := 0; i < 6; i++ {
		req, _ := http.NewRequest("GET", h.front.URL+"/", nil)
		res, _ := get(t, nil, req)
		got = append(got, res.Header.Get("X-Backend"))
	}
	if strings.Join(got[:3], "") == strings.Join(got[3:], "") && len(map[string]bool{got[0]: true, got[1]: true, got[2]: true}) == 3 {
		return
	}
	t.Fatalf("round robin order %v: want each of a, b, c once per cycle, repeating", got)
}

func TestAdminEndpoints(t *testing.T) {
	t.Parallel()
	a := named("a")
	defer a.Close()
	cfg := parseConfig(t, oneService(t, "", a))
	store := discoveryStore()
	gw, err := New(cfg, Options{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	admin := httptest.NewServer(gw.AdminHandler(nil))
	defer admin.Close()
	status := func(path string) (int, map[string]any) {
		res, err := http.Get(admin.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var v map[string]any
		if err := json.NewDecoder(res.Body).Decode(&v); err != nil {
			t.Fatalf("%s: not JSON: %v", path, err)
		}
		return res.StatusCode, v
	}
	if code, _ := status("/readyz"); code != 503 {
		t.Errorf("/readyz before the first snapshot = %d, want 503", code)
	}
	if code, _ := status("/livez"); code != 200 {
		t.Errorf("/livez = %d", code)
	}
	store.Publish(staticSnap(cfg))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go gw.Watch(ctx)
	waitFor(t, func() bool { c, _ := status("/readyz"); return c == 200 })

	_, inst := status("/admin/instances")
	svcs := inst["services"].([]any)
	if len(svcs) != 1 || len(svcs[0].(map[string]any)["instances"].([]any)) != 1 {
		t.Errorf("/admin/instances = %v", inst)
	}
	_, routes := status("/admin/routes")
	if rs := routes["routes"].([]any); len(rs) != 1 || rs[0].(map[string]any)["service"] != "svc" {
		t.Errorf("/admin/routes = %v", routes)
	}
	_, conf := status("/admin/config")
	if _, ok := conf["config"]; !ok {
		t.Errorf("/admin/config = %v", conf)
	}
	gw.Drain()
	if code, v := status("/readyz"); code != 503 || v["status"] != "draining" {
		t.Errorf("/readyz while draining = %d %v", code, v)
	}
}

func TestReloadSwapsWholeConfigAndKeepsStateOnError(t *testing.T) {
	t.Parallel()
	a, b := named("a"), named("b")
	defer a.Close()
	defer b.Close()
	cfg := parseConfig(t, oneService(t, "", a))
	h := newHarness(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go h.gw.Watch(ctx)

	req := func() string {
		r, _ := http.NewRequest("GET", h.front.URL+"/", nil)
		res, _ := get(t, nil, r)
		return res.Header.Get("X-Backend")
	}
	if got := req(); got != "a" {
		t.Fatalf("before reload: %q", got)
	}
	stateBefore := h.gw.table.Load().upstreams["svc"].endpoints[0].state

	// A config that fails validation is refused as a whole.
	bad := parseConfig(t, oneService(t, "", a))
	bad.Routes[0].Service = "missing"
	if err := h.gw.Reload(bad); err == nil {
		t.Fatal("reload of an invalid config succeeded")
	}
	if got := req(); got != "a" {
		t.Fatalf("after bad reload: %q, want the last good config", got)
	}
	if h.gw.reloadFailures.Load() != 1 || h.gw.lastReloadErr.Load() == nil {
		t.Errorf("a failed reload was not recorded")
	}

	// The same instance kept: its state survives. A new route appears.
	next := parseConfig(t, `
listeners: [{address: "127.0.0.1:0"}]
services:
  svc: {instances: [`+strings.TrimSpace(strings.TrimPrefix(instancesYAML(t, a), "      - "))+`]}
  other: {instances: [`+strings.TrimSpace(strings.TrimPrefix(instancesYAML(t, b), "      - "))+`]}
routes:
  - {name: all, match: {path_prefix: /}, service: svc}
  - {name: other, match: {path: /other}, service: other}
`)
	if err := h.gw.Reload(next); err != nil {
		t.Fatal(err)
	}
	h.store.Publish(staticSnap(next))
	waitFor(t, func() bool {
		r, _ := http.NewRequest("GET", h.front.URL+"/other", nil)
		res, _ := get(t, nil, r)
		return res.Header.Get("X-Backend") == "b"
	})
	if st := h.gw.table.Load().upstreams["svc"].endpoints[0].state; st != stateBefore {
		t.Errorf("per-instance state was not carried across the reload")
	}
	if h.gw.lastReloadErr.Load() != nil {
		t.Errorf("last reload error not cleared after a good reload")
	}
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestClientGoneDuringIdleStream(t *testing.T) {
	t.Parallel()
	backendDone := make(chan struct{})
	back := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(backendDone)
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done() // the stream idles until the gateway hangs up
	}))
	defer back.Close()
	h := newHarness(t, parseConfig(t, oneService(t, "", back)))
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", h.front.URL+"/events", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if l, _ := bufio.NewReader(res.Body).ReadString('\n'); l != "data: one\n" {
		t.Fatalf("first line %q", l)
	}
	cancel()
	res.Body.Close()
	select {
	case <-backendDone:
	case <-time.After(3 * time.Second):
		t.Fatal("the upstream stream was not closed after the client left")
	}
	waitFor(t, func() bool { return h.gw.table.Load().upstreams["svc"].endpoints[0].state.inFlight.Load() == 0 })
}

func TestListenTLSWithHTTP2AndH2C(t *testing.T) {
	t.Parallel()
	back := named("ok")
	defer back.Close()
	cfg := parseConfig(t, `
listeners:
  - {name: https, address: "127.0.0.1:0", tls: {cert_file: ../config/testdata/tls/test-only-cert.pem, key_file: ../config/testdata/tls/test-only-key.pem}}
  - {name: h2c, address: "127.0.0.1:0", h2c: true}
admin: {address: "127.0.0.1:0"}
services:
  svc:
    instances:
`+instancesYAML(t, back)+`
routes: [{match: {path_prefix: /}, service: svc}]
`)
	store := newStoreFor(cfg)
	gw, err := New(cfg, Options{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := Listen(cfg, gw, gw.AdminHandler(nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	srv.Serve()
	defer srv.Shutdown(context.Background(), gw)
	addrs := srv.Addrs()

	tlsClient := &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, // the test-only self-signed pair
		ForceAttemptHTTP2: true,
	}}
	defer tlsClient.CloseIdleConnections()
	res, err := tlsClient.Get("https://" + addrs["https"] + "/x")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.ProtoMajor != 2 || res.Header.Get("X-Backend") != "ok" {
		t.Errorf("https: proto %s backend %q, want HTTP/2 from ok", res.Proto, res.Header.Get("X-Backend"))
	}

	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	h2cClient := &http.Client{Transport: &http.Transport{Protocols: &p}}
	defer h2cClient.CloseIdleConnections()
	res, err = h2cClient.Get("http://" + addrs["h2c"] + "/y")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.ProtoMajor != 2 || string(body) != "/y" {
		t.Errorf("h2c: proto %s body %q", res.Proto, body)
	}
}

func TestDiscoveredRoutes(t *testing.T) {
	t.Parallel()
	declared, found := named("declared"), named("found")
	defer declared.Close()
	defer found.Close()
	cfg := parseConfig(t, oneService(t, "", declared))
	store := discovery.NewStore()
	gw, err := New(cfg, Options{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(gw)
	defer front.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go gw.Watch(ctx)

	h, p := hostPort(t, found.URL)
	snap := discovery.StaticSnapshot(cfg.Services, time.Now())
	snap.Services["carts"] = &discovery.Service{Name: "carts", Instances: []*discovery.Instance{
		discovery.NewInstance(discovery.Instance{Service: "carts", Address: h, Port: p, Source: "consul"}),
	}}
	snap.Routes = []discovery.RouteHint{
		{Service: "carts", PathPrefix: "/carts", Origin: "consul tag"},
		{Service: "carts", PathPrefix: "/", Origin: "consul tag"}, // loses to the configured "/" route
	}
	store.Publish(snap)
	backend := func(path string) string {
		req, _ := http.NewRequest("GET", front.URL+path, nil)
		res, _ := get(t, nil, req)
		return res.Header.Get("X-Backend")
	}
	waitFor(t, func() bool { return backend("/carts/1") == "found" })
	if got := backend("/other"); got != "declared" {
		t.Errorf("/other went to %q; a configured route must win over a discovered one with the same match", got)
	}
	up := gw.table.Load().upstreams["carts"]
	if up == nil || up.cfg.LoadBalancer.Policy != config.DefaultPolicy {
		t.Errorf("undeclared service built without the default settings: %+v", up)
	}
}
