package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/meshgate/meshgate/discovery/consultest"
	"github.com/meshgate/meshgate/internal/testproc"
	"github.com/meshgate/meshgate/policies"
	"github.com/meshgate/meshgate/policies/redistest"
)

// writeFile writes data to path atomically (rename), as editors and
// configuration management do.
func writeFile(t *testing.T, path, data string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// hostPort returns the host and port of an httptest server.
func hostPort(s *httptest.Server) (string, string) {
	h, p, _ := net.SplitHostPort(strings.TrimPrefix(s.URL, "http://"))
	return h, p
}

// policyConfig is a config with two services (public, admin), routed by
// path, and the policy directory dir.
func policyConfig(public, admin *httptest.Server, dir, extra string) string {
	ph, pp := hostPort(public)
	ah, ap := hostPort(admin)
	return fmt.Sprintf(`listeners: [{name: http, address: "127.0.0.1:0"}]
admin: {address: "127.0.0.1:0"}
server: {grace_period: 5s}
services:
  public: {instances: [{address: %s, port: %s}]}
  admin: {instances: [{address: %s, port: %s}]}
routes:
  - {name: admin, match: {path_prefix: /admin}, service: admin}
  - {name: public, match: {path_prefix: /}, service: public}
policies: {dir: %s}
%s`, ph, pp, ah, ap, dir, extra)
}

// TestPolicyHotReloadUnderLoad changes the policy files while clients send
// requests continuously: no request fails, and the new policy is in force
// within a second of the file being written. A broken file afterwards
// keeps the last good policies and is reported on /admin/policies.
func TestPolicyHotReloadUnderLoad(t *testing.T) {
	public, admin := named("public", 0), named("admin", 0)
	defer public.Close()
	defer admin.Close()
	dir := t.TempDir()
	polDir := filepath.Join(dir, "policies")
	os.Mkdir(polDir, 0o755)
	const key = "load-test-key"
	policy := func(version string) string {
		return fmt.Sprintf(`policies:
  - name: keys
    applies_to: {all: true}
    authn:
      api_keys:
        keys: [{name: loadgen, sha256: %s}]
    transforms:
      response:
        headers:
          set: {X-Policy-Version: "%s"}
`, policies.HashAPIKey(key), version)
	}
	writeFile(t, filepath.Join(polDir, "keys.yaml"), policy("1"))
	cfgPath := filepath.Join(dir, "meshgate.yaml")
	writeFile(t, cfgPath, policyConfig(public, admin, polDir, ""))
	p := startMeshgate(t, "run", "--config", cfgPath)
	p.waitReady(t)
	base := "http://" + p.traffic

	// Without the key: 401.
	res, err := http.Get(base + "/x")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no key: %d, want 401", res.StatusCode)
	}

	var (
		sent, failed atomic.Int64
		firstV2      atomic.Int64 // unix nanos of the first response with version 2
		stop         = make(chan struct{})
		wg           sync.WaitGroup
		failMu       sync.Mutex
		failures     []string
	)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}, Timeout: 5 * time.Second}
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest("GET", base+"/x", nil)
				req.Header.Set("X-API-Key", key)
				res, err := client.Do(req)
				sent.Add(1)
				if err != nil {
					failed.Add(1)
					failMu.Lock()
					failures = append(failures, err.Error())
					failMu.Unlock()
					continue
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != http.StatusOK {
					failed.Add(1)
					failMu.Lock()
					failures = append(failures, res.Status)
					failMu.Unlock()
				}
				if res.Header.Get("X-Policy-Version") == "2" {
					firstV2.CompareAndSwap(0, time.Now().UnixNano())
				}
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	written := time.Now()
	writeFile(t, filepath.Join(polDir, "keys.yaml"), policy("2"))
	waitUntil(t, func() bool { return firstV2.Load() != 0 })
	inForce := time.Duration(firstV2.Load() - written.UnixNano())
	time.Sleep(500 * time.Millisecond)

	// A broken file: the last good policies stay, requests keep passing.
	writeFile(t, filepath.Join(polDir, "broken.yaml"), "policies:\n  - name: broken\n    applies_to: {all: true}\n    authz: {default: maybe}\n")
	p.waitLog(t, "policy reload failed; keeping the policies in force")
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()

	t.Logf("%d requests, %d failed; new policy in force %v after the write", sent.Load(), failed.Load(), inForce)
	if failed.Load() != 0 {
		t.Errorf("%d of %d requests failed during reloads: %v", failed.Load(), sent.Load(), failures[:min(len(failures), 5)])
	}
	if sent.Load() < 100 {
		t.Errorf("only %d requests sent; the load did not run", sent.Load())
	}
	if inForce > time.Second {
		t.Errorf("new policy in force %v after the write, want within 1s", inForce)
	}

	res, err = http.Get("http://" + p.admin + "/admin/policies")
	if err != nil {
		t.Fatal(err)
	}
	var st policies.Status
	json.NewDecoder(res.Body).Decode(&st)
	res.Body.Close()
	if st.Failures != 1 || !strings.Contains(st.LastError, "broken.yaml:4: policies[0].authz.default") || len(st.Policies) != 1 || st.Policies[0].Name != "keys" {
		t.Errorf("/admin/policies = %+v", st)
	}
	res, err = http.Get("http://" + p.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metricsText, _ := io.ReadAll(res.Body)
	res.Body.Close()
	for _, want := range []string{
		`meshgate_policy_reloads_total{meshgate_result="failure"`,
		`meshgate_policy_decisions_total{meshgate_policy_decision="allow",meshgate_policy_name="keys",meshgate_policy_step="authn"`,
	} {
		if !strings.Contains(string(metricsText), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// SIGHUP reloads the policies too: remove the broken file and signal.
	os.Remove(filepath.Join(polDir, "broken.yaml"))
	p.cmd.Process.Signal(syscall.SIGHUP)
	p.waitLog(t, "policies reloaded")
	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := <-p.exited; err != nil {
		t.Fatalf("exit: %v", err)
	}
}

// rawGet sends a request with the path exactly as given.
func rawGet(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	status, body, err := testproc.RawGet(addr, path)
	if err != nil {
		t.Fatal(err)
	}
	return status, body
}

// TestPathNormalisationBeforeAuthz sends the classic bypass attempts of an
// authorization rule on /admin: each is either refused or normalised to
// /admin and denied; none reaches the admin service.
func TestPathNormalisationBeforeAuthz(t *testing.T) {
	var adminHits atomic.Int64
	public := named("public", 0)
	defer public.Close()
	admin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		adminHits.Add(1)
		io.WriteString(w, "admin "+r.URL.Path)
	}))
	defer admin.Close()
	dir := t.TempDir()
	polDir := filepath.Join(dir, "policies")
	os.Mkdir(polDir, 0o755)
	writeFile(t, filepath.Join(polDir, "admin.yaml"), `policies:
  - name: admin-locked
    applies_to: {path_prefixes: [/admin]}
    authz:
      default: deny
      rules: []
`)
	for _, mode := range []string{"reject", "decode"} {
		t.Run(mode, func(t *testing.T) {
			cfgPath := filepath.Join(dir, mode+".yaml")
			writeFile(t, cfgPath, policyConfig(public, admin, polDir, "")+
				"\n"+strings.Replace("server: {grace_period: 5s, path_normalization: {escaped_slashes: MODE}}", "MODE", mode, 1))
			// The second server key would be a duplicate; rewrite the file
			// with one server mapping.
			data, _ := os.ReadFile(cfgPath)
			writeFile(t, cfgPath, strings.Replace(string(data), "server: {grace_period: 5s}\n", "", 1))
			p := startMeshgate(t, "run", "--config", cfgPath)
			p.waitReady(t)
			cases := []struct {
				path       string
				wantStatus int
				wantBody   string
			}{
				{"/admin", 403, "forbidden"},
				{"/admin/users", 403, "forbidden"},
				{"/public/../admin", 403, "forbidden"},
				{"/public/%2e%2e/admin", 403, "forbidden"},
				{"//admin", 403, "forbidden"},
				{"/./admin/", 403, "forbidden"},
				{"/%61dmin", 403, "forbidden"},
				{"/ADMIN", 200, "public"}, // paths are case-sensitive: not the admin route
				{"/administrator", 200, "public"},
				{"/public/..;/admin", 400, "path parameter on a dot segment"}, // Tomcat would read "/admin"
				{"/public/x", 200, "public"},
			}
			if mode == "reject" {
				cases = append(cases,
					struct {
						path       string
						wantStatus int
						wantBody   string
					}{"/admin%2F..", 400, "encoded slash"},
					struct {
						path       string
						wantStatus int
						wantBody   string
					}{"/public%2F..%2Fadmin", 400, "encoded slash"})
			} else {
				cases = append(cases,
					struct {
						path       string
						wantStatus int
						wantBody   string
					}{"/admin%2F..", 200, "public"}, // "/admin/.." is "/"
					struct {
						path       string
						wantStatus int
						wantBody   string
					}{"/public%2F..%2Fadmin", 403, "forbidden"})
			}
			for _, tc := range cases {
				status, body := rawGet(t, p.traffic, tc.path)
				if status != tc.wantStatus || !strings.Contains(body, tc.wantBody) {
					t.Errorf("GET %s: %d %q, want %d with %q", tc.path, status, body, tc.wantStatus, tc.wantBody)
				}
			}
			if n := adminHits.Load(); n != 0 {
				t.Errorf("the admin service was reached %d times", n)
			}
		})
	}
}

// TestValidatePolicies checks config and policies together, and policy
// files on their own.
func TestValidatePolicies(t *testing.T) {
	public, admin := named("public", 0), named("admin", 0)
	defer public.Close()
	defer admin.Close()
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	bad := filepath.Join(dir, "bad")
	os.Mkdir(good, 0o755)
	os.Mkdir(bad, 0o755)
	writeFile(t, filepath.Join(good, "a.yaml"), "policies:\n  - name: admin\n    applies_to: {routes: [admin]}\n    authz: {default: deny, rules: []}\n")
	writeFile(t, filepath.Join(bad, "a.yaml"), "policies:\n  - name: admin\n    applies_to: {routes: [nope]}\n    authz: {default: deny, rules: [], colour: red}\n")
	goodCfg, badCfg := filepath.Join(dir, "good.yaml"), filepath.Join(dir, "bad.yaml")
	writeFile(t, goodCfg, policyConfig(public, admin, good, ""))
	writeFile(t, badCfg, policyConfig(public, admin, bad, ""))

	tests := []struct {
		name     string
		args     []string
		wantCode int
		want     []string
	}{
		{"good config and policies", []string{"validate", goodCfg}, 0, []string{goodCfg + ": ok"}},
		{"bad policies through the config", []string{"validate", badCfg}, 1, []string{filepath.Join(bad, "a.yaml") + ":4: policies[0].authz.colour: unknown field"}},
		{"policies alone", []string{"validate", "--policies", good}, 0, []string{good + ": ok"}},
		{"bad policy file alone", []string{"validate", "--policies", filepath.Join(bad, "a.yaml")}, 1, []string{"a.yaml:4: policies[0].authz.colour: unknown field"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.CommandContext(context.Background(), binary, tc.args...)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d; output:\n%s", code, tc.wantCode, out.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
		})
	}

	// An unknown route name in applies_to: the binary does not start.
	writeFile(t, filepath.Join(bad, "a.yaml"), "policies:\n  - name: admin\n    applies_to: {routes: [nope]}\n    authz: {default: deny, rules: []}\n")
	cmd := exec.Command(binary, "validate", badCfg)
	out, _ := cmd.CombinedOutput()
	if want := filepath.Join(bad, "a.yaml") + `:3: policies[0].applies_to.routes[0]: no route named "nope" in the config`; !strings.Contains(string(out), want) {
		t.Errorf("validate output lacks %q:\n%s", want, out)
	}
}

func TestHashKey(t *testing.T) {
	cmd := exec.Command(binary, "hash-key")
	cmd.Stdin = strings.NewReader("s3cret\n")
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	// sha256("s3cret")
	if got, want := strings.TrimSpace(string(out)), "1ec1c26b50d5d3c58d9583181af8076655fe00756bf7285940ba3670f99fcba0"; got != want {
		t.Errorf("hash-key = %q, want %q", got, want)
	}
	out, err = exec.Command(binary, "hash-key", "--generate").Output()
	if err != nil {
		t.Fatal(err)
	}
	var key, sum string
	if _, err := fmt.Sscanf(string(out), "key: %s\nsha256: %s", &key, &sum); err != nil || policies.HashAPIKey(key) != sum {
		t.Errorf("hash-key --generate printed %q", out)
	}
}

// TestGlobalRateLimitTwoMeshgates runs two meshgate processes sharing one
// global limit in a real Redis: together they allow what the limit allows
// (within 5%), and with Redis gone each limit takes its failure mode.
func TestGlobalRateLimitTwoMeshgates(t *testing.T) {
	rdb := redistest.Start(t)
	var (
		mu          sync.Mutex
		first, last time.Time
		hits        int
	)
	back := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/limited") {
			now := time.Now()
			mu.Lock()
			if hits == 0 {
				first = now
			}
			last = now
			hits++
			mu.Unlock()
		}
		io.WriteString(w, "ok")
	}))
	defer back.Close()
	dir := t.TempDir()
	polDir := filepath.Join(dir, "policies")
	os.Mkdir(polDir, 0o755)
	const rate, burst = 100, 100
	writeFile(t, filepath.Join(polDir, "limits.yaml"), fmt.Sprintf(`policies:
  - name: shared-open
    applies_to: {routes: [limited]}
    rate_limits:
      - {name: all-clients, key: route, requests: %d, per: 1s, burst: %d, scope: global, failure_mode: open}
  - name: shared-closed
    applies_to: {routes: [closed]}
    rate_limits:
      - {name: all-clients, key: route, requests: 1000, per: 1s, scope: global, failure_mode: closed}
`, rate, burst))
	bh, bp := hostPort(back)
	cfgPath := filepath.Join(dir, "meshgate.yaml")
	writeFile(t, cfgPath, fmt.Sprintf(`listeners: [{name: http, address: "127.0.0.1:0"}]
admin: {address: "127.0.0.1:0"}
services:
  svc: {instances: [{address: %s, port: %s}]}
routes:
  - {name: limited, match: {path_prefix: /limited}, service: svc}
  - {name: closed, match: {path_prefix: /closed}, service: svc}
policies:
  dir: %s
  redis: {address: %q, timeout: 200ms}
`, bh, bp, polDir, rdb.Addr()))
	gws := []*proc{startMeshgate(t, "run", "--config", cfgPath), startMeshgate(t, "run", "--config", cfgPath)}
	for _, p := range gws {
		p.waitReady(t)
	}

	var ok, limited, other atomic.Int64
	deadline := time.Now().Add(2 * time.Second)
	var wg sync.WaitGroup
	for _, p := range gws {
		for range 4 {
			wg.Add(1)
			go func(base string) {
				defer wg.Done()
				client := &http.Client{Timeout: 5 * time.Second}
				for time.Now().Before(deadline) {
					res, err := client.Get(base + "/limited")
					if err != nil {
						other.Add(1)
						continue
					}
					io.Copy(io.Discard, res.Body)
					res.Body.Close()
					switch res.StatusCode {
					case 200:
						ok.Add(1)
					case 429:
						limited.Add(1)
						if res.Header.Get("Retry-After") == "" || !strings.Contains(res.Header.Get("RateLimit"), `"all-clients";r=0`) {
							other.Add(1)
						}
					default:
						other.Add(1)
					}
				}
			}("http://" + p.traffic)
		}
	}
	wg.Wait()
	mu.Lock()
	window := last.Sub(first)
	upstream := hits
	mu.Unlock()
	want := float64(burst) + rate*window.Seconds()
	t.Logf("allowed %d (upstream saw %d) in %v, limited %d; the limit allows %.0f", ok.Load(), upstream, window, limited.Load(), want)
	if other.Load() != 0 {
		t.Errorf("%d answers were neither 200 nor a well-formed 429", other.Load())
	}
	if int64(upstream) != ok.Load() {
		t.Errorf("clients got %d OKs but the upstream saw %d requests", ok.Load(), upstream)
	}
	if got := float64(ok.Load()); got < want*0.95 || got > want*1.05 {
		t.Errorf("the two meshgates allowed %.0f requests; the shared limit allows %.0f (±5%%)", got, want)
	}
	if limited.Load() == 0 {
		t.Errorf("no request was limited; the load did not exceed the limit")
	}

	// Redis gone: the fail-open limit lets requests through, the
	// fail-closed one refuses them with 503.
	rdb.Stop()
	base := "http://" + gws[0].traffic
	time.Sleep(1100 * time.Millisecond) // let the open limit's bucket refill
	res, err := http.Get(base + "/limited")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Errorf("fail-open limit without Redis: %d, want 200", res.StatusCode)
	}
	status, body := rawGet(t, gws[0].traffic, "/closed")
	if status != 503 || !strings.Contains(body, `"rate limit store unavailable"`) {
		t.Errorf("fail-closed limit without Redis: %d %q, want 503 with the JSON error", status, body)
	}
}

// TestREADMEPolicyExample keeps the README's policy example valid.
func TestREADMEPolicyExample(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(readme)
	i := strings.Index(s, "One file with every kind:")
	if i < 0 {
		t.Fatal(`the README lost its "One file with every kind:" example`)
	}
	start := strings.Index(s[i:], "```yaml\n")
	end := strings.Index(s[i+start+8:], "```")
	if start < 0 || end < 0 {
		t.Fatal("no yaml block after the marker")
	}
	file := filepath.Join(t.TempDir(), "example.yaml")
	writeFile(t, file, s[i+start+8:i+start+8+end])
	out, err := exec.Command(binary, "validate", "--policies", file).CombinedOutput()
	if err != nil {
		t.Errorf("the README's policy example is invalid: %v\n%s", err, out)
	}
}

// TestConfigReloadKeepsPoliciesInStep renames a route that a policy names:
// the config and its policies no longer fit, so the reload is refused as a
// whole and the route stays protected. A SIGHUP while the config file is
// broken still reloads the policy files.
func TestConfigReloadKeepsPoliciesInStep(t *testing.T) {
	public, admin := named("public", 0), named("admin", 0)
	defer public.Close()
	defer admin.Close()
	dir := t.TempDir()
	polDir := filepath.Join(dir, "policies")
	os.Mkdir(polDir, 0o755)
	writeFile(t, filepath.Join(polDir, "admin.yaml"), "policies:\n  - name: lock\n    applies_to: {routes: [admin]}\n    authz: {default: deny, rules: []}\n")
	cfgPath := filepath.Join(dir, "meshgate.yaml")
	writeFile(t, cfgPath, policyConfig(public, admin, polDir, ""))
	p := startMeshgate(t, "run", "--config", cfgPath)
	p.waitReady(t)
	if status, _ := rawGet(t, p.traffic, "/admin/x"); status != 403 {
		t.Fatalf("/admin/x: %d, want 403", status)
	}
	renamed := strings.Replace(policyConfig(public, admin, polDir, ""), "{name: admin,", "{name: admin-api,", 1)
	writeFile(t, cfgPath, renamed)
	m := p.waitLog(t, "reload failed; keeping the last good configuration")
	if e, _ := m["error"].(string); !strings.Contains(e, `no route named "admin"`) {
		t.Errorf("reload error %q does not name the route", e)
	}
	if status, _ := rawGet(t, p.traffic, "/admin/x"); status != 403 {
		t.Errorf("after the refused reload /admin/x: %d, want 403", status)
	}

	// Break the config file, then change the policy and send SIGHUP: the
	// config stays, the policies reload.
	writeFile(t, cfgPath, "listeners: [\n")
	p.waitLog(t, "reload failed; keeping the last good configuration")
	writeFile(t, filepath.Join(polDir, "admin.yaml"), "policies:\n  - name: lock\n    applies_to: {routes: [admin]}\n    authz: {default: allow, rules: []}\n")
	p.waitLog(t, "policies reloaded")
	if status, _ := rawGet(t, p.traffic, "/admin/x"); status != 200 {
		t.Errorf("after the policy change /admin/x: %d, want 200", status)
	}
	writeFile(t, filepath.Join(polDir, "admin.yaml"), "policies:\n  - name: lock\n    applies_to: {routes: [admin]}\n    authz: {default: deny, rules: []}\n")
	p.waitLog(t, "policies reloaded")
	p.cmd.Process.Signal(syscall.SIGHUP)
	p.waitLog(t, "reload failed; keeping the last good configuration")
	p.waitLog(t, "policies reloaded")
	if status, _ := rawGet(t, p.traffic, "/admin/x"); status != 403 {
		t.Errorf("after SIGHUP /admin/x: %d, want 403", status)
	}
}

// kvPut stores value under key in the agent's KV store.
func kvPut(t *testing.T, agent, key, value string) {
	t.Helper()
	req, _ := http.NewRequest("PUT", "http://"+agent+"/v1/kv/"+key, strings.NewReader(value))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("PUT /v1/kv/%s: %s", key, res.Status)
	}
}

// TestPoliciesFromConsulKV keeps policies in a real Consul agent's KV
// store: meshgate reads them before it serves, follows changes through
// its blocking query, and keeps the last good set when a document breaks.
func TestPoliciesFromConsulKV(t *testing.T) {
	agent := consultest.Start(t)
	public, admin := named("public", 0), named("admin", 0)
	defer public.Close()
	defer admin.Close()
	lock := func(def string) string {
		return "policies:\n  - name: lock\n    applies_to: {routes: [admin]}\n    authz: {default: " + def + ", rules: []}\n"
	}
	kvPut(t, agent.Addr, "meshgate/policies/admin.yaml", lock("deny"))
	ph, pp := hostPort(public)
	ah, ap := hostPort(admin)
	cfgPath := filepath.Join(t.TempDir(), "meshgate.yaml")
	writeFile(t, cfgPath, fmt.Sprintf(`listeners: [{name: http, address: "127.0.0.1:0"}]
admin: {address: "127.0.0.1:0"}
services:
  public: {instances: [{address: %s, port: %s}]}
  admin: {instances: [{address: %s, port: %s}]}
routes:
  - {name: admin, match: {path_prefix: /admin}, service: admin}
  - {name: public, match: {path_prefix: /}, service: public}
discovery:
  consul: {address: %q, wait: 30s, min_interval: 10ms}
policies: {consul_kv_prefix: meshgate/policies}
`, ph, pp, ah, ap, agent.Addr))
	p := startMeshgate(t, "run", "--config", cfgPath)
	p.waitReady(t)
	// In force from the first request: meshgate read the KV before serving.
	if status, _ := rawGet(t, p.traffic, "/admin/x"); status != 403 {
		t.Fatalf("/admin/x: %d, want 403 from the policy in KV", status)
	}
	kvPut(t, agent.Addr, "meshgate/policies/admin.yaml", lock("allow"))
	waitUntil(t, func() bool { status, _ := rawGet(t, p.traffic, "/admin/x"); return status == 200 })

	// A broken document: refused, reported with its KV name, last good kept.
	kvPut(t, agent.Addr, "meshgate/policies/broken.yaml", "policies:\n  - name: x\n    applies_to: {all: true}\n    authz: {default: maybe}\n")
	m := p.waitLog(t, "policy reload failed; keeping the policies in force")
	if e, _ := m["error"].(string); !strings.Contains(e, "consul:meshgate/policies/broken.yaml:4: policies[0].authz.default") {
		t.Errorf("reload error %q does not name the KV document and line", e)
	}
	if status, _ := rawGet(t, p.traffic, "/admin/x"); status != 200 {
		t.Errorf("after the broken document /admin/x: %d, want 200 (the last good set)", status)
	}
}
