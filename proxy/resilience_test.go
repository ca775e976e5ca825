package proxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshgate/meshgate/resilience"
)

// failing is a backend whose behaviour tests switch at run time, counting
// the requests it sees.
type failing struct {
	srv    *httptest.Server
	name   string
	seen   atomic.Int64
	mode   atomic.Value // "ok", "503", "flaky", "stall"
	flip   atomic.Int64
	stalls chan struct{}
}

func newFailing(t testing.TB, name string) *failing {
	f := &failing{name: name, stalls: make(chan struct{})}
	f.mode.Store("ok")
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.seen.Add(1)
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Backend", name)
		w.Header().Set("X-Body-Length", fmt.Sprint(len(body)))
		switch f.mode.Load().(string) {
		case "503":
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		case "flaky":
			if f.flip.Add(1)%2 == 0 {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
		case "stall":
			select {
			case <-f.stalls:
			case <-r.Context().Done():
			}
			return
		}
		io.WriteString(w, name)
	}))
	t.Cleanup(func() {
		select {
		case <-f.stalls:
		default:
			close(f.stalls)
		}
		f.srv.Close()
	})
	return f
}

func resilienceConfig(t testing.TB, service string, backends ...*failing) string {
	var servers []*httptest.Server
	for _, b := range backends {
		servers = append(servers, b.srv)
	}
	return svcConfig(t, service, servers...) +
		"  - {name: optin, match: {path_prefix: /optin}, service: svc, retry_non_idempotent: true}\n"
}

func status(t testing.TB, h *harness, method, path string, body io.Reader, header map[string]string) (int, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(method, h.front.URL+path, body)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode, res.Header
}

func TestRetryOnlyWhenSafe(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		method      string
		path        string
		header      map[string]string
		wantStatus  int
		wantAttempt int64 // requests the failing instance sees + the good one
	}{
		{name: "GET is retried", method: "GET", path: "/", wantStatus: 200, wantAttempt: 2},
		{name: "POST is not retried", method: "POST", path: "/", wantStatus: 503, wantAttempt: 1},
		{name: "POST with Idempotency-Key is retried", method: "POST", path: "/", header: map[string]string{"Idempotency-Key": "k1"}, wantStatus: 200, wantAttempt: 2},
		{name: "POST on an opted-in route is retried", method: "POST", path: "/optin", wantStatus: 200, wantAttempt: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			bad, good := newFailing(t, "bad"), newFailing(t, "good")
			bad.mode.Store("503")
			// Round robin starts with the first instance: the bad one.
			h := newHarness(t, parseConfig(t, resilienceConfig(t, "    circuit_breaker: {disabled: true}\n    outlier_detection: {disabled: true}", bad, good)))
			got, _ := status(t, h, tc.method, tc.path, strings.NewReader("order=1"), tc.header)
			if got != tc.wantStatus {
				t.Errorf("status %d, want %d", got, tc.wantStatus)
			}
			if n := bad.seen.Load() + good.seen.Load(); n != tc.wantAttempt {
				t.Errorf("upstream saw %d requests, want %d", n, tc.wantAttempt)
			}
		})
	}
}

func TestBodyOverReplayLimitIsStreamedNotRetried(t *testing.T) {
	t.Parallel()
	bad, good := newFailing(t, "bad"), newFailing(t, "good")
	bad.mode.Store("503")
	h := newHarness(t, parseConfig(t, resilienceConfig(t, "    retry: {replay_limit: 1KiB}\n    circuit_breaker: {disabled: true}", bad, good)))
	body := strings.Repeat("x", 256<<10)
	got, hdr := status(t, h, "PUT", "/", strings.NewReader(body), nil)
	if got != 503 || bad.seen.Load() != 1 || good.seen.Load() != 0 {
		t.Errorf("status %d, bad saw %d, good saw %d; want the 503, no retry", got, bad.seen.Load(), good.seen.Load())
	}
	if hdr.Get("X-Body-Length") != fmt.Sprint(len(body)) {
		t.Errorf("upstream received %s bytes, want %d", hdr.Get("X-Body-Length"), len(body))
	}
	// A small PUT is retried.
	got, _ = status(t, h, "PUT", "/", strings.NewReader("small"), nil)
	if got != 200 {
		t.Errorf("small PUT: status %d, want 200 after a retry", got)
	}
}

func TestFlakyInstanceCostsClientsNothing(t *testing.T) {
	t.Parallel()
	a, b, c := newFailing(t, "a"), newFailing(t, "b"), newFailing(t, "c")
	b.mode.Store("flaky")
	// Breakers and ejection off: retries alone must hide the failures.
	h := newHarness(t, parseConfig(t, resilienceConfig(t, "    circuit_breaker: {disabled: true}\n    outlier_detection: {disabled: true}", a, b, c)))
	const n = 3000
	ok := 0
	for i := 0; i < n; i++ {
		if got, _ := status(t, h, "GET", "/", nil, nil); got == 200 {
			ok++
		}
	}
	rate := float64(ok) / n
	t.Logf("flaky instance (503 half the time): %d/%d client requests succeeded (%.2f%%); b saw %d", ok, n, 100*rate, b.seen.Load())
	if rate < 0.999 {
		t.Errorf("success rate %.4f, want ≥ 0.999", rate)
	}
}

func TestInstanceKilledUnderLoad(t *testing.T) {
	t.Parallel()
	a, b, c := newFailing(t, "a"), newFailing(t, "b"), newFailing(t, "c")
	h := newHarness(t, parseConfig(t, resilienceConfig(t, "", a, b, c)))
	d := 20 * time.Second
	if testing.Short() {
		d = 3 * time.Second
	}
	var total, failed atomic.Int64
	var wg sync.WaitGroup
	stop := time.Now().Add(d)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	defer client.CloseIdleConnections()
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				res, err := client.Get(h.front.URL + "/")
				total.Add(1)
				if err != nil {
					failed.Add(1)
					continue
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != 200 {
					failed.Add(1)
				}
			}
		}()
	}
	time.Sleep(d / 4)
	b.srv.CloseClientConnections()
	b.srv.Listener.Close()
	wg.Wait()
	t.Logf("instance killed during %v of load: %d requests, %d failed", d, total.Load(), failed.Load())
	if failed.Load() != 0 {
		t.Errorf("%d of %d client requests failed", failed.Load(), total.Load())
	}
}

func TestAllInstancesDown(t *testing.T) {
	t.Parallel()
	a, b, c := newFailing(t, "a"), newFailing(t, "b"), newFailing(t, "c")
	for _, f := range []*failing{a, b, c} {
		f.mode.Store("503")
	}
	h := newHarness(t, parseConfig(t, resilienceConfig(t, `    retry: {budget: {ratio: 0.2, min_per_second: 1}}
    circuit_breaker: {consecutive_failures: 3, open_time: 1m}
    outlier_detection: {disabled: true}`, a, b, c)))
	const n = 200
	start := time.Now()
	codes := map[int]int{}
	for i := 0; i < n; i++ {
		got, _ := status(t, h, "GET", "/", nil, nil)
		codes[got]++
	}
	elapsed := time.Since(start)
	upstream := a.seen.Load() + b.seen.Load() + c.seen.Load()
	amp := float64(upstream) / n
	t.Logf("all instances down: %d client requests → %d upstream requests (amplification %.3f) in %v; statuses %v",
		n, upstream, amp, elapsed.Round(time.Millisecond), codes)
	// At most (1 + ratio) × requests plus the budget's floor over its window.
	if limit := int64(n + n/5 + 1*10); upstream > limit {
		t.Errorf("upstream saw %d requests, over the budget bound %d", upstream, limit)
	}
	if codes[503] != n {
		t.Errorf("statuses %v, want all 503", codes)
	}
	// With every breaker open, answers come at once and say when to retry.
	t0 := time.Now()
	got, hdr := status(t, h, "GET", "/", nil, nil)
	if d := time.Since(t0); got != 503 || hdr.Get("Retry-After") == "" || d > 500*time.Millisecond {
		t.Errorf("with breakers open: status %d, Retry-After %q, in %v", got, hdr.Get("Retry-After"), d)
	}
	before := upstream
	for i := 0; i < 50; i++ {
		status(t, h, "GET", "/", nil, nil)
	}
	if after := a.seen.Load() + b.seen.Load() + c.seen.Load(); after != before {
		t.Errorf("open breakers let %d requests through", after-before)
	}
}

func TestStalledInstanceIsTimedOutAndEjected(t *testing.T) {
	t.Parallel()
	a, b := newFailing(t, "a"), newFailing(t, "b")
	a.mode.Store("stall")
	h := newHarness(t, parseConfig(t, resilienceConfig(t, `    retry: {per_try_timeout: 200ms}
    circuit_breaker: {disabled: true}
    outlier_detection: {consecutive_failures: 2, base_ejection_time: 1m, max_ejection_percent: 50}`, a, b)))
	for i := 0; i < 6; i++ {
		if got, hdr := status(t, h, "GET", "/", nil, nil); got != 200 || hdr.Get("X-Backend") != "b" {
			t.Fatalf("request %d: status %d from %q, want 200 from b after a per-try timeout", i, got, hdr.Get("X-Backend"))
		}
	}
	ep := h.gw.table.Load().upstreams["svc"].endpoints[0]
	if !ep.res.outlier.Ejected(time.Now()) {
		t.Fatal("the stalled instance was not ejected")
	}
	seen := a.seen.Load()
	for i := 0; i < 20; i++ {
		status(t, h, "GET", "/", nil, nil)
	}
	if a.seen.Load() != seen {
		t.Errorf("the ejected instance still got %d requests", a.seen.Load()-seen)
	}
}

func TestBreakerRecoversAndStateSurvivesReload(t *testing.T) {
	t.Parallel()
	a, b := newFailing(t, "a"), newFailing(t, "b")
	a.mode.Store("503")
	cfgText := resilienceConfig(t, `    retry: {attempts: 1}
    circuit_breaker: {consecutive_failures: 2, open_time: 300ms}
    outlier_detection: {disabled: true}`, a, b)
	h := newHarness(t, parseConfig(t, cfgText))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go h.gw.Watch(ctx)
	for i := 0; i < 6; i++ {
		status(t, h, "GET", "/", nil, nil)
	}
	br := h.gw.table.Load().upstreams["svc"].endpoints[0].res.breaker
	if br.State() != "open" {
		t.Fatalf("breaker %s after failures, want open", br.State())
	}
	// A reload with the same breaker settings keeps the open breaker.
	if err := h.gw.Reload(parseConfig(t, cfgText)); err != nil {
		t.Fatal(err)
	}
	if got := h.gw.table.Load().upstreams["svc"].endpoints[0].res.breaker; got != br || got.State() != "open" {
		t.Fatalf("breaker after reload: same=%v state %s", got == br, got.State())
	}
	// Recovery: after open_time a probe goes through and closes it.
	a.mode.Store("ok")
	waitFor(t, func() bool {
		status(t, h, "GET", "/", nil, nil)
		return br.State() == "closed"
	})
}

func TestResilienceDecisionsAreObserved(t *testing.T) {
	t.Parallel()
	bad, good := newFailing(t, "bad"), newFailing(t, "good")
	bad.mode.Store("503")
	cfg := parseConfig(t, resilienceConfig(t, "    circuit_breaker: {consecutive_failures: 1, open_time: 1m}\n    outlier_detection: {disabled: true}", bad, good))
	var mu sync.Mutex
	var events []resilience.Event
	gw, err := New(cfg, Options{Store: newStoreFor(cfg), Observer: func(e resilience.Event) {
		mu.Lock()
		events = append(events, e)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(gw)
	defer front.Close()
	res, err := http.Get(front.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
	waitFor(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		var retry, open bool
		for _, e := range events {
			retry = retry || (e.Kind == resilience.EventRetry && e.Reason == "503" && e.Service == "svc")
			open = open || (e.Kind == resilience.EventBreakerState && e.To == "open" && e.Service == "svc")
		}
		return retry && open
	})
}

func TestRetryBudgetBoundsAmplification(t *testing.T) {
	t.Parallel()
	a, b, c := newFailing(t, "a"), newFailing(t, "b"), newFailing(t, "c")
	for _, f := range []*failing{a, b, c} {
		f.mode.Store("503")
	}
	// No breakers, no ejection: only the budget stands between a failing
	// service and a retry storm.
	h := newHarness(t, parseConfig(t, resilienceConfig(t, `    retry: {attempts: 3, backoff_base: 1ms, backoff_max: 2ms, budget: {ratio: 0.2, min_per_second: 1}}
    circuit_breaker: {disabled: true}
    outlier_detection: {disabled: true}`, a, b, c)))
	const n = 500
	start := time.Now()
	for i := 0; i < n; i++ {
		if got, _ := status(t, h, "GET", "/", nil, nil); got != 503 {
			t.Fatalf("status %d, want the upstream's 503", got)
		}
	}
	elapsed := time.Since(start)
	upstream := a.seen.Load() + b.seen.Load() + c.seen.Load()
	amp := float64(upstream) / n
	// Retries ≤ ratio × requests + min_per_second × window (10s default).
	limit := int64(n + n/5 + 1*10)
	t.Logf("all instances down, breakers off: %d client requests → %d upstream requests in %v (amplification %.3f, budget bound %d; without a budget it would be %d)",
		n, upstream, elapsed.Round(time.Millisecond), amp, limit, 3*n)
	if upstream > limit {
		t.Errorf("upstream saw %d requests, over the budget bound %d", upstream, limit)
	}
	if amp <= 1.0 {
		t.Errorf("amplification %.3f: the budget allowed no retry at all", amp)
	}
}

func TestRouteTimeoutAndBulkheads(t *testing.T) {
	t.Parallel()
	slow := newFailing(t, "slow")
	slow.mode.Store("stall")
	cfg := parseConfig(t, `
listeners: [{address: "127.0.0.1:0"}]
services:
  svc:
    max_concurrent_requests: 1
    retry: {attempts: 1}
    instances:
`+instancesYAML(t, slow.srv)+`
routes:
  - {match: {path_prefix: /}, service: svc, timeout: 300ms}
`)
	h := newHarness(t, cfg)
	// The route's deadline answers 504 while the upstream stalls.
	t0 := time.Now()
	if got, _ := status(t, h, "GET", "/", nil, nil); got != http.StatusGatewayTimeout {
		t.Errorf("status %d, want 504 at the route timeout", got)
	}
	if d := time.Since(t0); d > 3*time.Second {
		t.Errorf("took %v, want about the 300ms route timeout", d)
	}
	// One request in flight fills the bulkhead: the next is shed at once.
	done := make(chan int, 1)
	go func() { got, _ := status(t, h, "GET", "/", nil, nil); done <- got }()
	waitFor(t, func() bool { return h.gw.table.Load().upstreams["svc"].res.limiter.InFlight() == 1 })
	got, hdr := status(t, h, "GET", "/", nil, nil)
	if got != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" {
		t.Errorf("over the bulkhead: status %d Retry-After %q, want 503 with Retry-After", got, hdr.Get("Retry-After"))
	}
	<-done
}

func TestListenerConcurrencyLimit(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	limited := listenerLimit(1, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
	}))
	srv := httptest.NewServer(limited)
	defer srv.Close()
	go http.Get(srv.URL)
	<-entered
	res, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	close(release)
	if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") != "1" {
		t.Errorf("second request: %d Retry-After %q, want 503 with Retry-After 1", res.StatusCode, res.Header.Get("Retry-After"))
	}
}

func TestEjectionSurvivesReloadWithNewSettings(t *testing.T) {
	t.Parallel()
	bad, good := newFailing(t, "bad"), newFailing(t, "good")
	bad.mode.Store("503")
	cfgText := func(base string) string {
		return resilienceConfig(t, `    retry: {attempts: 1}
    circuit_breaker: {disabled: true}
    outlier_detection: {consecutive_failures: 2, base_ejection_time: `+base+`, max_ejection_percent: 50}`, bad, good)
	}
	h := newHarness(t, parseConfig(t, cfgText("1m")))
	for i := 0; i < 4; i++ {
		status(t, h, "GET", "/", nil, nil)
	}
	ejected := func() bool {
		return h.gw.table.Load().upstreams["svc"].endpoints[0].res.outlier.Ejected(time.Now())
	}
	if !ejected() {
		t.Fatal("the failing instance was not ejected")
	}
	// A reload that fails changes nothing; one that changes the ejection
	// settings keeps the ejection in force.
	broken := parseConfig(t, cfgText("2m"))
	broken.Routes[0].Service = "missing"
	if err := h.gw.Reload(broken); err == nil {
		t.Fatal("an invalid reload succeeded")
	}
	if err := h.gw.Reload(parseConfig(t, cfgText("2m"))); err != nil {
		t.Fatal(err)
	}
	if !ejected() {
		t.Error("a reload with new ejection settings lifted the ejection")
	}
}
