package jaegertest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// testSpan is one span to export as OTLP/JSON.
type testSpan struct {
	service, name   string
	traceID, spanID string
}

func newTestSpan(service, name string) testSpan {
	return testSpan{service: service, name: name, traceID: randHex(16), spanID: randHex(8)}
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// post exports s to j over OTLP/HTTP as JSON, built by hand so that the
// test depends on the wire format rather than on an exporter.
func post(t *testing.T, j *Jaeger, s testSpan) {
	t.Helper()
	end := time.Now()
	start := end.Add(-25 * time.Millisecond)
	body := fmt.Sprintf(`{"resourceSpans":[{
  "resource":{"attributes":[{"key":"service.name","value":{"stringValue":%q}}]},
  "scopeSpans":[{
    "scope":{"name":"jaegertest"},
    "spans":[{
      "traceId":%q,"spanId":%q,"name":%q,"kind":2,
      "startTimeUnixNano":"%d","endTimeUnixNano":"%d",
      "attributes":[
        {"key":"meshgate.test.string","value":{"stringValue":"hello"}},
        {"key":"meshgate.test.int","value":{"intValue":"9007199254740993"}}
      ]
    }]
  }]
}]}`, s.service, s.traceID, s.spanID, s.name, start.UnixNano(), end.UnixNano())
	res, err := http.Post("http://"+j.OTLPHTTP+"/v1/traces", "application/json", bytes.NewBufferString(body))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	got, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("POST /v1/traces: %s: %s", res.Status, got)
	}
}

// checkRoundTrip exports one span and reads it back.
func checkRoundTrip(t *testing.T, j *Jaeger, s testSpan) {
	t.Helper()
	post(t, j, s)
	traces := j.WaitTraces(t, s.service, 15*time.Second, func(tr []Trace) bool { return len(tr) > 0 })
	if len(traces) != 1 || len(traces[0].Spans) != 1 {
		t.Fatalf("got %d traces, want 1 with 1 span: %+v", len(traces), traces)
	}
	tr := traces[0]
	sp := tr.Spans[0]
	for _, c := range []struct{ what, got, want string }{
		{"trace ID", tr.TraceID, s.traceID},
		{"span trace ID", sp.TraceID, s.traceID},
		{"span ID", sp.SpanID, s.spanID},
		{"operation name", sp.OperationName, s.name},
		{"service name", tr.Service(sp), s.service},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.what, c.got, c.want)
		}
	}
	for _, c := range []struct {
		key  string
		want any
	}{
		{"meshgate.test.string", "hello"},
		{"meshgate.test.int", int64(9007199254740993)}, // 2^53+1: lost if decoded as float64
		{"span.kind", "server"},
	} {
		if got, ok := sp.Tag(c.key); !ok || got != c.want {
			t.Errorf("tag %s = %#v (present %v), want %#v", c.key, got, ok, c.want)
		}
	}
	if _, ok := sp.Tag("no.such.tag"); ok {
		t.Error("Tag reports a tag the span does not have")
	}
	if sp.Duration < 20_000 || sp.Duration > 30_000 {
		t.Errorf("duration = %dµs, want 25000", sp.Duration)
	}
	if got := j.Services(t); !slices.Equal(got, []string{s.service}) {
		t.Errorf("services = %q, want only %q", got, s.service)
	}
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	j := Start(t)
	if got := j.Traces(t, "unknown-service"); len(got) != 0 {
		t.Errorf("traces of an unknown service = %+v, want none", got)
	}
	checkRoundTrip(t, j, newTestSpan("meshgate-roundtrip", "GET /widgets"))
}

// TestParallelInstances starts two Jaegers at once: they must get
// distinct ports and each see only the spans sent to it.
func TestParallelInstances(t *testing.T) {
	t.Parallel()
	addrs := make(chan []string, 2)
	t.Run("instances", func(t *testing.T) {
		for _, name := range []string{"a", "b"} {
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				j := Start(t)
				addrs <- []string{j.OTLPHTTP, j.OTLPGRPC, j.Query}
				checkRoundTrip(t, j, newTestSpan("meshgate-"+name, "op-"+name))
			})
		}
	})
	close(addrs)
	seen := map[string]bool{}
	for set := range addrs {
		for _, a := range set {
			if seen[a] {
				t.Errorf("address %s used twice", a)
			}
			seen[a] = true
		}
	}
	if len(seen) != 6 {
		t.Errorf("saw %d distinct addresses, want 6", len(seen))
	}
}

// TestStop checks that Stop leaves nothing running: the process is gone
// and its ports are closed.
func TestStop(t *testing.T) {
	t.Parallel()
	j := Start(t)
	pid := j.cmd.Process.Pid
	began := time.Now()
	j.Stop()
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("Stop took %s; jaeger should exit promptly on SIGINT", d)
	}
	select {
	case <-j.exited:
	default:
		t.Fatal("Stop returned before jaeger exited")
	}
	if !j.cmd.ProcessState.Exited() || j.cmd.ProcessState.ExitCode() != 0 {
		t.Errorf("jaeger did not exit cleanly on SIGINT: %s\n%s", j.cmd.ProcessState, j.Log())
	}
	if err := syscall.Kill(-pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("process group %d still exists after Stop (kill 0: %v)", pid, err)
	}
	for _, addr := range []string{j.OTLPHTTP, j.OTLPGRPC, j.Query} {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after Stop", addr)
		}
	}
	j.Stop() // a second Stop is harmless
}

func TestConfigMovesEveryPort(t *testing.T) {
	t.Parallel()
	p := ports{otlpGRPC: 1001, otlpHTTP: 1002, queryHTTP: 1003, queryGRPC: 1004, health: 1005}
	cfg := p.config()
	for _, want := range []string{
		"127.0.0.1:1001", "127.0.0.1:1002", "127.0.0.1:1003", "127.0.0.1:1004", "127.0.0.1:1005",
		"level: none", "enable_tracing: false",
	} {
		if !bytes.Contains([]byte(cfg), []byte(want)) {
			t.Errorf("config lacks %q:\n%s", want, cfg)
		}
	}
	// Jaeger's defaults, none of which may appear.
	for _, port := range []string{"4317", "4318", "16686", "16685", "13133", "13132", "8888", "5778", "5779", "14250", "14268", "9411", "55679"} {
		if bytes.Contains([]byte(cfg), []byte(":"+port)) {
			t.Errorf("config uses default port %s:\n%s", port, cfg)
		}
	}
}

// TestStartPortTaken checks that a port taken before Jaeger binds it is
// reported as errPortTaken, which makes Start retry, with Jaeger's output.
func TestStartPortTaken(t *testing.T) {
	t.Parallel()
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	p, err := freePorts()
	if err != nil {
		t.Fatal(err)
	}
	// Take the OTLP/HTTP port first and give Jaeger that one: a port
	// freePorts found free may be taken by a parallel test before we
	// listen on it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	p.otlpHTTP = ln.Addr().(*net.TCPAddr).Port
	j, err := start(bin, t.TempDir(), p)
	if err == nil {
		j.Stop()
		t.Fatal("jaeger started although its OTLP/HTTP port was taken")
	}
	if !errors.Is(err, errPortTaken) {
		t.Errorf("error is not errPortTaken: %v", err)
	}
	if !strings.Contains(err.Error(), "jaeger output:") || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("error lacks jaeger's output: %v", err)
	}
}
