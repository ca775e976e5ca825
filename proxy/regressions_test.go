package proxy

// Regression tests from the review of the resilience integration: each
// failed on the code before its fix (R1..R10 name the findings).

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshgate/meshgate/discovery"
	"github.com/meshgate/meshgate/resilience"
)

func backendFunc(t *testing.T, f http.HandlerFunc) *httptest.Server {
	s := httptest.NewServer(f)
	t.Cleanup(s.Close)
	return s
}

func svcConfig(t testing.TB, service string, servers ...*httptest.Server) string {
	return `
listeners: [{address: "127.0.0.1:0"}]
services:
  svc:
` + service + `
    instances:
` + instancesYAML(t, servers...) + `
routes:
  - {name: all, match: {path_prefix: /}, service: svc}
`
}

// R1: a client that leaves during the retry back-off makes inFlight of the
// first instance go to -1 (account called twice).
func TestRegressionInFlightDoubleDecrement(t *testing.T) {
	a := backendFunc(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(503)
	})
	b := backendFunc(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "b") })
	h := newHarness(t, parseConfig(t, svcConfig(t, `    load_balancer: {policy: round_robin}
    circuit_breaker: {disabled: true}
    outlier_detection: {disabled: true}`, a, b)))
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", h.front.URL+"/", nil)
	_, err := http.DefaultClient.Do(req)
	t.Logf("client: %v", err)
	time.Sleep(300 * time.Millisecond)
	for _, ep := range h.gw.table.Load().upstreams["svc"].endpoints {
		t.Logf("%s inFlight=%d requests=%d", ep.inst.ID, ep.state.inFlight.Load(), ep.state.requests.Load())
		if ep.state.inFlight.Load() != 0 {
			t.Errorf("%s: inFlight %d after all requests ended", ep.inst.ID, ep.state.inFlight.Load())
		}
	}
}

// R2: a half-open probe whose client leaves (499) is reported as a success:
// the breaker of a hung instance closes.
func TestRegressionClientGoneClosesHalfOpenBreaker(t *testing.T) {
	mode := make(chan string, 1)
	mode <- "503"
	stall := make(chan struct{})
	t.Cleanup(func() { close(stall) })
	cur := "503"
	a := backendFunc(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case m := <-mode:
			cur = m
		default:
		}
		if cur == "503" {
			w.WriteHeader(503)
			return
		}
		select {
		case <-stall:
		case <-r.Context().Done():
		}
	})
	h := newHarness(t, parseConfig(t, svcConfig(t, `    retry: {attempts: 1}
    circuit_breaker: {consecutive_failures: 1, open_time: 1s}
    outlier_detection: {disabled: true}`, a)))
	status(t, h, "GET", "/", nil, nil)
	br := h.gw.table.Load().upstreams["svc"].endpoints[0].res.breaker
	if br.State() != "open" {
		t.Fatalf("state %s", br.State())
	}
	mode <- "stall"
	time.Sleep(1100 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", h.front.URL+"/", nil)
	_, err := http.DefaultClient.Do(req)
	t.Logf("client: %v", err)
	time.Sleep(100 * time.Millisecond)
	if s := br.State(); s == "closed" {
		t.Errorf("breaker of a hung instance is %s after its probe's client left", s)
	}
}

// R3: non-H1 path (chunked body) does not try another instance when the
// picked one's breaker is half-open with its probe out.
func TestRegressionForwardPathNoRepickOnBreakerDenied(t *testing.T) {
	fail := true
	a := backendFunc(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if fail {
			w.WriteHeader(503)
			return
		}
		io.WriteString(w, "a")
	})
	b := backendFunc(t, func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body); io.WriteString(w, "b") })
	h := newHarness(t, parseConfig(t, svcConfig(t, `    load_balancer: {policy: round_robin}
    retry: {attempts: 1}
    circuit_breaker: {consecutive_failures: 1, open_time: 1s}
    outlier_detection: {disabled: true}`, a, b)))
	ep := h.gw.table.Load().upstreams["svc"].endpoints[0]
	done, _ := ep.res.breaker.Allow()
	done(resilience.OutcomeOf(false))
	time.Sleep(1100 * time.Millisecond)
	probe, ok := ep.res.breaker.Allow() // a long request holds the probe
	if !ok {
		t.Fatal("no probe")
	}
	defer probe(resilience.OutcomeOf(true))
	codes := map[string]map[int]int{"chunked POST": {}, "GET": {}}
	for i := 0; i < 6; i++ {
		req, _ := http.NewRequest("POST", h.front.URL+"/", io.MultiReader(strings.NewReader("x")))
		req.ContentLength = -1
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		codes["chunked POST"][res.StatusCode]++
		got, _ := status(t, h, "GET", "/", nil, nil)
		codes["GET"][got]++
	}
	t.Logf("%v", codes)
	if codes["chunked POST"][503] > 0 {
		t.Errorf("streamed requests got 503 while instance b was healthy: %v", codes)
	}
}

// R4: a retry whose target's breaker refuses turns the upstream's answer
// into the gateway's 503 "no healthy instance".
func TestRegressionRetryToDeniedBreakerLosesAnswer(t *testing.T) {
	a := backendFunc(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(504) })
	b := backendFunc(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "b") })
	h := newHarness(t, parseConfig(t, svcConfig(t, `    load_balancer: {policy: round_robin}
    circuit_breaker: {consecutive_failures: 3, open_time: 1s}
    outlier_detection: {disabled: true}`, a, b)))
	eb := h.gw.table.Load().upstreams["svc"].endpoints[1]
	for i := 0; i < 3; i++ {
		done, _ := eb.res.breaker.Allow()
		done(resilience.OutcomeOf(false))
	}
	time.Sleep(1100 * time.Millisecond)
	probe, ok := eb.res.breaker.Allow()
	if !ok {
		t.Fatal("no probe")
	}
	defer probe(resilience.OutcomeOf(true))
	ea := h.gw.table.Load().upstreams["svc"].endpoints[0]
	for i := 0; i < 2; i++ {
		got, hdr := status(t, h, "GET", "/", nil, nil)
		t.Logf("status %d Retry-After %q; a breaker %s", got, hdr.Get("Retry-After"), ea.res.breaker.State())
		if got == 503 {
			t.Errorf("client got 503 (no instance) though a answered 504")
		}
	}
}

// R5: an ejected instance that leaves and comes back is no longer ejected,
// but its old record still fills the group's ejection quota.
func TestRegressionGhostEjection(t *testing.T) {
	a := backendFunc(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) })
	b := backendFunc(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) })
	cfg := parseConfig(t, svcConfig(t, `    load_balancer: {policy: round_robin}
    retry: {attempts: 1}
    circuit_breaker: {disabled: true}
    outlier_detection: {consecutive_failures: 1, base_ejection_time: 1m, max_ejection_percent: 50}`, a, b))
	h := newHarness(t, cfg)
	status(t, h, "GET", "/", nil, nil) // a fails → ejected
	if !h.gw.table.Load().upstreams["svc"].endpoints[0].res.outlier.Ejected(time.Now()) {
		t.Fatal("a not ejected")
	}
	full := discovery.StaticSnapshot(cfg.Services, time.Now())
	svc := full.Services["svc"]
	without := discovery.NewSnapshot("static", map[string][]*discovery.Instance{"svc": svc.Instances[1:]}, time.Now())
	h.store.Publish(without)
	if err := h.gw.rebuild(nil); err != nil {
		t.Fatal(err)
	}
	h.store.Publish(discovery.NewSnapshot("static", map[string][]*discovery.Instance{"svc": svc.Instances}, time.Now()))
	if err := h.gw.rebuild(nil); err != nil {
		t.Fatal(err)
	}
	eps := h.gw.table.Load().upstreams["svc"].endpoints
	t.Logf("a ejected after returning: %v", eps[0].res.outlier.Ejected(time.Now()))
	for i := 0; i < 6; i++ {
		status(t, h, "GET", "/", nil, nil)
	}
	ea, eb := eps[0].res.outlier.Ejected(time.Now()), eps[1].res.outlier.Ejected(time.Now())
	t.Logf("after 6 failures each way: a ejected %v, b ejected %v", ea, eb)
	if !ea && !eb {
		t.Errorf("no instance can be ejected: the departed record still holds the quota")
	}
}

// R6: route timeout is documented to bound the request up to the response
// headers, yet it cuts a streamed body that takes longer.
func TestRegressionRouteTimeoutCutsBody(t *testing.T) {
	a := backendFunc(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := 0; i < 6; i++ {
			io.WriteString(w, "data: x\n\n")
			w.(http.Flusher).Flush()
			time.Sleep(100 * time.Millisecond)
		}
	})
	cfg := parseConfig(t, `
listeners: [{address: "127.0.0.1:0"}]
services:
  svc:
    outlier_detection: {disabled: true}
    instances:
`+instancesYAML(t, a)+`
routes:
  - {match: {path_prefix: /}, service: svc, timeout: 300ms}
`)
	h := newHarness(t, cfg)
	res, err := http.Get(h.front.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(res.Body)
	res.Body.Close()
	ep := h.gw.table.Load().upstreams["svc"].endpoints[0]
	req, fail, _ := ep.res.breaker.Counts()
	t.Logf("status %d, %d bytes, err %v; breaker window requests %d failures %d; failures_total %d", res.StatusCode, len(b), err, req, fail, ep.state.failures.Load())
	if err != nil {
		t.Errorf("body cut by the route timeout after headers arrived: %v", err)
	}
}

// R7: the route timeout does not apply on the net/http path (chunked body).
func TestRegressionRouteTimeoutIgnoredOnForwardPath(t *testing.T) {
	a := backendFunc(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		time.Sleep(1500 * time.Millisecond)
	})
	cfg := parseConfig(t, `
listeners: [{address: "127.0.0.1:0"}]
services:
  svc:
    instances:
`+instancesYAML(t, a)+`
routes:
  - {match: {path_prefix: /}, service: svc, timeout: 300ms}
`)
	h := newHarness(t, cfg)
	req, _ := http.NewRequest("POST", h.front.URL+"/", io.MultiReader(strings.NewReader("x")))
	req.ContentLength = -1
	t0 := time.Now()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	t.Logf("status %d after %v", res.StatusCode, time.Since(t0).Round(time.Millisecond))
	if res.StatusCode != 504 {
		t.Errorf("route timeout 300ms not applied: %d after %v", res.StatusCode, time.Since(t0))
	}
}

// R8: a back-off longer than what is left of the route's deadline is slept
// anyway, turning the upstream's answer into a late 504.
func TestRegressionBackoffPastDeadline(t *testing.T) {
	a := backendFunc(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(503)
	})
	b := backendFunc(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(503)
	})
	cfg := parseConfig(t, `
listeners: [{address: "127.0.0.1:0"}]
services:
  svc:
    load_balancer: {policy: round_robin}
    circuit_breaker: {disabled: true}
    outlier_detection: {disabled: true}
    instances:
`+instancesYAML(t, a, b)+`
routes:
  - {match: {path_prefix: /}, service: svc, timeout: 300ms}
`)
	h := newHarness(t, cfg)
	t0 := time.Now()
	got, _ := status(t, h, "GET", "/", nil, nil)
	t.Logf("status %d after %v", got, time.Since(t0).Round(time.Millisecond))
	if got != 503 {
		t.Errorf("status %d, want the upstream's 503 at once", got)
	}
}

// R9: statuses: [] is documented as "no status is retried" but the policy
// falls back to 502/503/504.
func TestRegressionEmptyStatusesStillRetry(t *testing.T) {
	var seen atomic.Int64
	a := backendFunc(t, func(w http.ResponseWriter, r *http.Request) { seen.Add(1); w.WriteHeader(503) })
	b := backendFunc(t, func(w http.ResponseWriter, r *http.Request) { seen.Add(1); io.WriteString(w, "b") })
	h := newHarness(t, parseConfig(t, svcConfig(t, `    load_balancer: {policy: round_robin}
    retry: {statuses: []}
    circuit_breaker: {disabled: true}
    outlier_detection: {disabled: true}`, a, b)))
	t.Logf("cfg statuses %#v", h.gw.Config().Services["svc"].Retry.Statuses)
	got, _ := status(t, h, "GET", "/", nil, nil)
	t.Logf("status %d, upstream requests %d", got, seen.Load())
	if seen.Load() != 1 {
		t.Errorf("a 503 was retried with statuses: []")
	}
}

// R10: the breaker learns an attempt's outcome only when its body ends: a
// streamed half-open probe keeps every other request out.
func TestRegressionStreamHoldsHalfOpenProbe(t *testing.T) {
	var fail atomic.Bool
	fail.Store(true)
	a := backendFunc(t, func(w http.ResponseWriter, r *http.Request) {
		if fail.Load() {
			w.WriteHeader(500)
			return
		}
		if r.URL.Path == "/stream" {
			w.Header().Set("Content-Type", "text/event-stream")
			for i := 0; i < 15; i++ {
				io.WriteString(w, "data: x\n\n")
				w.(http.Flusher).Flush()
				time.Sleep(100 * time.Millisecond)
			}
			return
		}
		io.WriteString(w, "ok")
	})
	h := newHarness(t, parseConfig(t, svcConfig(t, `    retry: {attempts: 1}
    circuit_breaker: {consecutive_failures: 1, open_time: 1s}
    outlier_detection: {disabled: true}`, a)))
	status(t, h, "GET", "/", nil, nil)
	fail.Store(false)
	time.Sleep(1100 * time.Millisecond)
	go func() {
		if res, err := http.Get(h.front.URL + "/stream"); err == nil {
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
		}
	}()
	time.Sleep(200 * time.Millisecond)
	codes := map[int]int{}
	for i := 0; i < 5; i++ {
		got, _ := status(t, h, "GET", "/", nil, nil)
		codes[got]++
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("healthy instance, during a streamed probe: %v", codes)
	if codes[503] > 0 {
		t.Errorf("requests refused while the probe's stream runs: %v", codes)
	}
	time.Sleep(1200 * time.Millisecond)
}

func TestRegressionReloadRace(t *testing.T) {
	a := backendFunc(t, func(w http.ResponseWriter, r *http.Request) {
		if time.Now().UnixNano()%3 == 0 {
			w.WriteHeader(503)
			return
		}
		io.WriteString(w, "a")
	})
	b := backendFunc(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "b") })
	cfgs := []string{
		svcConfig(t, "    circuit_breaker: {consecutive_failures: 2, open_time: 1s}", a, b),
		svcConfig(t, "    circuit_breaker: {consecutive_failures: 3, open_time: 1s}\n    outlier_detection: {consecutive_failures: 2}\n    retry: {budget: {ratio: 0.5}}", a, b),
	}
	h := newHarness(t, parseConfig(t, cfgs[0]))
	admin := httptest.NewServer(h.gw.AdminHandler(nil))
	defer admin.Close()
	stop := time.Now().Add(time.Second)
	done := make(chan struct{})
	for i := 0; i < 3; i++ {
		go func() {
			defer func() { done <- struct{}{} }()
			for time.Now().Before(stop) {
				res, err := http.Get(h.front.URL + "/")
				if err == nil {
					io.Copy(io.Discard, res.Body)
					res.Body.Close()
				}
			}
		}()
	}
	go func() {
		defer func() { done <- struct{}{} }()
		for i := 0; time.Now().Before(stop); i++ {
			h.gw.Reload(parseConfig(t, cfgs[i%2]))
			res, err := http.Get(admin.URL + "/admin/instances")
			if err == nil {
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
			}
		}
	}()
	for i := 0; i < 4; i++ {
		<-done
	}
}
