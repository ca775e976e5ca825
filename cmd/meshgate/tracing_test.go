package main

import (
	"fmt"
	"net/http"
	"path/filepath"
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
	p := startMeshgateEnv(t, []string{
		"OTEL_EXPORTER_OTLP_ENDPOINT=http://" + j.OTLPHTTP,
		"OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
		"OTEL_SERVICE_NAME=edge-gateway",
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
