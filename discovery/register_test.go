package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/discovery/consultest"
	"go.uber.org/goleak"
)

// The tests below that run a Registrar against a real agent are not
// parallel: each ends with goleak.VerifyNone, which sees every goroutine of
// the process, and the repair timings they assert are steadier without
// other agents competing for the CPU.

func TestRegistrarRegistration(t *testing.T) {
	t.Parallel()
	tests := []struct {
		desc     string
		reg      config.Register
		wantID   string
		wantHTTP string
		// wantInterval, wantTimeout, wantTTL, wantDeregister are the
		// strings the agent receives.
		wantInterval, wantTimeout, wantTTL, wantDeregister string
		wantWeight                                         int
	}{
		{
			desc:         "zero values take the documented defaults",
			reg:          config.Register{Name: "web", Address: "10.0.0.5", Port: 8080},
			wantID:       "web-10.0.0.5-8080",
			wantHTTP:     "http://10.0.0.5:8080/healthz",
			wantInterval: "10s", wantTimeout: "2s", wantTTL: "10s", wantDeregister: "1m0s",
			wantWeight: 1,
		},
		{
			desc:         "already defaulted values are kept",
			reg:          config.Register{Name: "web", ID: "web-1", Address: "10.0.0.5", Port: 8080, Weight: 1, Check: config.RegisterCheck{Path: "/healthz", Interval: config.Duration(10 * time.Second), Timeout: config.Duration(2 * time.Second)}, TTL: config.Duration(10 * time.Second), DeregisterCriticalAfter: config.Duration(time.Minute)},
			wantID:       "web-1",
			wantHTTP:     "http://10.0.0.5:8080/healthz",
			wantInterval: "10s", wantTimeout: "2s", wantTTL: "10s", wantDeregister: "1m0s",
			wantWeight: 1,
		},
		{
			desc: "explicit values",
			reg: config.Register{Name: "api", ID: "api-a", Address: "api.internal", Port: 9000, Weight: 25,
				Check: config.RegisterCheck{Path: "ready", Interval: config.Duration(3 * time.Second), Timeout: config.Duration(500 * time.Millisecond)},
				TTL:   config.Duration(6 * time.Second), DeregisterCriticalAfter: config.Duration(2 * time.Minute)},
			wantID:       "api-a",
			wantHTTP:     "http://api.internal:9000/ready",
			wantInterval: "3s", wantTimeout: "500ms", wantTTL: "6s", wantDeregister: "2m0s",
			wantWeight: 25,
		},
		{
			desc:         "IPv6 address is bracketed in the check URL",
			reg:          config.Register{Name: "web", Address: "::1", Port: 8080, Check: config.RegisterCheck{Path: "/h"}},
			wantID:       "web---1-8080",
			wantHTTP:     "http://[::1]:8080/h",
			wantInterval: "10s", wantTimeout: "2s", wantTTL: "10s", wantDeregister: "1m0s",
			wantWeight: 1,
		},
		{
			desc:         "check URL wins over path",
			reg:          config.Register{Name: "web", Address: "10.0.0.5", Port: 8080, Check: config.RegisterCheck{Path: "/ignored", URL: "https://127.0.0.1:8443/status"}},
			wantID:       "web-10.0.0.5-8080",
			wantHTTP:     "https://127.0.0.1:8443/status",
			wantInterval: "10s", wantTimeout: "2s", wantTTL: "10s", wantDeregister: "1m0s",
			wantWeight: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			t.Parallel()
			svc, ttl := registrarRegistration(tt.reg)
			if svc.ID != tt.wantID || svc.Name != tt.reg.Name || svc.Address != tt.reg.Address || svc.Port != tt.reg.Port {
				t.Errorf("service = %q %q %q %d, want %q %q %q %d", svc.ID, svc.Name, svc.Address, svc.Port, tt.wantID, tt.reg.Name, tt.reg.Address, tt.reg.Port)
			}
			if svc.Weights == nil || *svc.Weights != (api.AgentWeights{Passing: tt.wantWeight, Warning: 1}) {
				t.Errorf("weights = %+v, want passing %d warning 1", svc.Weights, tt.wantWeight)
			}
			if ttl.String() != tt.wantTTL {
				t.Errorf("ttl = %v, want %s", ttl, tt.wantTTL)
			}
			if len(svc.Checks) != 2 {
				t.Fatalf("checks = %d, want 2", len(svc.Checks))
			}
			h, s := svc.Checks[0], svc.Checks[1]
			wantHTTPCheck := api.AgentServiceCheck{CheckID: tt.wantID + ":http", Name: "service health", HTTP: tt.wantHTTP,
				Interval: tt.wantInterval, Timeout: tt.wantTimeout, DeregisterCriticalServiceAfter: tt.wantDeregister}
			if !reflect.DeepEqual(*h, wantHTTPCheck) {
				t.Errorf("HTTP check = %+v\nwant %+v", *h, wantHTTPCheck)
			}
			wantTTLCheck := api.AgentServiceCheck{CheckID: tt.wantID + ":sidecar", Name: "meshgate sidecar", TTL: tt.wantTTL,
				Status: "passing", DeregisterCriticalServiceAfter: tt.wantDeregister}
			if !reflect.DeepEqual(*s, wantTTLCheck) {
				t.Errorf("TTL check = %+v\nwant %+v", *s, wantTTLCheck)
			}
		})
	}

	t.Run("tags and meta are copied", func(t *testing.T) {
		t.Parallel()
		reg := config.Register{Name: "web", Address: "10.0.0.5", Port: 80, Tags: []string{"a", "b"}, Meta: map[string]string{"k": "v"}}
		svc, _ := registrarRegistration(reg)
		reg.Tags[0], reg.Meta["k"] = "changed", "changed"
		if strings.Join(svc.Tags, ",") != "a,b" || svc.Meta["k"] != "v" {
			t.Errorf("registration follows later config changes: tags %v meta %v", svc.Tags, svc.Meta)
		}
	})
}

func TestRegistrarBackoff(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		desc   string
		jitter func(time.Duration) time.Duration
		want   []time.Duration
	}{
		{"least jitter", func(time.Duration) time.Duration { return 0 },
			[]time.Duration{125 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second, 2 * time.Second}},
		{"most jitter", func(d time.Duration) time.Duration { return d - 1 },
			[]time.Duration{250*time.Millisecond - 1, 500*time.Millisecond - 1, time.Second - 1, 2*time.Second - 1, 4*time.Second - 1, 4*time.Second - 1}},
	} {
		t.Run(tt.desc, func(t *testing.T) {
			t.Parallel()
			b := registrarBackoff{min: registrarBackoffMin, max: registrarBackoffMax, jitter: tt.jitter}
			for i, want := range tt.want {
				if got := b.next(); got != want {
					t.Errorf("delay %d = %v, want %v", i, got, want)
				}
			}
			b.reset()
			if got := b.next(); got != tt.want[0] {
				t.Errorf("after reset: %v, want %v", got, tt.want[0])
			}
		})
	}
}

func TestRegistrarRegistersAndKeepsChecksPassing(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	a := consultest.Start(t)
	defer a.Stop()
	health, srv := regHealthServer(t)
	defer srv.Close()

	reg := regConfig("web", srv)
	reg.Tags = []string{"v1"}
	reg.Meta = map[string]string{"zone": "a"}
	reg.Weight = 7
	r := NewRegistrar(a.Client, reg, regLogger(t))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := regRun(ctx, r)
	defer regStop(t, cancel, done)

	id := r.ServiceID()
	regEventually(t, 10*time.Second, "service and both checks on the agent", func() (bool, string) {
		svc, _, err := a.Client.Agent().Service(id, nil)
		if err != nil {
			return false, err.Error()
		}
		if svc.Service != "web" || svc.Port != reg.Port || svc.Weights.Passing != 7 || strings.Join(svc.Tags, ",") != "v1" || svc.Meta["zone"] != "a" {
			return false, "service is " + regJSONish(svc)
		}
		checks := regChecks(t, a, id)
		return checks[id+":sidecar"] == "passing" && checks[id+":http"] != "", regJSONish(checks)
	})
	if !r.Registered() {
		t.Error("Registered() = false after the agent listed the service")
	}

	regEventually(t, 5*time.Second, "HTTP check passing", func() (bool, string) {
		checks := regChecks(t, a, id)
		return checks[id+":http"] == "passing", regJSONish(checks)
	})
	// The agent syncs its services to the catalog; callers see them there.
	regEventually(t, 10*time.Second, "passing instance in the health endpoint", func() (bool, string) {
		entries, _, err := a.Client.Health().Service("web", "", true, nil)
		if err != nil {
			return false, err.Error()
		}
		return len(entries) == 1 && entries[0].Service.ID == id, regJSONish(entries)
	})

	// With a TTL of 2s, the sidecar check must stay passing for well past
	// 2×TTL: it would turn critical 2s after a missed report.
	ttl := reg.TTL.D()
	deadline := time.Now().Add(2*ttl + time.Second)
	for time.Now().Before(deadline) {
		if st := regChecks(t, a, id)[id+":sidecar"]; st != "passing" {
			t.Fatalf("sidecar TTL check is %q, want passing throughout", st)
		}
		time.Sleep(200 * time.Millisecond)
	}

	health.Store(http.StatusInternalServerError)
	regEventually(t, 5*time.Second, "HTTP check critical after the service fails", func() (bool, string) {
		checks := regChecks(t, a, id)
		return checks[id+":http"] == "critical", regJSONish(checks)
	})
	if st := regChecks(t, a, id)[id+":sidecar"]; st != "passing" {
		t.Errorf("sidecar TTL check is %q while the service fails, want passing (it reports meshgate, not the service)", st)
	}

	st := r.Status()
	if !st.Registered || st.Registrations != 1 || st.Errors != 0 || st.ServiceID != id || st.LastRegistration.IsZero() || !st.LastSuccess.After(st.LastRegistration) {
		t.Errorf("status = %+v, want registered once, no errors, recent success", st)
	}

	// Cancelling Run stops it promptly and leaves the service registered:
	// deregistering is Deregister's job.
	regStop(t, cancel, done)
	if _, _, err := a.Client.Agent().Service(id, nil); err != nil {
		t.Errorf("service gone after Run returned: %v", err)
	}
}

func TestRegistrarRepairsAfterAgentRestart(t *testing.T) {
	for _, tt := range []struct {
		desc string
		ttl  time.Duration
	}{
		// TTL reports every 667ms notice the forgotten check first.
		{"ttl 2s: found by the TTL report", 2 * time.Second},
		// TTL reports every 10s: the lookup every 2s notices first.
		{"ttl 30s: found by the lookup", 30 * time.Second},
	} {
		t.Run(tt.desc, func(t *testing.T) { regTestRepairsAfterRestart(t, tt.ttl) })
	}
}

func regTestRepairsAfterRestart(t *testing.T, ttl time.Duration) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	a := consultest.Start(t)
	defer a.Stop()
	_, srv := regHealthServer(t)
	defer srv.Close()

	reg := regConfig("web", srv)
	reg.TTL = config.Duration(ttl)
	r := NewRegistrar(a.Client, reg, regLogger(t))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := regRun(ctx, r)
	defer regStop(t, cancel, done)
	id := r.ServiceID()
	regWaitRegistered(t, a, id, 10*time.Second)

	const restarts = 3
	for i := 1; i <= restarts; i++ {
		start := time.Now()
		a.Restart() // returns once the new agent has elected itself leader
		ready := time.Now()
		regWaitRegistered(t, a, id, 5*time.Second)
		back := time.Now()
		st := r.Status()
		t.Logf("restart %d: agent down and back in %v; service registered again %v after the new agent was ready (%v after the restart began; registrations %d, errors %d)",
			i, ready.Sub(start).Round(time.Millisecond), back.Sub(ready).Round(time.Millisecond), back.Sub(start).Round(time.Millisecond), st.Registrations, st.Errors)
		if st.Registrations != uint64(1+i) {
			t.Errorf("registrations = %d after %d restarts, want %d", st.Registrations, i, 1+i)
		}
		if st.LastRegistration.Before(start) {
			t.Errorf("last registration %v is before the restart began (%v)", st.LastRegistration, start)
		}
	}
	regEventually(t, 10*time.Second, "repaired instance in the catalog", func() (bool, string) {
		svcs, _, err := a.Client.Catalog().Service("web", "", nil)
		if err != nil {
			return false, err.Error()
		}
		return len(svcs) == 1 && svcs[0].ServiceID == id, regJSONish(svcs)
	})
	if !r.Registered() {
		t.Error("Registered() = false after the repair")
	}
}

func TestRegistrarSurvivesAgentOutage(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	a := consultest.Start(t)
	defer a.Stop()
	_, srv := regHealthServer(t)
	defer srv.Close()

	r := NewRegistrar(a.Client, regConfig("web", srv), regLogger(t))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := regRun(ctx, r)
	defer regStop(t, cancel, done)
	id := r.ServiceID()
	regWaitRegistered(t, a, id, 10*time.Second)

	a.Stop()
	regEventually(t, 5*time.Second, "errors counted while the agent is down", func() (bool, string) {
		st := r.Status()
		return st.Errors >= 2 && !st.Registered, regJSONish(st)
	})
	time.Sleep(3 * time.Second) // let the back-off grow
	select {
	case err := <-done:
		t.Fatalf("Run returned %v while the agent was down, want it to keep trying", err)
	default:
	}
	st := r.Status()
	if st.Registered || st.LastError == "" || st.LastErrorTime.IsZero() {
		t.Errorf("status while the agent is down = %+v", st)
	}
	t.Logf("while the agent was down: %d errors, last %q", st.Errors, st.LastError)
	if st.Errors > 20 {
		t.Errorf("%d attempts in about 4s: back-off not applied", st.Errors)
	}

	start := time.Now()
	a.Restart()
	ready := time.Now()
	regWaitRegistered(t, a, id, 5*time.Second)
	back := time.Now()
	t.Logf("agent back after %v; service registered again %v after the agent was ready", ready.Sub(start).Round(time.Millisecond), back.Sub(ready).Round(time.Millisecond))
	regEventually(t, 2*time.Second, "status registered again", func() (bool, string) {
		st := r.Status()
		return st.Registered && st.Registrations == 2, regJSONish(st)
	})
}

func TestRegistrarDeregister(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	a := consultest.Start(t)
	defer a.Stop()
	_, srv := regHealthServer(t)
	defer srv.Close()

	r := NewRegistrar(a.Client, regConfig("web", srv), regLogger(t))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := regRun(ctx, r)
	defer regStop(t, cancel, done)
	id := r.ServiceID()
	regWaitRegistered(t, a, id, 10*time.Second)
	regEventually(t, 10*time.Second, "instance in the catalog", func() (bool, string) {
		entries, _, err := a.Client.Health().Service("web", "", false, nil)
		return err == nil && len(entries) == 1, regJSONish(entries)
	})

	dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer dcancel()
	if err := r.Deregister(dctx); err != nil {
		t.Fatalf("Deregister: %v", err)
	}
	if r.Registered() {
		t.Error("Registered() = true after Deregister")
	}
	// Deregister stops Run from repairing the service, and Run returns.
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run returned %v after Deregister, want nil", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Run still running 2s after Deregister")
	}

	_, _, err := a.Client.Agent().Service(id, nil)
	var se api.StatusError
	if !errors.As(err, &se) || se.Code != http.StatusNotFound {
		t.Errorf("agent lookup after Deregister: %v, want 404", err)
	}
	regEventually(t, 10*time.Second, "instance gone from the catalog and health endpoint", func() (bool, string) {
		entries, _, err := a.Client.Health().Service("web", "", false, nil)
		if err != nil {
			return false, err.Error()
		}
		svcs, _, err := a.Client.Catalog().Service("web", "", nil)
		if err != nil {
			return false, err.Error()
		}
		return len(entries) == 0 && len(svcs) == 0, regJSONish(entries)
	})
	if checks := regChecks(t, a, id); len(checks) != 0 {
		t.Errorf("checks left on the agent: %v", checks)
	}

	// Deregistering what the agent does not know is not an error.
	if err := r.Deregister(dctx); err != nil {
		t.Errorf("second Deregister: %v", err)
	}
	// Nor is Run started after Deregister: it returns at once.
	if err := r.Run(context.Background()); err != nil {
		t.Errorf("Run after Deregister = %v", err)
	}
	time.Sleep(registrarProbeEvery + time.Second)
	if _, _, err := a.Client.Agent().Service(id, nil); !errors.As(err, &se) || se.Code != http.StatusNotFound {
		t.Errorf("service came back after Deregister: lookup error %v", err)
	}
}

func TestRegistrarUnreachableAgent(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	// Nothing listens on a port just released.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := api.DefaultNonPooledConfig()
	cfg.Address = addr
	client, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}

	r := NewRegistrar(client, config.Register{Name: "web", Address: "127.0.0.1", Port: 1}, regLogger(t))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := regRun(ctx, r)
	regEventually(t, 5*time.Second, "failed attempts counted", func() (bool, string) {
		st := r.Status()
		return st.Errors >= 3, regJSONish(st)
	})
	st := r.Status()
	if st.Registered || st.Registrations != 0 || !strings.HasPrefix(st.LastError, "registering service \"web-127.0.0.1-1\" in Consul: ") {
		t.Errorf("status = %+v", st)
	}
	regStop(t, cancel, done)

	// Deregister reports the failure, typed: the agent did not answer.
	dctx, dcancel := context.WithTimeout(context.Background(), time.Second)
	defer dcancel()
	start := time.Now()
	err = r.Deregister(dctx)
	var se api.StatusError
	if err == nil || errors.As(err, &se) || !strings.HasPrefix(err.Error(), "deregistering service") {
		t.Errorf("Deregister with no agent = %v, want a wrapped transport error", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Deregister took %v, want it bounded by its 1s context", took)
	}
}

// regConfig is a registration for the service srv serves, with a short TTL
// and check interval.
func regConfig(name string, srv *httptest.Server) config.Register {
	return config.Register{
		Name:    name,
		Address: "127.0.0.1",
		Port:    srv.Listener.Addr().(*net.TCPAddr).Port,
		Check:   config.RegisterCheck{Path: "/healthz", Interval: config.Duration(time.Second), Timeout: config.Duration(time.Second)},
		TTL:     config.Duration(2 * time.Second),
	}
}

// regHealthServer serves /healthz with the status code in the returned
// value (200 at first).
func regHealthServer(t *testing.T) (*atomic.Int32, *httptest.Server) {
	t.Helper()
	var code atomic.Int32
	code.Store(http.StatusOK)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != "/healthz" {
			http.NotFound(w, req)
			return
		}
		w.WriteHeader(int(code.Load()))
	}))
	return &code, srv
}

// regLogger logs to the test's output.
func regLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(regTestWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type regTestWriter struct{ t *testing.T }

func (w regTestWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// regRun runs r until ctx is done; the channel receives Run's result.
func regRun(ctx context.Context, r *Registrar) <-chan error {
	done := make(chan error, 1)
	go func() {
		done <- r.Run(ctx)
		close(done)
	}()
	return done
}

// regStop cancels Run and checks that it returns nil promptly. Calling it
// again after Run returned is a no-op.
func regStop(t *testing.T, cancel context.CancelFunc, done <-chan error) {
	t.Helper()
	cancel()
	select {
	case err, ok := <-done:
		if ok && err != nil {
			t.Errorf("Run = %v after cancel, want nil", err)
		}
	case <-time.After(time.Second):
		t.Errorf("Run still running 1s after cancel")
	}
}

// regWaitRegistered waits until the agent knows service id and reports its
// sidecar check passing.
func regWaitRegistered(t *testing.T, a *consultest.Agent, id string, timeout time.Duration) {
	t.Helper()
	regEventually(t, timeout, "service "+id+" registered with its sidecar check passing", func() (bool, string) {
		if _, _, err := a.Client.Agent().Service(id, nil); err != nil {
			return false, err.Error()
		}
		checks := regChecks(t, a, id)
		return checks[id+":sidecar"] == "passing", regJSONish(checks)
	})
}

// regChecks returns the status of service id's checks on the agent, by
// check ID; empty when the agent cannot be asked.
func regChecks(t *testing.T, a *consultest.Agent, id string) map[string]string {
	t.Helper()
	all, err := a.Client.Agent().Checks()
	out := map[string]string{}
	if err != nil {
		return out
	}
	for cid, c := range all {
		if c.ServiceID == id {
			out[cid] = c.Status
		}
	}
	return out
}

// regEventually polls cond every 50ms until it holds, failing the test with
// cond's last description after timeout.
func regEventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v; last seen: %s", what, timeout, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// regJSONish formats v for failure messages.
func regJSONish(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%+v", v)
	}
	return string(b)
}
