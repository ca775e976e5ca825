package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// sidecar stands in for the orders instance's meshgate: a reverse proxy to
// a real users instance that records the headers of what passes through.
type sidecar struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []http.Header
}

func newSidecar(t *testing.T, usersURL string) *sidecar {
	t.Helper()
	target, err := url.Parse(usersURL)
	if err != nil {
		t.Fatal(err)
	}
	s := &sidecar{}
	transport := &http.Transport{}
	rp := &httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(target) },
		Transport: transport,
	}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.got = append(s.got, r.Header.Clone())
		s.mu.Unlock()
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		s.srv.Close()
		transport.CloseIdleConnections()
	})
	return s
}

func (s *sidecar) requests() []http.Header {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]http.Header(nil), s.got...)
}

// orderWithCustomer is GET /orders/{id}'s answer with -users-url.
type orderWithCustomer struct {
	Instance string `json:"instance"`
	Order
	Customer      *Customer `json:"customer"`
	CustomerError *string   `json:"customer_error"`
}

// meshPair starts a users instance, a sidecar in front of it, and an
// orders instance whose -users-url is the sidecar.
func meshPair(t *testing.T) (users *demo, sc *sidecar, orders *demo) {
	t.Helper()
	users = startDemo(t, options{listens: []listenSpec{{"users", "127.0.0.1:0"}}})
	sc = newSidecar(t, users.urls[users.ids[0]])
	orders = startDemo(t, options{usersURL: sc.srv.URL, listens: []listenSpec{{"orders", "127.0.0.1:0"}}})
	return users, sc, orders
}

func getOrder(t *testing.T, d *demo, path string, header http.Header) (orderWithCustomer, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), "GET", d.urls[d.ids[0]]+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := d.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s = %d, want 200 (the order is served whatever users does)\n%s", path, resp.StatusCode, body)
	}
	var o orderWithCustomer
	if err := json.Unmarshal(body, &o); err != nil {
		t.Fatalf("%v\n%s", err, body)
	}
	return o, body
}

func TestOrderEmbedsCustomerThroughSidecar(t *testing.T) {
	t.Parallel()
	_, sc, orders := meshPair(t)

	trace := http.Header{
		"Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		"Tracestate":  {"congo=t61rcWkgMzE", "rojo=00f067aa0ba902b7"},
		"Baggage":     {"userId=alice,tenant=demo"},
		"X-Other":     {"not a trace header"},
	}
	o, body := getOrder(t, orders, "/orders/3", trace)
	if o.ID != 3 || o.UserID != 3 || o.Customer == nil || *o.Customer != (Customer{3, "Sofía Ramírez"}) || o.CustomerError != nil {
		t.Errorf("order 3 should embed customer 3, Sofía Ramírez:\n%s", body)
	}
	if !strings.Contains(string(body), `"customer": {
    "id": 3,
    "name": "Sofía Ramírez"
  }`) {
		t.Errorf("customer is not {id, name}:\n%s", body)
	}

	got := sc.requests()
	if len(got) != 1 {
		t.Fatalf("the sidecar saw %d requests, want 1", len(got))
	}
	for _, h := range []string{"Traceparent", "Tracestate", "Baggage"} {
		if g, w := strings.Join(got[0].Values(h), " | "), strings.Join(trace.Values(h), " | "); g != w {
			t.Errorf("%s on the users call = %q, want %q", h, g, w)
		}
	}
	if v := got[0].Get("X-Other"); v != "" {
		t.Errorf("X-Other = %q was copied; only trace context should be", v)
	}

	// Without trace context, none is made up (the sidecar starts the trace).
	getOrder(t, orders, "/orders/1", nil)
	if got := sc.requests(); len(got) != 2 || got[1].Get("Traceparent") != "" {
		t.Errorf("want a second call without traceparent, got %d calls, traceparent %q", len(got), got[len(got)-1].Get("Traceparent"))
	}

	// Lists and POST don't call users.
	orders.do(t, orders.ids[0], "GET", "/orders", "")
	orders.do(t, orders.ids[0], "POST", "/orders", `{"user_id": 1, "product_ids": [2]}`)
	if n := len(sc.requests()); n != 2 {
		t.Errorf("%d calls to users after GET /orders and POST /orders, want still 2", n)
	}
}

func TestOrderWithoutCustomerWhenUsersFails(t *testing.T) {
	t.Parallel()
	deadURL := hangupServer(t)

	tests := map[string]struct {
		setup   func(t *testing.T, users *demo) string // returns the users URL for orders
		want    string
		maxTime time.Duration
	}{
		"users answers 503": {func(t *testing.T, users *demo) string {
			users.do(t, users.ids[0], "PUT", "/_faults", `{"fail_rate": 1}`)
			return users.urls[users.ids[0]]
		}, "users answered 503: injected failure", time.Second},
		"users hangs up": {func(t *testing.T, users *demo) string {
			return deadURL
		}, "calling users: ", time.Second},
		"users is too slow": {func(t *testing.T, users *demo) string {
			users.do(t, users.ids[0], "PUT", "/_faults", `{"latency": "5s"}`)
			return users.urls[users.ids[0]]
		}, "context deadline exceeded", usersCallTimeout + 700*time.Millisecond},
		"users-url is not the users service": {func(t *testing.T, users *demo) string {
			return users.urls[users.ids[0]] + "/nothing"
		}, "users answered 404: no endpoint GET /nothing/users/4", time.Second},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			users := startDemo(t, options{listens: []listenSpec{{"users", "127.0.0.1:0"}}})
			orders := startDemo(t, options{usersURL: tt.setup(t, users), listens: []listenSpec{{"orders", "127.0.0.1:0"}}})
			start := time.Now()
			o, body := getOrder(t, orders, "/orders/5", nil)
			if took := time.Since(start); took > tt.maxTime {
				t.Errorf("the order took %v, want at most %v", took, tt.maxTime)
			}
			if o.ID != 5 || o.Total != eur(3180) {
				t.Errorf("the order itself is wrong:\n%s", body)
			}
			if !strings.Contains(string(body), `"customer": null`) || o.CustomerError == nil || !strings.Contains(*o.CustomerError, tt.want) {
				t.Errorf(`want "customer": null and a customer_error containing %q:\n%s`, tt.want, body)
			}
		})
	}
}
