// Package adminui tests the admin page (/admin/ui) end to end: a real
// gateway on real listeners, two real instances, and the page driven in
// headless Chromium (Debian's chromium through chromedp). Killing an
// instance must show on the page, without a reload, within a few seconds.
package adminui

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"go.uber.org/goleak"

	"github.com/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/discovery"
	"github.com/meshgate/meshgate/internal/testproc"
	"github.com/meshgate/meshgate/proxy"
)

// TestMain fails the package when a gateway, backend or browser goroutine
// outlives its test (the cleanups run after deferred calls, so the check
// is here rather than in each test).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// gateway is a meshgate gateway in this process, as cmd/meshgate runs it:
// proxy.New on a static catalog, proxy.Listen for the traffic and admin
// listeners.
type gateway struct {
	traffic, admin string // base URLs
	srv            *proxy.Server
	gw             *proxy.Gateway
	stopOnce       sync.Once
}

// shutdown stops the listeners; safe to call more than once.
func (g *gateway) shutdown() {
	g.stopOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		g.srv.Shutdown(ctx, g.gw)
		g.gw.Close()
	})
}

// backend is an instance that answers 200 with its name.
func backend(t *testing.T, name string) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend", name)
		io.WriteString(w, name)
	}))
	t.Cleanup(s.Close)
	return s
}

func hostPort(t *testing.T, s *httptest.Server) (string, int) {
	t.Helper()
	h, p, err := net.SplitHostPort(s.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(p)
	return h, port
}

// startGateway serves service "shop" on instances shop-a and shop-b. The
// breaker opens and outlier detection ejects after 2 consecutive
// failures, and both stay so for a minute, longer than the test.
func startGateway(t *testing.T, a, b *httptest.Server) *gateway {
	t.Helper()
	ha, pa := hostPort(t, a)
	hb, pb := hostPort(t, b)
	yaml := fmt.Sprintf(`
listeners: [{address: "127.0.0.1:0"}]
admin: {address: "127.0.0.1:0"}
services:
  shop:
    load_balancer: {policy: round_robin}
    circuit_breaker: {consecutive_failures: 2, open_time: 1m}
    outlier_detection: {consecutive_failures: 2, base_ejection_time: 1m, max_ejection_percent: 50}
    instances:
      - {id: shop-a, address: %q, port: %d}
      - {id: shop-b, address: %q, port: %d}
routes:
  - {name: shop, match: {path_prefix: /}, service: shop}
`, ha, pa, hb, pb)
	cfg, err := config.Parse("adminui_test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	store := discovery.NewStore()
	store.Publish(discovery.StaticSnapshot(cfg.Services, time.Now()))
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	gw, err := proxy.New(cfg, proxy.Options{Store: store, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := proxy.Listen(cfg, gw, gw.AdminHandler(nil), log)
	if err != nil {
		t.Fatal(err)
	}
	srv.Serve()
	g := &gateway{
		traffic: "http://" + srv.Addrs()[cfg.Listeners[0].Name],
		admin:   "http://" + srv.AdminAddr(),
		srv:     srv, gw: gw,
	}
	t.Cleanup(g.shutdown)
	return g
}

// chromium returns the browser to drive, or skips (fails in CI, which
// installs it).
func chromium(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("MESHGATE_CHROMIUM"), "chromium", "/usr/bin/chromium"} {
		if p == "" {
			continue
		}
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is missing; CI installs it (apt-get install chromium), and so does make tools")
	}
	t.Skip("chromium is missing: apt-get install --no-install-recommends chromium (or set MESHGATE_CHROMIUM)")
	return ""
}

// rowStates reads data-state of every instance row on the page.
const rowStates = `Object.fromEntries([...document.querySelectorAll("tr[data-instance]")].map(r => [r.dataset.instance, r.dataset.state]))`

func TestPageShowsAKilledInstance(t *testing.T) {
	exe := chromium(t)
	a, b := backend(t, "a"), backend(t, "b")
	g := startGateway(t, a, b)

	// The whole browser part is bounded; the first Run starts the browser
	// and must not carry a timeout of its own (chromedp.Run docs).
	deadline, stopDeadline := context.WithTimeout(context.Background(), 30*time.Second)
	defer stopDeadline()
	browserLog := &testproc.Output{}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox, // CI runs as root
		chromedp.DisableGPU,
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.CombinedOutput(browserLog),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(deadline, opts...)
	defer cancelAlloc()
	ctx, cancelTab := chromedp.NewContext(allocCtx, chromedp.WithErrorf(t.Logf))
	defer cancelTab()
	defer func() {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := chromedp.Cancel(cctx); err != nil {
			t.Logf("closing the browser: %v", err)
		}
	}()
	fail := func(format string, args ...any) {
		t.Helper()
		states, _ := chromedp.Run(ctx, chromedp.Evaluate[map[string]string](rowStates))
		banner, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("error-banner").textContent`))
		t.Fatalf(format+"\nrows on the page: %v\nbanner: %q\nbrowser output:\n%s", append(args, states, banner, browserLog.Tail(4<<10))...)
	}
	// waitFor polls a predicate in the page, bounded by within.
	waitFor := func(what, predicate string, within time.Duration) {
		t.Helper()
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](predicate,
			chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(within))); err != nil {
			fail("waiting %s for %s: %v", within, what, err)
		}
	}

	if err := chromedp.Do(ctx, chromedp.Navigate(g.admin+"/admin/ui")); err != nil {
		t.Fatalf("opening %s/admin/ui: %v\nbrowser output:\n%s", g.admin, err, browserLog.Tail(4<<10))
	}
	waitFor("both instances healthy",
		`document.querySelector('tr[data-instance="shop-a"]')?.dataset.state === "healthy" && `+
			`document.querySelector('tr[data-instance="shop-b"]')?.dataset.state === "healthy"`, 10*time.Second)
	waitFor("the route listed", `document.querySelector('tr[data-route="shop"]')?.textContent.includes("shop")`, time.Second)
	// A mark on the window: it is gone if the page reloads.
	first, err := chromedp.Run(ctx, chromedp.Evaluate[string](
		`window.__meshgateTestMark = "kept"; document.getElementById("last-refresh").getAttribute("datetime")`))
	if err != nil {
		fail("reading the last refresh time: %v", err)
	}

	// Kill shop-a: its listener closes, so the gateway's dials are refused.
	a.Close()
	for i := range 10 {
		res, err := http.Get(g.traffic + "/")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		// GETs are retried on the live instance: no client sees the kill.
		if res.StatusCode != 200 || res.Header.Get("X-Backend") != "b" {
			t.Fatalf("request %d after the kill: status %d from %q, want 200 from b", i, res.StatusCode, res.Header.Get("X-Backend"))
		}
	}
	var admin struct {
		Services []struct {
			Instances []struct {
				ID       string `json:"id"`
				Failures uint64 `json:"failures_total"`
			} `json:"instances"`
		} `json:"services"`
	}
	res, err := http.Get(g.admin + "/admin/instances")
	if err != nil {
		t.Fatal(err)
	}
	err = json.NewDecoder(res.Body).Decode(&admin)
	res.Body.Close()
	if err != nil || len(admin.Services) != 1 || len(admin.Services[0].Instances) != 2 {
		t.Fatalf("/admin/instances: %v %+v", err, admin)
	}

	waitFor("shop-a shown as ejected or breaker open, shop-b healthy",
		`["ejected", "breaker-open"].includes(document.querySelector('tr[data-instance="shop-a"]')?.dataset.state) && `+
			`document.querySelector('tr[data-instance="shop-b"]')?.dataset.state === "healthy"`, 5*time.Second)
	got, err := chromedp.Run(ctx, chromedp.Evaluate[struct {
		Mark, Refreshed, Label, Class string
		Banner                        bool
	}](`({
		mark: String(window.__meshgateTestMark),
		refreshed: document.getElementById("last-refresh").getAttribute("datetime"),
		label: document.querySelector('tr[data-instance="shop-a"]').textContent,
		class: document.querySelector('tr[data-instance="shop-a"]').className,
		banner: !document.getElementById("error-banner").hidden,
	})`))
	if err != nil {
		fail("reading the page: %v", err)
	}
	if got.Mark != "kept" {
		fail("the page reloaded (mark %q); it must refresh in place", got.Mark)
	}
	if got.Refreshed == "" || got.Refreshed == first {
		fail("last refresh %q, first %q: the refresh time did not move", got.Refreshed, first)
	}
	if !strings.Contains(got.Label, "ejected") && !strings.Contains(got.Label, "breaker open") {
		fail("shop-a row %q has no ejected or breaker open label", got.Label)
	}
	if !strings.Contains(got.Class, "state-ejected") && !strings.Contains(got.Class, "state-breaker-open") {
		fail("shop-a row class %q does not highlight it", got.Class)
	}
	if got.Banner {
		fail("the error banner shows while the admin API answers")
	}
	if dir := os.Getenv("MESHGATE_ADMINUI_SCREENSHOTS"); dir != "" {
		screenshot(ctx, t, filepath.Join(dir, "adminui-killed.png"))
	}

	// The admin API goes away: the banner says so, the last data stays.
	g.shutdown()
	waitFor("the error banner", `!document.getElementById("error-banner").hidden && `+
		`document.getElementById("error-banner").textContent.includes("unreachable")`, 5*time.Second)
	waitFor("the rows kept", `document.querySelectorAll("tr[data-instance]").length === 2`, time.Second)
	if dir := os.Getenv("MESHGATE_ADMINUI_SCREENSHOTS"); dir != "" {
		screenshot(ctx, t, filepath.Join(dir, "adminui-unreachable.png"))
	}
}

// screenshot saves the page as a PNG, for a person to look at
// (MESHGATE_ADMINUI_SCREENSHOTS=dir).
func screenshot(ctx context.Context, t *testing.T, path string) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1400, 800)); err != nil {
		t.Fatal(err)
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s", path)
}

// TestPageServedByTheAdminListener checks, without a browser, that the
// admin listener itself serves the page and its assets.
func TestPageServedByTheAdminListener(t *testing.T) {
	a, b := backend(t, "a"), backend(t, "b")
	g := startGateway(t, a, b)
	client := &http.Client{
		Timeout: 5 * time.Second,
		// The page must answer on /admin/ui itself, not through a redirect.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	defer client.CloseIdleConnections()
	tests := []struct{ path, contentType, contains string }{
		{"/admin/ui", "text/html; charset=utf-8", `<script src="/admin/ui/app.js"`},
		{"/admin/ui/", "text/html; charset=utf-8", `<link rel="stylesheet" href="/admin/ui/style.css">`},
		{"/admin/ui/app.js", "text/javascript; charset=utf-8", `fetch(path`},
		{"/admin/ui/style.css", "text/css; charset=utf-8", `.banner`},
	}
	for _, tc := range tests {
		res, err := client.Get(g.admin + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Errorf("GET %s: status %d, want 200", tc.path, res.StatusCode)
			continue
		}
		if ct := res.Header.Get("Content-Type"); ct != tc.contentType {
			t.Errorf("GET %s: Content-Type %q, want %q", tc.path, ct, tc.contentType)
		}
		if cc := res.Header.Get("Cache-Control"); cc == "" {
			t.Errorf("GET %s: no Cache-Control", tc.path)
		}
		if !strings.Contains(string(body), tc.contains) {
			t.Errorf("GET %s: body lacks %q", tc.path, tc.contains)
		}
	}
	res, err := client.Get(g.admin + "/admin/nothing")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 404 || !strings.Contains(string(body), "/admin/ui") {
		t.Errorf("unknown admin path: status %d, body %s; want 404 naming /admin/ui", res.StatusCode, body)
	}
}
