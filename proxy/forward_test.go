package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
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
	type fwd struct{ xff, proto, host, forwarded string }
	seen := make(chan fwd, 1)
	back := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		seen <- fwd{r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Forwarded-Host"), r.Header.Get("Forwarded")}
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
			in:   fwd{"6.6.6.6", "https", "evil.test", "for=6.6.6.6;proto=https"},
			want: fwd{"127.0.0.1", "http", "shop.test", ""}, wantCIP: "127.0.0.1"},
		{name: "no incoming headers", hops: 1,
			want: fwd{"127.0.0.1", "http", "shop.test", ""}, wantCIP: "127.0.0.1"},
		{name: "one trusted hop appends", hops: 1,
			in:   fwd{"6.6.6.6, 203.0.113.7", "https", "shop.example", "for=203.0.113.7"},
			want: fwd{"6.6.6.6, 203.0.113.7, 127.0.0.1", "https", "shop.example", "for=203.0.113.7"}, wantCIP: "203.0.113.7"},
		{name: "two trusted hops", hops: 2,
			in:   fwd{"6.6.6.6, 203.0.113.7, 10.0.0.2", "", "", ""},
			want: fwd{"6.6.6.6, 203.0.113.7, 10.0.0.2, 127.0.0.1", "http", "shop.test", ""}, wantCIP: "203.0.113.7"},
	}
	for _, tc := range tests {
		for _, via := range viaPaths {
			t.Run(tc.name+" via "+via.name, func(t *testing.T) {
				h := newHarness(t, parseConfig(t, oneService(t, fmt.Sprintf("server: {trusted_hops: %d}", tc.hops), back)))
				req, _ := http.NewRequest(via.method, h.front.URL+"/", via.body())
				req.Host = "shop.test"
				for k, v := range map[string]string{"X-Forwarded-For": tc.in.xff, "X-Forwarded-Proto": tc.in.proto,
					"X-Forwarded-Host": tc.in.host, "Forwarded": tc.in.forwarded} {
					if v != "" {
						req.Header.Set(k, v)
					}
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

// viaPaths are the two ways a request reaches its upstream: meshgate's own
// HTTP/1.1 client (no body, or a short one of known length) and net/http's
// Transport (a streamed body). body returns the request body that selects
// the path.
var viaPaths = []struct {
	name, method string
	body         func() io.Reader
}{
	{name: "h1 client", method: "GET", body: func() io.Reader { return nil }},
	{name: "transport", method: "POST", body: func() io.Reader { return io.MultiReader(strings.NewReader("streamed")) }},
}

// endpointOf returns the state of the first instance of svc in h's table.
func endpointOf(h *harness, svc string) *endpointState {
	return h.gw.table.Load().upstreams[svc].endpoints[0].state
}

func idleConns(st *endpointState) int {
	st.pool.mu.Lock()
	defer st.pool.mu.Unlock()
	return len(st.pool.idle)
}

func TestBrokenResponseIsAbortedAndCounted(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, resp string }{
		{name: "content length cut short", resp: "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort"},
		{name: "chunked body cut short", resp: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel"},
	}
	for _, tc := range tests {
		for _, via := range viaPaths {
			t.Run(tc.name+" via "+via.name, func(t *testing.T) {
				t.Parallel()
				b := newRawBackend(t, func(conn, n int, req *http.Request) (string, bool) { return tc.resp, true })
				h := newHarness(t, parseConfig(t, b.config(t, "")))
				const requests = 2
				for i := 0; i < requests; i++ {
					req, _ := http.NewRequest(via.method, h.front.URL+"/", via.body())
					res, err := http.DefaultClient.Do(req)
					if err == nil {
						_, err = io.ReadAll(res.Body)
						res.Body.Close()
					}
					if err == nil {
						t.Errorf("request %d: the client read a cut-short body as complete", i)
					}
				}
				st := endpointOf(h, "svc")
				waitFor(t, func() bool { return st.inFlight.Load() == 0 })
				if f := st.failures.Load(); f != requests {
					t.Errorf("failures = %d, want %d", f, requests)
				}
				if n := idleConns(st); n != 0 {
					t.Errorf("%d broken connections pooled", n)
				}
			})
		}
	}
}

// rawExchange sends req on a new connection to the front of h, runs after
// (which may write more and half-close), and returns a reader of what the
// gateway sends back.
func rawExchange(t *testing.T, h *harness, req string, after func(c *net.TCPConn)) *bufio.Reader {
	t.Helper()
	c, err := net.Dial("tcp", h.front.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, req)
	if after != nil {
		after(c.(*net.TCPConn))
	}
	return bufio.NewReader(c)
}

func TestClientBodyFailures(t *testing.T) {
	t.Parallel()
	back := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
	}))
	t.Cleanup(back.Close) // the subtests run after this function returns
	tests := []struct {
		name       string
		head       string
		after      func(c *net.TCPConn)
		wantStatus int
	}{
		{name: "short buffered body, then half-close",
			head:  "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n",
			after: func(c *net.TCPConn) { c.Write(make([]byte, 500)); c.CloseWrite() }, wantStatus: 400},
		{name: "short streamed body, then half-close",
			head:  "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n",
			after: func(c *net.TCPConn) { c.Write(make([]byte, 40000)); c.CloseWrite() }, wantStatus: 400},
		{name: "malformed chunk after 40000 bytes",
			head: "POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n",
			after: func(c *net.TCPConn) {
				fmt.Fprintf(c, "%x\r\n%s\r\nzz\r\n", 40000, make([]byte, 40000))
			}, wantStatus: 400},
		{name: "chunked body over the limit",
			head: "POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n",
			after: func(c *net.TCPConn) {
				fmt.Fprintf(c, "%x\r\n%s\r\n", 140000, make([]byte, 140000))
			}, wantStatus: 413},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// A response header timeout, so that a request misread as waiting
			// for the upstream ends.
			hh, port := hostPort(t, back.URL)
			h := newHarness(t, parseConfig(t, fmt.Sprintf(`
listeners: [{address: "127.0.0.1:0"}]
server: {max_body_bytes: 128KiB}
services:
  svc:
    timeouts: {response_header: 1s}
    instances: [{address: %q, port: %d}]
routes: [{match: {path_prefix: /}, service: svc}]
`, hh, port)))
			res, err := http.ReadResponse(rawExchange(t, h, tc.head, tc.after), nil)
			if err != nil {
				t.Fatalf("no response: %v", err)
			}
			if res.StatusCode != tc.wantStatus {
				t.Errorf("status %d, want %d", res.StatusCode, tc.wantStatus)
			}
			st := endpointOf(h, "svc")
			waitFor(t, func() bool { return st.inFlight.Load() == 0 })
			if f := st.failures.Load(); f != 0 {
				t.Errorf("the client's failure was counted against the instance: failures = %d", f)
			}
		})
	}
}

func TestClientGoneGetsNoAnswer(t *testing.T) {
	t.Parallel()
	back := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // answers only when the gateway gives up
	}))
	defer back.Close()
	h := newHarness(t, parseConfig(t, oneService(t, "", back)))
	// A client that closes its sending side is gone as far as net/http can
	// tell, but could still read: it must not read an empty 200 as the
	// answer.
	br := rawExchange(t, h, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", func(c *net.TCPConn) { c.CloseWrite() })
	if got, err := br.Peek(12); err != io.EOF {
		t.Errorf("the client that left got %q (%v), want the connection closed without an answer", got, err)
	}
	waitFor(t, func() bool { return strings.Contains(h.logs.String(), `"status":499`) })
	if f := endpointOf(h, "svc").failures.Load(); f != 0 {
		t.Errorf("failures = %d, want 0", f)
	}
}

func TestStreamedBodies(t *testing.T) {
	t.Parallel()
	echo := func(w http.ResponseWriter, r *http.Request) {
		// Answers while it reads: full duplex, as gRPC-like streams do.
		http.NewResponseController(w).EnableFullDuplex()
		w.WriteHeader(200)
		io.Copy(w, r.Body)
	}
	early := func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "too big for me", http.StatusRequestEntityTooLarge)
	}
	const size = 64 << 20 // well beyond what socket buffers hold
	tests := []struct {
		name       string
		backend    http.HandlerFunc
		sized      bool
		wantStatus int
		wantEcho   bool
	}{
		{name: "full duplex echo, chunked", backend: echo, wantStatus: 200, wantEcho: true},
		{name: "full duplex echo, sized", backend: echo, sized: true, wantStatus: 200, wantEcho: true},
		{name: "early answer to an unread body", backend: early, sized: true, wantStatus: 413},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			back := httptest.NewServer(tc.backend)
			t.Cleanup(back.Close)
			h := newHarness(t, parseConfig(t, oneService(t, "server: {max_body_bytes: 256MiB}", back)))
			// Runs first: a gateway stuck writing to the upstream is freed.
			t.Cleanup(back.CloseClientConnections)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			pr, pw := io.Pipe()
			defer pr.Close()
			go func() {
				chunk := strings.Repeat("a", 64<<10)
				for i := 0; i < size/len(chunk); i++ {
					if _, err := io.WriteString(pw, chunk); err != nil {
						return
					}
				}
				pw.Close()
			}()
			req, _ := http.NewRequestWithContext(ctx, "POST", h.front.URL+"/", pr)
			if tc.sized {
				req.ContentLength = size
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("%v (a body written whole before the response is read deadlocks)", err)
			}
			n, err := io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != tc.wantStatus {
				t.Errorf("status %d, want %d", res.StatusCode, tc.wantStatus)
			}
			if tc.wantEcho && (err != nil || n != size) {
				t.Errorf("echoed %d bytes of %d, err %v", n, size, err)
			}
		})
	}
}

func TestOnlyWebSocketIsTunnelled(t *testing.T) {
	t.Parallel()
	back := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		up := r.Header.Get("Upgrade")
		if up == "" {
			fmt.Fprintf(w, "plain: connection=%q http2-settings=%q", r.Header.Get("Connection"), r.Header.Get("Http2-Settings"))
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n", up)
		brw.Flush()
		line, _ := brw.ReadString('\n')
		io.WriteString(c, "tunnelled: "+line)
	}))
	t.Cleanup(back.Close) // the subtests run after this function returns
	h := newHarness(t, parseConfig(t, oneService(t, "", back)))
	tests := []struct {
		name, upgrade, extra string
		want                 int
	}{
		{name: "websocket", upgrade: "websocket", want: 101},
		{name: "websocket in any case", upgrade: "WebSocket", want: 101},
		{name: "h2c", upgrade: "h2c", extra: "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n", want: 200},
		{name: "another protocol", upgrade: "foo/1", want: 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := net.Dial("tcp", h.front.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprintf(c, "GET /public HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: %s\r\n%s\r\n", tc.upgrade, tc.extra)
			br := bufio.NewReader(c)
			res, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			if res.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", res.StatusCode, tc.want)
			}
			if tc.want == 101 {
				io.WriteString(c, "ping\n")
				if line, _ := br.ReadString('\n'); line != "tunnelled: ping\n" {
					t.Errorf("through the tunnel: %q", line)
				}
				return
			}
			body, _ := io.ReadAll(res.Body)
			if want := `plain: connection="" http2-settings=""`; string(body) != want {
				t.Errorf("upstream saw %s, want %s: the upgrade headers must not reach it", body, want)
			}
		})
	}
}

func TestShutdownWaitsForUpgradeInProgress(t *testing.T) {
	t.Parallel()
	entered, release := make(chan struct{}), make(chan struct{})
	back := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release // the upstream takes its time to agree
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
		brw.Flush()
		io.Copy(c, brw) // echo until closed
	}))
	defer back.Close()
	cfg := parseConfig(t, oneService(t, `admin: {address: "off"}`, back))
	gw, err := New(cfg, Options{Store: newStoreFor(cfg)})
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	srv, err := Listen(cfg, gw, http.NotFoundHandler(), nil)
	if err != nil {
		t.Fatal(err)
	}
	srv.Serve()
	c, err := net.Dial("tcp", srv.Addrs()[cfg.Listeners[0].Name])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	<-entered

	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(ctx, gw) }()
	time.Sleep(50 * time.Millisecond) // Shutdown has begun
	close(release)
	serr := <-shut
	if serr == nil {
		t.Errorf("Shutdown returned nil while a tunnel was open")
	}
	// Once Shutdown returned, the tunnel is closed.
	c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	if res, err := http.ReadResponse(br, nil); err == nil && res.StatusCode == 101 {
		io.WriteString(c, "ping")
		if b, err := br.ReadByte(); err == nil {
			t.Errorf("after Shutdown returned %v the tunnel still relays (%q)", serr, b)
		}
	}
}

func TestUpgradeRefusedAfterShutdownBegan(t *testing.T) {
	t.Parallel()
	back := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
		brw.Flush()
	}))
	defer back.Close()
	h := newHarness(t, parseConfig(t, oneService(t, "", back)))
	if err := h.gw.WaitUpgraded(context.Background()); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", h.front.URL+"/ws", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("an upgrade after shutdown began got %d, want 503", res.StatusCode)
	}
}
