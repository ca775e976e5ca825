package main

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// faultsOf reads GET /_faults of instance id.
func faultsOf(t *testing.T, d *demo, id string) (latency string, failRate float64) {
	t.Helper()
	r := d.do(t, id, "GET", "/_faults", "")
	if r.status != http.StatusOK {
		t.Fatalf("GET /_faults = %d\n%s", r.status, r.body)
	}
	m := object(t, r.body, "instance", "latency", "fail_rate")
	if got := decode[string](t, m["instance"]); got != id {
		t.Errorf(`"instance" = %q, want %q`, got, id)
	}
	return decode[string](t, m["latency"]), decode[float64](t, m["fail_rate"])
}

func TestFaultsShowTheFlags(t *testing.T) {
	t.Parallel()
	d := startDemo(t, options{latency: 5 * time.Millisecond, failRate: 0.25, listens: []listenSpec{{"users", "127.0.0.1:0"}}})
	if lat, rate := faultsOf(t, d, d.ids[0]); lat != "5ms" || rate != 0.25 {
		t.Errorf("GET /_faults = %s, %v; want the flags' 5ms, 0.25", lat, rate)
	}
}

func TestFaultsChangeAtRunTime(t *testing.T) {
	t.Parallel()
	d := startDemo(t, options{listens: []listenSpec{{"products", "127.0.0.1:0"}}})
	id := d.ids[0]
	if lat, rate := faultsOf(t, d, id); lat != "0s" || rate != 0 {
		t.Fatalf("GET /_faults = %s, %v; want none injected", lat, rate)
	}
	if r := d.do(t, id, "GET", "/products/1", ""); r.status != 200 {
		t.Fatalf("before: GET /products/1 = %d", r.status)
	}

	// Fail everything: the service's paths fail, /healthz and /_faults don't.
	r := d.do(t, id, "PUT", "/_faults", `{"fail_rate": 1}`)
	if r.status != 200 {
		t.Fatalf("PUT /_faults = %d\n%s", r.status, r.body)
	}
	m := object(t, r.body, "instance", "latency", "fail_rate")
	if decode[float64](t, m["fail_rate"]) != 1 || decode[string](t, m["latency"]) != "0s" {
		t.Errorf("PUT answered %s, want the new settings", r.body)
	}
	for _, path := range []string{"/products", "/products/1", "/products/events"} {
		checkError(t, d.do(t, id, "GET", path, ""), 503, id, "injected failure (fail_rate 1)")
	}
	if r := d.do(t, id, "GET", "/healthz", ""); r.status != 200 {
		t.Errorf("/healthz = %d while failing, want 200", r.status)
	}

	// Slow instead: a PUT of one field keeps the other.
	const latency = 300 * time.Millisecond
	d.do(t, id, "PUT", "/_faults", `{"latency": "300ms"}`)
	if lat, rate := faultsOf(t, d, id); lat != "300ms" || rate != 1 {
		t.Errorf("after a latency-only PUT: %s, %v; want 300ms, 1", lat, rate)
	}
	d.do(t, id, "PUT", "/_faults", `{"fail_rate": 0}`)
	start := time.Now()
	if r := d.do(t, id, "GET", "/products/1", ""); r.status != 200 {
		t.Errorf("GET /products/1 = %d, want 200 again", r.status)
	}
	if took := time.Since(start); took < latency {
		t.Errorf("GET /products/1 took %v, want at least %v", took, latency)
	}
	start = time.Now()
	d.do(t, id, "GET", "/healthz", "")
	d.do(t, id, "GET", "/_faults", "")
	if took := time.Since(start); took >= latency {
		t.Errorf("/healthz and /_faults took %v, want no added latency", took)
	}

	// Back to normal.
	d.do(t, id, "PUT", "/_faults", `{"latency": "0s", "fail_rate": 0}`)
	start = time.Now()
	if r := d.do(t, id, "GET", "/products/1", ""); r.status != 200 || time.Since(start) >= latency {
		t.Errorf("after reset: %d in %v", r.status, time.Since(start))
	}
}

func TestFaultsRejects(t *testing.T) {
	t.Parallel()
	d := startDemo(t, options{listens: []listenSpec{{"orders", "127.0.0.1:0"}}})
	id := d.ids[0]
	d.do(t, id, "PUT", "/_faults", `{"latency": "10ms", "fail_rate": 0.1}`)
	tests := map[string]struct {
		method, body string
		status       int
		want         string
	}{
		"not JSON":          {"PUT", "fail_rate=1", 400, "invalid faults"},
		"unknown field":     {"PUT", `{"failrate": 1}`, 400, `unknown field "failrate"`},
		"latency a number":  {"PUT", `{"latency": 200}`, 400, "invalid faults"},
		"two values":        {"PUT", `{} {}`, 400, "more than one JSON value"},
		"too large":         {"PUT", `{"latency": "` + strings.Repeat("1", maxFaultsBody) + `ms"}`, 413, "larger than"},
		"latency no unit":   {"PUT", `{"latency": "200"}`, 422, `invalid latency "200"`},
		"negative latency":  {"PUT", `{"latency": "-1s"}`, 422, `invalid latency "-1s"`},
		"fail_rate above 1": {"PUT", `{"fail_rate": 1.5}`, 422, "invalid fail_rate 1.5"},
		"fail_rate below 0": {"PUT", `{"latency": "1s", "fail_rate": -0.5}`, 422, "invalid fail_rate -0.5"},
		"POST":              {"POST", `{"fail_rate": 1}`, 405, "method POST not allowed on /_faults"},
	}
	t.Run("group", func(t *testing.T) {
		for name, tt := range tests {
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				checkError(t, d.do(t, id, tt.method, "/_faults", tt.body), tt.status, id, tt.want)
			})
		}
	})
	// A rejected PUT changes nothing, not even its valid half.
	if lat, rate := faultsOf(t, d, id); lat != "10ms" || rate != 0.1 {
		t.Errorf("after rejected PUTs: %s, %v; want 10ms, 0.1 unchanged", lat, rate)
	}
}
