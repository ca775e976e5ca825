package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/testproc"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// run.sh's tests start this binary in place of meshgate-demo and
	// meshgate (see runsh_test.go).
	if role := helperRole(); role != "" {
		runHelper(role)
		return
	}
	goleak.VerifyTestMain(m)
}

// demo is a running fleet for one test.
type demo struct {
	urls   map[string]string // instance id → base URL
	ids    []string          // instance ids, in -listen order
	client *http.Client
	logs   *testproc.Output
}

// startDemo serves opts (defaults: one instance of each service on
// 127.0.0.1:0) until the test ends, and checks that it then shuts down
// cleanly.
func startDemo(t *testing.T, opts options) *demo {
	t.Helper()
	if opts.listens == nil {
		opts.listens = []listenSpec{
			{"products", "127.0.0.1:0"}, {"users", "127.0.0.1:0"}, {"orders", "127.0.0.1:0"},
		}
	}
	if opts.eventInterval == 0 {
		opts.eventInterval = defaultEventInterval
	}
	if opts.seed == 0 {
		opts.seed = 1
	}
	logs := &testproc.Output{}
	f, err := listen(opts, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	d := &demo{
		urls:   map[string]string{},
		client: &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second},
		logs:   logs,
	}
	for i, in := range f.instances {
		d.ids = append(d.ids, in.id)
		d.urls[in.id] = "http://" + f.listeners[i].Addr().String()
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- f.serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve returned %v after cancel, want nil", err)
			}
		case <-time.After(shutdownTimeout):
			t.Errorf("serve did not return within %v of cancel", shutdownTimeout)
		}
		d.client.CloseIdleConnections()
	})
	return d
}

// instanceOf returns the id of the i-th instance of service.
func (d *demo) instanceOf(t *testing.T, service string, i int) string {
	t.Helper()
	for _, id := range d.ids {
		if strings.HasPrefix(id, service+"-") {
			if i == 0 {
				return id
			}
			i--
		}
	}
	t.Fatalf("no instance %d of %s among %v", i, service, d.ids)
	return ""
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (d *demo) do(t *testing.T, id, method, path, body string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, d.urls[id]+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := d.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// object decodes a JSON object and checks that it has exactly keys.
func object(t *testing.T, body []byte, keys ...string) map[string]json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("body is not a JSON object: %v\n%s", err, body)
	}
	got := slices.Sorted(maps.Keys(m))
	want := slices.Sorted(slices.Values(keys))
	if !slices.Equal(got, want) {
		t.Fatalf("JSON keys = %v, want %v\n%s", got, want, body)
	}
	return m
}

// itemOf decodes a one-item answer, {"instance": ..., <the item's fields>},
// strictly into T.
func itemOf[T any](t *testing.T, body []byte) T {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("body is not a JSON object: %v\n%s", err, body)
	}
	if _, ok := m["instance"]; !ok {
		t.Fatalf(`no "instance" in %s`, body)
	}
	delete(m, "instance")
	rest, _ := json.Marshal(m)
	return decode[T](t, rest)
}

func decode[T any](t *testing.T, raw json.RawMessage) T {
	t.Helper()
	var v T
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decoding %T: %v\n%s", v, err, raw)
	}
	return v
}

// checkError checks the JSON error shape {"error", "status", "instance"}.
func checkError(t *testing.T, r response, status int, id, contains string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status = %d, want %d\n%s", r.status, status, r.body)
	}
	m := object(t, r.body, "error", "status", "instance")
	if got := decode[int](t, m["status"]); got != status {
		t.Errorf(`"status" = %d, want %d`, got, status)
	}
	if got := decode[string](t, m["instance"]); got != id {
		t.Errorf(`"instance" = %q, want %q`, got, id)
	}
	if msg := decode[string](t, m["error"]); !strings.Contains(msg, contains) {
		t.Errorf(`"error" = %q, want it to contain %q`, msg, contains)
	}
}

func TestParseFlags(t *testing.T) {
	t.Parallel()
	opts, err := parseFlags([]string{
		"-listen", "products=127.0.0.1:9101", "-listen", "products=127.0.0.1:9102",
		"-listen", "users=localhost:9201", "-listen", "orders=[::1]:9301",
		"-latency", "25ms", "-fail-rate", "0.25", "-seed", "42",
	}, io.Discard)
	if err != nil {
		t.Fatalf("parseFlags: %v", err)
	}
	wantListens := []listenSpec{
		{"products", "127.0.0.1:9101"}, {"products", "127.0.0.1:9102"},
		{"users", "localhost:9201"}, {"orders", "[::1]:9301"},
	}
	if !slices.Equal(opts.listens, wantListens) {
		t.Errorf("listens = %v, want %v", opts.listens, wantListens)
	}
	if opts.latency != 25*time.Millisecond || opts.failRate != 0.25 || opts.seed != 42 {
		t.Errorf("latency, fail-rate, seed = %v, %v, %v; want 25ms, 0.25, 42", opts.latency, opts.failRate, opts.seed)
	}
	if opts.eventInterval != defaultEventInterval {
		t.Errorf("eventInterval = %v, want %v", opts.eventInterval, defaultEventInterval)
	}

	defaults, err := parseFlags([]string{"-listen", "users=127.0.0.1:0"}, io.Discard)
	if err != nil {
		t.Fatalf("parseFlags: %v", err)
	}
	if defaults.latency != 0 || defaults.failRate != 0 || defaults.seed != 0 {
		t.Errorf("defaults = %+v, want latency 0, fail-rate 0, seed 0", defaults)
	}
}

func TestParseFlagsErrors(t *testing.T) {
	t.Parallel()
	ok := []string{"-listen", "products=127.0.0.1:9101"}
	tests := map[string]struct {
		args []string
		want string // in the output
	}{
		"unknown service":   {[]string{"-listen", "carts=127.0.0.1:9101"}, `unknown service "carts" in "carts=127.0.0.1:9101": want one of products, users, orders`},
		"no equals sign":    {[]string{"-listen", "127.0.0.1:9101"}, "want service=host:port"},
		"no port":           {[]string{"-listen", "products=127.0.0.1"}, `invalid address "127.0.0.1" for products`},
		"no host":           {[]string{"-listen", "products=:9101"}, "name the host, for example 127.0.0.1:9101"},
		"port out of range": {[]string{"-listen", "products=127.0.0.1:70000"}, `invalid port "70000"`},
		"named port":        {[]string{"-listen", "products=127.0.0.1:http"}, `invalid port "http"`},
		"duplicate address": {append(ok, "-listen", "users=127.0.0.1:9101"), "address 127.0.0.1:9101 given twice (for products and users)"},
		"no -listen":        {[]string{"-latency", "1s"}, "no instances: give at least one -listen"},
		"negative latency":  {append(ok, "-latency", "-1s"), "invalid -latency -1s: must not be negative"},
		"latency no unit":   {append(ok, "-latency", "50"), `invalid value "50" for flag -latency`},
		"fail-rate above 1": {append(ok, "-fail-rate", "1.5"), "invalid -fail-rate 1.5: want a share between 0 and 1"},
		"fail-rate below 0": {append(ok, "-fail-rate", "-0.1"), "invalid -fail-rate -0.1"},
		"fail-rate NaN":     {append(ok, "-fail-rate", "NaN"), "invalid -fail-rate NaN"},
		"seed not a number": {append(ok, "-seed", "abc"), `invalid value "abc" for flag -seed`},
		"unknown flag":      {append(ok, "-port", "80"), "flag provided but not defined: -port"},
		"positional":        {append(ok, "orders"), `unexpected argument "orders"`},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			_, err := parseFlags(tt.args, &out)
			if err == nil {
				t.Fatalf("parseFlags(%q) succeeded, want an error", tt.args)
			}
			if !strings.Contains(out.String(), tt.want) {
				t.Errorf("output = %q, want it to contain %q", out.String(), tt.want)
			}
			if !strings.Contains(out.String(), "Usage: meshgate-demo") {
				t.Errorf("output = %q, want the usage after the error", out.String())
			}
		})
	}
}

func TestCLIExitStatus(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()

	tests := map[string]struct {
		args   []string
		status int
		want   string
	}{
		"help":          {[]string{"-h"}, 0, "-fail-rate"},
		"bad flag":      {[]string{"-listen", "carts=127.0.0.1:0"}, 2, `unknown service "carts"`},
		"port is taken": {[]string{"-listen", "users=127.0.0.1:0", "-listen", "products=" + taken.Addr().String()}, 1, "listening for products on " + taken.Addr().String()},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			var out testproc.Output
			if got := cli(tt.args, &out); got != tt.status {
				t.Errorf("exit status = %d, want %d; output:\n%s", got, tt.status, out.String())
			}
			if !strings.Contains(out.String(), tt.want) {
				t.Errorf("output = %q, want it to contain %q", out.String(), tt.want)
			}
		})
	}
}

func TestEndpoints(t *testing.T) {
	t.Parallel()
	d := startDemo(t, options{})
	products, users, orders := d.instanceOf(t, "products", 0), d.instanceOf(t, "users", 0), d.instanceOf(t, "orders", 0)

	tests := map[string]struct {
		id, method, path string
		status           int
		check            func(t *testing.T, r response) // after the status, X-Instance and content type
	}{
		"list products": {products, "GET", "/products", 200, func(t *testing.T, r response) {
			m := object(t, r.body, "instance", "products")
			ps := decode[[]Product](t, m["products"])
			if len(ps) != 10 {
				t.Fatalf("%d products, want 10", len(ps))
			}
			for _, p := range ps {
				if p.ID == 0 || p.SKU == "" || p.Name == "" || p.Description == "" || p.Price.Cents <= 0 ||
					p.Price.Currency != "EUR" || p.Stock < 0 || p.Category == "" || len(p.Images) == 0 {
					t.Errorf("incomplete product %+v", p)
				}
			}
			first := object(t, mustFirst(t, r.body, "products"), "id", "sku", "name", "description", "price", "stock", "category", "images")
			object(t, first["price"], "amount", "currency")
		}},
		"one product": {products, "GET", "/products/3", 200, func(t *testing.T, r response) {
			if p := itemOf[Product](t, r.body); p.ID != 3 || p.Name != "Ceramic mug" || p.Price != eur(1290) {
				t.Errorf("product = %+v, want the ceramic mug", p)
			}
			if !strings.Contains(string(r.body), `"price": {
    "amount": "12.90",
    "currency": "EUR"
  }`) {
				t.Errorf("price is not shown as a decimal string:\n%s", r.body)
			}
		}},
		"unknown product": {products, "GET", "/products/42", 404, func(t *testing.T, r response) {
			checkError(t, r, 404, products, `no product with id "42"`)
		}},
		"product id not a number": {products, "GET", "/products/mug", 404, func(t *testing.T, r response) {
			checkError(t, r, 404, products, `no product with id "mug"`)
		}},
		"list users": {users, "GET", "/users", 200, func(t *testing.T, r response) {
			m := object(t, r.body, "instance", "users")
			if us := decode[[]User](t, m["users"]); len(us) != 5 {
				t.Errorf("%d users, want 5", len(us))
			}
			first := object(t, mustFirst(t, r.body, "users"), "id", "name", "email", "tier", "address", "created_at")
			object(t, first["address"], "street", "city", "postal_code", "country")
		}},
		"one user": {users, "GET", "/users/1", 200, func(t *testing.T, r response) {
			want := User{1, "Ada Lovelace", "ada@example.com", "platinum",
				Address{"12 St James's Square", "London", "SW1Y 4JH", "GB"}, time.Date(2024, 3, 2, 10, 15, 0, 0, time.UTC)}
			if u := itemOf[User](t, r.body); u != want {
				t.Errorf("user = %+v, want %+v", u, want)
			}
		}},
		"unknown user": {users, "GET", "/users/6", 404, func(t *testing.T, r response) {
			checkError(t, r, 404, users, `no user with id "6"`)
		}},
		"list orders": {orders, "GET", "/orders", 200, func(t *testing.T, r response) {
			m := object(t, r.body, "instance", "orders")
			if os := decode[[]Order](t, m["orders"]); len(os) != 6 {
				t.Errorf("%d orders, want 6", len(os))
			}
			first := object(t, mustFirst(t, r.body, "orders"), "id", "user_id", "product_ids", "items", "total", "status", "created_at")
			var items []json.RawMessage
			if err := json.Unmarshal(first["items"], &items); err != nil || len(items) == 0 {
				t.Fatalf("items = %s (%v)", first["items"], err)
			}
			object(t, items[0], "product_id", "quantity", "unit_price")
		}},
		"one order": {orders, "GET", "/orders/3", 200, func(t *testing.T, r response) {
			o := itemOf[Order](t, r.body)
			wantItems := []Item{{2, 1, eur(4990)}, {5, 2, eur(590)}}
			if o.ID != 3 || o.UserID != 3 || !slices.Equal(o.ProductIDs, []int{2, 5, 5}) ||
				!slices.Equal(o.Items, wantItems) || o.Total != eur(6170) {
				t.Errorf("order = %+v, want order 3 with items %+v", o, wantItems)
			}
			if strings.Contains(string(r.body), "customer") {
				t.Errorf("without -users-url the order has no customer:\n%s", r.body)
			}
		}},
		"unknown order": {orders, "GET", "/orders/0", 404, func(t *testing.T, r response) {
			checkError(t, r, 404, orders, `no order with id "0"`)
		}},
		"health": {orders, "GET", "/healthz", 200, func(t *testing.T, r response) {
			m := object(t, r.body, "status", "instance")
			if s := decode[string](t, m["status"]); s != "ok" {
				t.Errorf(`"status" = %q, want "ok"`, s)
			}
		}},
		"other service's path": {products, "GET", "/users", 404, func(t *testing.T, r response) {
			checkError(t, r, 404, products, "no endpoint GET /users on the products service")
		}},
		"unknown path": {users, "GET", "/", 404, func(t *testing.T, r response) {
			checkError(t, r, 404, users, "no endpoint GET / on the users service")
		}},
		"wrong method": {products, "DELETE", "/products/1", 405, func(t *testing.T, r response) {
			checkError(t, r, 405, products, "method DELETE not allowed on /products/1")
			if allow := r.header.Get("Allow"); !strings.Contains(allow, "GET") {
				t.Errorf("Allow = %q, want it to list GET", allow)
			}
		}},
		"POST only on orders": {products, "POST", "/products", 405, func(t *testing.T, r response) {
			checkError(t, r, 405, products, "method POST not allowed")
		}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r := d.do(t, tt.id, tt.method, tt.path, "")
			if r.status != tt.status {
				t.Fatalf("status = %d, want %d\n%s", r.status, tt.status, r.body)
			}
			if got := r.header.Get("X-Instance"); got != tt.id {
				t.Errorf("X-Instance = %q, want %q", got, tt.id)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			var body struct{ Instance string }
			if err := json.Unmarshal(r.body, &body); err != nil || body.Instance != tt.id {
				t.Errorf(`"instance" = %q (%v), want %q`, body.Instance, err, tt.id)
			}
			tt.check(t, r)
		})
	}
}

// mustFirst returns the first element of the array under key in body.
func mustFirst(t *testing.T, body []byte, key string) []byte {
	t.Helper()
	var m map[string]json.RawMessage
	var list []json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("body is not a JSON object: %v\n%s", err, body)
	}
	if err := json.Unmarshal(m[key], &list); err != nil || len(list) == 0 {
		t.Fatalf("no %q array in %s (%v)", key, body, err)
	}
	return list[0]
}

func TestInstanceIDsFollowPorts(t *testing.T) {
	t.Parallel()
	d := startDemo(t, options{listens: []listenSpec{
		{"products", "127.0.0.1:0"}, {"products", "127.0.0.1:0"}, {"products", "127.0.0.1:0"},
	}})
	seen := map[string]bool{}
	for _, id := range d.ids {
		_, port, _ := net.SplitHostPort(strings.TrimPrefix(d.urls[id], "http://"))
		if want := "products-" + port; id != want {
			t.Errorf("instance id = %q, want %q", id, want)
		}
		if got := d.do(t, id, "GET", "/products", "").header.Get("X-Instance"); got != id {
			t.Errorf("X-Instance = %q, want %q", got, id)
		}
		seen[id] = true
	}
	if len(seen) != 3 {
		t.Errorf("instance ids %v are not distinct", d.ids)
	}
	// One log line per instance start, naming it.
	for _, id := range d.ids {
		if n := strings.Count(d.logs.String(), "msg=\"instance started\" instance="+id+" "); n != 1 {
			t.Errorf("%d start lines for %s, want 1; logs:\n%s", n, id, d.logs.String())
		}
	}
}

func TestCreateOrder(t *testing.T) {
	t.Parallel()
	d := startDemo(t, options{listens: []listenSpec{{"orders", "127.0.0.1:0"}, {"orders", "127.0.0.1:0"}}})
	first, second := d.ids[0], d.ids[1]

	before := time.Now().UTC().Truncate(time.Second)
	r := d.do(t, first, "POST", "/orders", `{"user_id": 2, "product_ids": [1, 3, 3]}`)
	if r.status != http.StatusCreated {
		t.Fatalf("status = %d, want 201\n%s", r.status, r.body)
	}
	if got := r.header.Get("X-Instance"); got != first {
		t.Errorf("X-Instance = %q, want %q", got, first)
	}
	if loc := r.header.Get("Location"); loc != "/orders/7" {
		t.Errorf("Location = %q, want /orders/7", loc)
	}
	o := itemOf[Order](t, r.body)
	want := Order{ID: 7, UserID: 2, ProductIDs: []int{1, 3, 3}, Total: eur(2490 + 2*1290), Status: "pending"}
	created := o.CreatedAt
	o.CreatedAt = time.Time{}
	if o.ID != want.ID || o.UserID != want.UserID || !slices.Equal(o.ProductIDs, want.ProductIDs) ||
		o.Total != want.Total || o.Status != want.Status || !slices.Equal(o.Items, []Item{{1, 1, eur(2490)}, {3, 2, eur(1290)}}) {
		t.Errorf("order = %+v, want %+v", o, want)
	}
	if created.Before(before) || created.After(time.Now()) {
		t.Errorf("created_at = %v, want the time of the request", created)
	}

	// The order is kept by the instance that took it, and only there.
	if r := d.do(t, first, "GET", "/orders/7", ""); r.status != 200 {
		t.Errorf("GET /orders/7 on %s = %d, want 200", first, r.status)
	}
	list := decode[[]Order](t, object(t, d.do(t, first, "GET", "/orders", "").body, "instance", "orders")["orders"])
	if len(list) != 7 || list[6].ID != 7 {
		t.Errorf("GET /orders on %s lists %d orders, want 7 ending with the new one", first, len(list))
	}
	checkError(t, d.do(t, second, "GET", "/orders/7", ""), 404, second, `no order with id "7" on instance `+second)
	if r := d.do(t, second, "POST", "/orders", `{"user_id": 1, "product_ids": [10]}`); !strings.Contains(string(r.body), `"id": 7`) {
		t.Errorf("the second instance's first order should also be 7:\n%s", r.body)
	}
}

func TestCreateOrderRejects(t *testing.T) {
	t.Parallel()
	d := startDemo(t, options{listens: []listenSpec{{"orders", "127.0.0.1:0"}}})
	id := d.ids[0]
	tests := map[string]struct {
		body   string
		status int
		want   string
	}{
		"not JSON":           {"user_id=1", 400, "invalid order: invalid character"},
		"empty body":         {"", 400, "invalid order: EOF"},
		"truncated":          {`{"user_id": 1, "product_ids": [1`, 400, "invalid order"},
		"unknown field":      {`{"user_id": 1, "product_ids": [1], "coupon": "FREE"}`, 400, `unknown field "coupon"`},
		"wrong type":         {`{"user_id": "1", "product_ids": [1]}`, 400, "invalid order"},
		"two values":         {`{"user_id": 1, "product_ids": [1]} {}`, 400, "more than one JSON value"},
		"too large":          {`{"user_id": 1, "product_ids": [` + strings.Repeat("1, ", maxOrderBody/3) + `1]}`, 413, "larger than"},
		"unknown user":       {`{"user_id": 99, "product_ids": [1]}`, 422, "unknown user_id 99"},
		"missing user":       {`{"product_ids": [1]}`, 422, "unknown user_id 0"},
		"no products":        {`{"user_id": 1, "product_ids": []}`, 422, "product_ids is empty"},
		"missing products":   {`{"user_id": 1}`, 422, "product_ids is empty"},
		"unknown product id": {`{"user_id": 1, "product_ids": [1, 11]}`, 422, "unknown product id 11"},
	}
	// The group returns once its parallel subtests are done.
	t.Run("group", func(t *testing.T) {
		for name, tt := range tests {
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				checkError(t, d.do(t, id, "POST", "/orders", tt.body), tt.status, id, tt.want)
			})
		}
	})
	// Nothing rejected was stored.
	list := decode[[]Order](t, object(t, d.do(t, id, "GET", "/orders", "").body, "instance", "orders")["orders"])
	if len(list) != 6 {
		t.Errorf("%d orders after rejected POSTs, want 6", len(list))
	}
}

func TestCreateOrderConcurrent(t *testing.T) {
	t.Parallel()
	d := startDemo(t, options{listens: []listenSpec{{"orders", "127.0.0.1:0"}}})
	id := d.ids[0]
	const n = 20
	ids := make(chan int, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			r := d.do(t, id, "POST", "/orders", `{"user_id": 3, "product_ids": [5]}`)
			if r.status != 201 {
				t.Errorf("status = %d, want 201", r.status)
				return
			}
			ids <- itemOf[Order](t, r.body).ID
		})
	}
	wg.Wait()
	close(ids)
	got := slices.Sorted(func(yield func(int) bool) {
		for id := range ids {
			if !yield(id) {
				return
			}
		}
	})
	for i, v := range got {
		if v != 7+i {
			t.Fatalf("created ids = %v, want 7..%d each once", got, 6+n)
		}
	}
}

// sseEvent is one parsed Server-Sent Event.
type sseEvent struct {
	id, event, data string
	at              time.Time
}

// readEvents parses an event stream, sending each event as it completes.
func readEvents(body io.Reader, out chan<- sseEvent) error {
	defer close(out)
	var ev sseEvent
	sc := bufio.NewScanner(body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			ev.at = time.Now()
			out <- ev
			ev = sseEvent{}
			continue
		}
		field, value, _ := strings.Cut(line, ": ")
		switch field {
		case "id":
			ev.id = value
		case "event":
			ev.event = value
		case "data":
			ev.data = value
		default:
			return errors.New("unexpected line " + strconv.Quote(line))
		}
	}
	return sc.Err()
}

func TestEventsStreamFlushes(t *testing.T) {
	t.Parallel()
	const (
		interval = 250 * time.Millisecond
		n        = 4 // so the stream lasts 3 intervals
	)
	d := startDemo(t, options{eventInterval: interval})
	id := d.instanceOf(t, "users", 0)

	start := time.Now()
	req, _ := http.NewRequestWithContext(t.Context(), "GET", d.urls[id]+"/users/events?n="+strconv.Itoa(n), nil)
	resp, err := d.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" || resp.Header.Get("X-Instance") != id {
		t.Fatalf("status %d, Content-Type %q, X-Instance %q; want 200, text/event-stream, %s",
			resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("X-Instance"), id)
	}
	events := make(chan sseEvent, n)
	errc := make(chan error, 1)
	go func() { errc <- readEvents(resp.Body, events) }()

	// The first event must arrive while the stream is still going: well
	// before the (n-1) intervals the whole stream takes.
	select {
	case ev, ok := <-events:
		if !ok {
			t.Fatal("stream ended without an event")
		}
		if wait := ev.at.Sub(start); wait > 2*interval {
			t.Errorf("first event after %v, want it flushed at once", wait)
		}
	case <-time.After(2 * interval):
		t.Fatalf("no event within %v: the stream is not flushed", 2*interval)
	}
	var last sseEvent
	count := 1
	for ev := range events {
		count++
		last = ev
		var data struct {
			Instance string `json:"instance"`
			Seq, Of  int
			Time     time.Time
		}
		if err := json.Unmarshal([]byte(ev.data), &data); err != nil {
			t.Fatalf("event data %q: %v", ev.data, err)
		}
		if ev.event != "users" || ev.id != strconv.Itoa(count) || data.Seq != count || data.Of != n || data.Instance != id {
			t.Errorf("event %d = %+v with data %+v", count, ev, data)
		}
	}
	if err := <-errc; err != nil {
		t.Fatalf("reading the stream: %v", err)
	}
	if count != n {
		t.Fatalf("%d events, want %d", count, n)
	}
	if took := last.at.Sub(start); took < (n-1)*interval-50*time.Millisecond {
		t.Errorf("stream took %v, want about %v (one event per interval)", took, (n-1)*interval)
	}
}

func TestEventsRejectsBadCount(t *testing.T) {
	t.Parallel()
	d := startDemo(t, options{})
	id := d.instanceOf(t, "orders", 0)
	for _, n := range []string{"0", "-1", "1001", "many"} {
		checkError(t, d.do(t, id, "GET", "/orders/events?n="+n, ""), 400, id, `invalid n "`+n+`"`)
	}
}

func TestShutdownEndsStreams(t *testing.T) {
	t.Parallel()
	opts := options{
		listens:       []listenSpec{{"products", "127.0.0.1:0"}},
		eventInterval: time.Hour, // the stream would outlive any shutdown timeout
		seed:          1,
	}
	f, err := listen(opts, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- f.serve(ctx) }()

	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	resp, err := client.Get("http://" + f.listeners[0].Addr().String() + "/products/events?n=2")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
		t.Fatalf("reading the first event: %v", err)
	}

	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve = %v, want nil", err)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("shutdown took %v with an open stream, want it to end the stream at once", took)
		}
	case <-time.After(shutdownTimeout + time.Second):
		t.Fatal("serve did not return after cancel")
	}
	if _, err := io.ReadAll(resp.Body); err != nil {
		t.Errorf("stream ended with %v, want a clean end", err)
	}
}

func TestFailRate(t *testing.T) {
	t.Parallel()
	t.Run("1.0 fails everything but /healthz", func(t *testing.T) {
		t.Parallel()
		d := startDemo(t, options{failRate: 1})
		for _, id := range d.ids {
			service := strings.Split(id, "-")[0]
			for _, path := range []string{"/" + service, "/" + service + "/1", "/" + service + "/events"} {
				r := d.do(t, id, "GET", path, "")
				if got := r.header.Get("X-Instance"); got != id {
					t.Errorf("X-Instance = %q, want %q", got, id)
				}
				checkError(t, r, 503, id, "injected failure")
			}
			if r := d.do(t, id, "GET", "/healthz", ""); r.status != 200 {
				t.Errorf("%s /healthz = %d, want 200 whatever the fail rate", id, r.status)
			}
		}
	})
	t.Run("0.5 is a reproducible share", func(t *testing.T) {
		t.Parallel()
		statuses := func() []int {
			d := startDemo(t, options{failRate: 0.5, seed: 7, listens: []listenSpec{{"users", "127.0.0.1:0"}}})
			var got []int
			for range 200 {
				got = append(got, d.do(t, d.ids[0], "GET", "/users", "").status)
			}
			return got
		}
		a, b := statuses(), statuses()
		if !slices.Equal(a, b) {
			t.Error("the same -seed gave different failure sequences")
		}
		failed := 0
		for _, s := range a {
			switch s {
			case 503:
				failed++
			case 200:
			default:
				t.Fatalf("status %d, want 200 or 503", s)
			}
		}
		if failed < 70 || failed > 130 {
			t.Errorf("%d of 200 requests failed with -fail-rate 0.5", failed)
		}
	})
}

func TestLatency(t *testing.T) {
	t.Parallel()
	const latency = 400 * time.Millisecond
	d := startDemo(t, options{latency: latency, listens: []listenSpec{{"products", "127.0.0.1:0"}}})
	id := d.ids[0]

	start := time.Now()
	if r := d.do(t, id, "GET", "/products/1", ""); r.status != 200 {
		t.Fatalf("status = %d, want 200", r.status)
	}
	if took := time.Since(start); took < latency {
		t.Errorf("GET /products/1 took %v, want at least -latency %v", took, latency)
	}
	start = time.Now()
	d.do(t, id, "GET", "/healthz", "")
	if took := time.Since(start); took >= latency {
		t.Errorf("GET /healthz took %v, want no added latency", took)
	}
}

func TestCatalogIsConsistent(t *testing.T) {
	t.Parallel()
	c := newCatalog()
	if len(c.products) != 10 || len(c.users) != 5 || len(c.orders) != 6 {
		t.Fatalf("catalog has %d products, %d users, %d orders; want 10, 5, 6", len(c.products), len(c.users), len(c.orders))
	}
	for i, p := range c.products {
		if p.ID != i+1 {
			t.Errorf("product %d has id %d, want ids 1..10 in order", i, p.ID)
		}
	}
	for i, u := range c.users {
		if u.ID != i+1 || !strings.HasSuffix(u.Email, "@example.com") || len(u.Address.Country) != 2 ||
			!slices.Contains([]string{"standard", "gold", "platinum"}, u.Tier) || u.CreatedAt.IsZero() {
			t.Errorf("user %+v: want ids 1..5, example.com emails, two-letter countries", u)
		}
	}
	statuses := []string{"pending", "paid", "shipped", "delivered", "cancelled"}
	for i, o := range c.orders {
		if o.ID != i+1 {
			t.Errorf("order %d has id %d, want ids 1..6 in order", i, o.ID)
		}
		if _, ok := c.user(o.UserID); !ok {
			t.Errorf("order %d: unknown user %d", o.ID, o.UserID)
		}
		var total int64
		for _, pid := range o.ProductIDs {
			p, ok := c.product(pid)
			if !ok {
				t.Errorf("order %d: unknown product %d", o.ID, pid)
			}
			total += p.Price.Cents
		}
		var items, lines int64
		for _, it := range o.Items {
			items += it.UnitPrice.Cents * int64(it.Quantity)
			lines += int64(it.Quantity)
		}
		if total != o.Total.Cents || items != total || lines != int64(len(o.ProductIDs)) {
			t.Errorf("order %d: total %d, items add up to %d in %d units, products to %d in %d",
				o.ID, o.Total.Cents, items, lines, total, len(o.ProductIDs))
		}
		if !slices.Contains(statuses, o.Status) || o.CreatedAt.IsZero() {
			t.Errorf("order %d: status %q, created_at %v", o.ID, o.Status, o.CreatedAt)
		}
	}
}

func TestHelpListsFlags(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if _, err := parseFlags([]string{"-h"}, &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("parseFlags(-h) = %v, want flag.ErrHelp", err)
	}
	for _, f := range []string{"-listen", "-latency", "-fail-rate", "-seed", "-users-url"} {
		if !strings.Contains(out.String(), f) {
			t.Errorf("usage does not mention %s:\n%s", f, out.String())
		}
	}
}

func FuzzListenFlag(f *testing.F) {
	for _, seed := range []string{
		"products=127.0.0.1:9101", "users=[::1]:0", "orders=localhost:65535",
		"carts=127.0.0.1:1", "products=", "=127.0.0.1:1", "products=:80", "products=127.0.0.1:-1",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, v string) {
		var l listenFlags
		if err := l.Set(v); err != nil {
			if len(l) != 0 {
				t.Fatalf("Set(%q) failed with %v but kept %v", v, err, l)
			}
			return
		}
		if len(l) != 1 {
			t.Fatalf("Set(%q) kept %d specs, want 1", v, len(l))
		}
		s := l[0]
		if !isService(s.service) {
			t.Errorf("Set(%q) accepted service %q", v, s.service)
		}
		host, port, err := net.SplitHostPort(s.addr)
		if err != nil || host == "" {
			t.Errorf("Set(%q) accepted address %q", v, s.addr)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			t.Errorf("Set(%q) accepted port %q", v, port)
		}
		if got := l.String(); got != v {
			t.Errorf("String() = %q after Set(%q)", got, v)
		}
	})
}
