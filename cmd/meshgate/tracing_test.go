package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/meshgate/meshgate/telemetry/jaegertest"
)

// TestTracesReachJaeger runs the binary against a real Jaeger v2: a request
// through the gateway becomes one trace with the gateway's server span, the
// attempt's client span under it, and the caller's trace context continued.
func TestTracesReachJaeger(t *testing.T) {
	j := jaegertest.Start(t)
	back := named("orders-a", 0)
	defer back.Close()
	cfgPath := filepath.Join(t.TempDir(), "edge.yaml")
	writeConfig(t, cfgPath, back)
	// The endpoint and the service name come from the config file, which
	// overrides the environment.
	f, err := os.OpenFile(cfgPath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "telemetry: {otlp_endpoint: \"http://%s/v1/traces\", service_name: edge-gateway}\n", j.OTLPHTTP)
	f.Close()
	p := startMeshgateEnv(t, []string{
		"OTEL_SERVICE_NAME=overridden-by-the-file",
		"OTEL_BSP_SCHEDULE_DELAY=100",
	}, "run", "--config", cfgPath)
	base := "http://" + p.traffic
	waitUntil(t, func() bool { return backendOf(t, base+"/") == "orders-a" })

	const traceID = "5b8efff798038103d269b633813fc60c"
	req, _ := http.NewRequest("GET", base+"/orders/7", nil)
	req.Header.Set("Traceparent", fmt.Sprintf("00-%s-eee19b7ec3c1b174-01", traceID))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()

	// SIGTERM flushes what is queued.
	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := <-p.exited; err != nil {
		t.Fatalf("exit: %v", err)
	}
	traces := j.WaitTraces(t, "edge-gateway", 15*time.Second, func(ts []jaegertest.Trace) bool {
		for _, tr := range ts {
			if tr.TraceID == traceID && len(tr.Spans) >= 2 {
				return true
			}
		}
		return false
	})
	var server, client *jaegertest.Span
	for _, tr := range traces {
		if tr.TraceID != traceID {
			continue
		}
		for i := range tr.Spans {
			s := &tr.Spans[i]
			kind, _ := s.Tag("span.kind")
			switch kind {
			case "server":
				server = s
			case "client":
				client = s
			}
		}
	}
	if server == nil || client == nil {
		t.Fatalf("trace %s lacks a server or client span: %+v", traceID, traces)
	}
	if server.OperationName != "GET /" {
		t.Errorf("server span %q, want %q", server.OperationName, "GET /")
	}
	if len(client.References) == 0 || client.References[0].SpanID != server.SpanID {
		t.Errorf("client span's parent %+v, want the server span %s", client.References, server.SpanID)
	}
	if v, _ := client.Tag("server.port"); v == nil {
		t.Errorf("client span without server.port: %+v", client.Tags)
	}
	if v, _ := server.Tag("http.response.status_code"); fmt.Sprint(v) != "200" {
		t.Errorf("server span status %v", v)
	}
}

// TestTraceAcrossHops follows one request through an edge gateway, the
// sidecar of service orders (inbound, and outbound when orders calls
// users), and the sidecar of users, where the first instance answers 503
// once: Jaeger must hold one trace with every hop, the right parents, one
// service name per meshgate, and the retried attempt.
func TestTraceAcrossHops(t *testing.T) {
	j := jaegertest.Start(t)
	hostPort := func(s *httptest.Server) (string, string) {
		h, p, _ := net.SplitHostPort(strings.TrimPrefix(s.URL, "http://"))
		return h, p
	}
	var failedOnce atomic.Bool
	usersA := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if failedOnce.CompareAndSwap(false, true) {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, `{"user":1}`)
	}))
	defer usersA.Close()
	usersB := httptest.NewServer(usersA.Config.Handler)
	defer usersB.Close()

	env := func(name string) []string {
		return []string{"OTEL_EXPORTER_OTLP_ENDPOINT=http://" + j.OTLPHTTP, "OTEL_SERVICE_NAME=" + name, "OTEL_BSP_SCHEDULE_DELAY=100"}
	}
	conf := func(t *testing.T, name, body string) string {
		p := filepath.Join(t.TempDir(), name+".yaml")
		if err := os.WriteFile(p, []byte("listeners: [{name: http, address: \"127.0.0.1:0\"}]\nadmin: {address: \"127.0.0.1:0\"}\n"+body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ah, ap := hostPort(usersA)
	bh, bp := hostPort(usersB)
	sidecarUsers := startMeshgateEnv(t, env("sidecar-users"), "run", "--access-log", "off", "--config", conf(t, "su", fmt.Sprintf(`services:
  users: {instances: [{address: %s, port: %s}, {address: %s, port: %s}]}
routes: [{match: {path_prefix: /users}, service: users}]
`, ah, ap, bh, bp)))

	// orders calls users through its own sidecar, passing the trace context
	// on as an instrumented service does.
	var sidecarOrdersAddr atomic.Value
	orders := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequest("GET", "http://"+sidecarOrdersAddr.Load().(string)+"/users/1", nil)
		req.Header.Set("Traceparent", r.Header.Get("Traceparent"))
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), 502)
			return
		}
		res.Body.Close()
		io.WriteString(w, `{"order":7}`)
	}))
	defer orders.Close()
	oh, op := hostPort(orders)
	suh, sup, _ := net.SplitHostPort(sidecarUsers.traffic)
	sidecarOrders := startMeshgateEnv(t, env("sidecar-orders"), "run", "--access-log", "off", "--config", conf(t, "so", fmt.Sprintf(`services:
  orders: {instances: [{address: %s, port: %s}]}
  users:  {instances: [{address: %s, port: %s}]}
routes:
  - {match: {path_prefix: /orders}, service: orders}
  - {match: {path_prefix: /users}, service: users}
`, oh, op, suh, sup)))
	sidecarOrdersAddr.Store(sidecarOrders.traffic)
	soh, sop, _ := net.SplitHostPort(sidecarOrders.traffic)
	edge := startMeshgateEnv(t, env("edge"), "run", "--access-log", "off", "--config", conf(t, "edge", fmt.Sprintf(`services:
  orders: {instances: [{address: %s, port: %s}]}
routes: [{match: {path_prefix: /orders}, service: orders}]
`, soh, sop)))

	for _, p := range []*proc{sidecarUsers, sidecarOrders, edge} {
		p.waitReady(t)
	}
	res, err := http.Get("http://" + edge.traffic + "/orders/7")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("status %d: %s", res.StatusCode, body)
	}
	for _, p := range []*proc{edge, sidecarOrders, sidecarUsers} {
		p.cmd.Process.Signal(syscall.SIGTERM)
		if err := <-p.exited; err != nil {
			t.Fatalf("exit: %v", err)
		}
	}
	// edge: server+client; sidecar-orders: 2×(server+client); sidecar-users:
	// server + 2 clients (the 503 and its retry).
	const want = 9
	traces := j.WaitTraces(t, "edge", 15*time.Second, func(ts []jaegertest.Trace) bool {
		return len(ts) == 1 && len(ts[0].Spans) >= want
	})
	tr := traces[0]
	if len(tr.Spans) != want {
		t.Errorf("%d spans in the trace, want %d", len(tr.Spans), want)
	}
	byID := map[string]jaegertest.Span{}
	services := map[string]int{}
	for _, s := range tr.Spans {
		byID[s.SpanID] = s
		services[tr.Service(s)]++
	}
	if services["edge"] != 2 || services["sidecar-orders"] != 4 || services["sidecar-users"] != 3 {
		t.Errorf("spans per service %v, want edge 2, sidecar-orders 4, sidecar-users 3", services)
	}
	roots, retried := 0, 0
	for _, s := range tr.Spans {
		if len(s.References) == 0 {
			roots++
		} else if _, ok := byID[s.References[0].SpanID]; !ok && tr.Service(s) != "sidecar-orders" {
			// Only the outbound call's server span may hang off a span of
			// the test's orders service, which exports nothing.
			t.Errorf("span %s (%s) has a parent outside the trace", s.OperationName, tr.Service(s))
		}
		if v, ok := s.Tag("http.request.resend_count"); ok && fmt.Sprint(v) == "1" {
			retried++
		}
	}
	if roots != 1 {
		t.Errorf("%d root spans, want 1 (the edge's server span)", roots)
	}
	if retried != 1 {
		t.Errorf("%d spans with http.request.resend_count=1, want the retried attempt to users", retried)
	}
}
