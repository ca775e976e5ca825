package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// maxOrderBody bounds a POST /orders body.
const maxOrderBody = 64 << 10

// instanceConfig is what one instance is built from.
type instanceConfig struct {
	service       string // products, users or orders
	id            string // "<service>-<port>"
	latency       time.Duration
	failRate      float64
	seed, stream  uint64 // of the PCG source behind failRate
	eventInterval time.Duration
	now           func() time.Time
	// usersURL is the base URL under which an orders instance reaches
	// the users service (in the mesh: its own sidecar); empty for none.
	usersURL string
	// client makes the calls to usersURL.
	client *http.Client
}

// instance is one demo service instance: an http.Handler that serves its
// service's endpoints, /healthz and the event stream.
type instance struct {
	instanceConfig
	mux *http.ServeMux
	// fault holds the injected latency and failure share in force,
	// replaced whole by PUT /_faults.
	fault atomic.Pointer[faultSettings]

	mu      sync.Mutex
	rng     *rand.Rand // guarded by mu: a rand.Rand is not safe for concurrent use
	catalog catalog    // orders guarded by mu (POST /orders appends); the rest is read only
	nextID  int        // guarded by mu: the id of the next created order
}

var _ http.Handler = (*instance)(nil)

func newInstance(cfg instanceConfig) *instance {
	in := &instance{
		instanceConfig: cfg,
		mux:            http.NewServeMux(),
		rng:            rand.New(rand.NewPCG(cfg.seed, cfg.stream)),
		catalog:        newCatalog(),
	}
	in.nextID = len(in.catalog.orders) + 1
	in.fault.Store(&faultSettings{Latency: cfg.latency, FailRate: cfg.failRate})

	in.mux.HandleFunc("GET /healthz", in.healthz)
	in.mux.HandleFunc("GET /_faults", in.getFaults)
	in.mux.HandleFunc("PUT /_faults", in.putFaults)
	s := "/" + cfg.service
	// The event stream is a fixed segment and so takes precedence over the
	// {id} wildcard of the same length.
	in.mux.Handle("GET "+s+"/events", in.faults(http.HandlerFunc(in.events)))
	switch cfg.service {
	case "products":
		in.mux.Handle("GET /products", in.faults(http.HandlerFunc(in.listProducts)))
		in.mux.Handle("GET /products/{id}", in.faults(http.HandlerFunc(in.getProduct)))
	case "users":
		in.mux.Handle("GET /users", in.faults(http.HandlerFunc(in.listUsers)))
		in.mux.Handle("GET /users/{id}", in.faults(http.HandlerFunc(in.getUser)))
	case "orders":
		in.mux.Handle("GET /orders", in.faults(http.HandlerFunc(in.listOrders)))
		in.mux.Handle("GET /orders/{id}", in.faults(http.HandlerFunc(in.getOrder)))
		in.mux.Handle("POST /orders", in.faults(http.HandlerFunc(in.createOrder)))
	}
	return in
}

// ServeHTTP tags every response with the instance and turns the mux's
// plain-text 404 and 405 answers into JSON errors.
func (in *instance) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Instance", in.id)
	if _, pattern := in.mux.Handler(r); pattern == "" {
		// No pattern matched: learn from the mux whether that is 404 or
		// 405 (and which methods to Allow), then answer in JSON.
		probe := &statusProbe{header: http.Header{}}
		in.mux.ServeHTTP(probe, r)
		if allow := probe.header.Get("Allow"); allow != "" {
			w.Header().Set("Allow", allow)
		}
		status := probe.status
		if status == 0 || status == http.StatusOK {
			status = http.StatusNotFound
		}
		msg := fmt.Sprintf("no endpoint %s %s on the %s service", r.Method, r.URL.Path, in.service)
		if status == http.StatusMethodNotAllowed {
			msg = fmt.Sprintf("method %s not allowed on %s", r.Method, r.URL.Path)
		}
		in.writeError(w, status, msg)
		return
	}
	in.mux.ServeHTTP(w, r)
}

// statusProbe is a ResponseWriter that keeps only the status and headers.
type statusProbe struct {
	header http.Header
	status int
}

func (p *statusProbe) Header() http.Header { return p.header }
func (p *statusProbe) WriteHeader(code int) {
	if p.status == 0 {
		p.status = code
	}
}
func (p *statusProbe) Write(b []byte) (int, error) {
	p.WriteHeader(http.StatusOK)
	return len(b), nil
}

// faults adds the injected latency and answers the injected share of
// requests with 503, as set by -latency and -fail-rate and changed at run
// time with PUT /_faults. /healthz and /_faults are not wrapped: /healthz
// reports on the process, so that active health checks keep instances in
// rotation while the gateway's passive checks (outlier detection, breakers)
// see the injected failures.
func (in *instance) faults(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f := in.fault.Load()
		if f.Latency > 0 {
			t := time.NewTimer(f.Latency)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			}
		}
		if f.FailRate > 0 && in.draw() < f.FailRate {
			in.writeError(w, http.StatusServiceUnavailable, "injected failure (fail_rate "+strconv.FormatFloat(f.FailRate, 'g', -1, 64)+")")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// draw returns a random number in [0, 1).
func (in *instance) draw() float64 {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.rng.Float64()
}

func (in *instance) healthz(w http.ResponseWriter, r *http.Request) {
	in.writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "instance": in.id})
}

func (in *instance) listProducts(w http.ResponseWriter, r *http.Request) {
	in.writeJSON(w, http.StatusOK, map[string]any{"instance": in.id, "products": in.catalog.products})
}

func (in *instance) getProduct(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(r)
	p, found := in.catalog.product(id)
	if !ok || !found {
		in.writeError(w, http.StatusNotFound, fmt.Sprintf("no product with id %q", r.PathValue("id")))
		return
	}
	in.writeJSON(w, http.StatusOK, struct {
		Instance string `json:"instance"`
		Product
	}{in.id, p})
}

func (in *instance) listUsers(w http.ResponseWriter, r *http.Request) {
	in.writeJSON(w, http.StatusOK, map[string]any{"instance": in.id, "users": in.catalog.users})
}

func (in *instance) getUser(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(r)
	u, found := in.catalog.user(id)
	if !ok || !found {
		in.writeError(w, http.StatusNotFound, fmt.Sprintf("no user with id %q", r.PathValue("id")))
		return
	}
	in.writeJSON(w, http.StatusOK, struct {
		Instance string `json:"instance"`
		User
	}{in.id, u})
}

func (in *instance) listOrders(w http.ResponseWriter, r *http.Request) {
	in.mu.Lock()
	// Created orders are only ever appended, so a copy of the slice header
	// is a consistent snapshot.
	orders := in.catalog.orders[:len(in.catalog.orders):len(in.catalog.orders)]
	in.mu.Unlock()
	in.writeJSON(w, http.StatusOK, map[string]any{"instance": in.id, "orders": orders})
}

func (in *instance) getOrder(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(r)
	in.mu.Lock()
	o, found := in.catalog.order(id)
	in.mu.Unlock()
	if !ok || !found {
		in.writeError(w, http.StatusNotFound, fmt.Sprintf("no order with id %q on instance %s", r.PathValue("id"), in.id))
		return
	}
	v := orderView{Instance: in.id, Order: o}
	if in.usersURL != "" {
		if c, err := in.customer(r, o.UserID); err != nil {
			// The order is served without its customer: a degraded
			// answer beats none.
			v.Customer, v.CustomerError = json.RawMessage("null"), err.Error()
		} else {
			v.Customer, _ = json.Marshal(c)
		}
	}
	in.writeJSON(w, http.StatusOK, v)
}

// orderView is the answer of GET /orders/{id} and POST /orders: the order
// and, with -users-url, its customer, or null and why.
type orderView struct {
	Instance string `json:"instance"`
	Order
	Customer      json.RawMessage `json:"customer,omitempty"`
	CustomerError string          `json:"customer_error,omitempty"`
}

// newOrder is the body of POST /orders.
type newOrder struct {
	UserID     int   `json:"user_id"`
	ProductIDs []int `json:"product_ids"`
}

func (in *instance) createOrder(w http.ResponseWriter, r *http.Request) {
	var req newOrder
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxOrderBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		if maxErr := (*http.MaxBytesError)(nil); errors.As(err, &maxErr) {
			in.writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("order body larger than %d bytes", maxOrderBody))
			return
		}
		in.writeError(w, http.StatusBadRequest, `invalid order: `+err.Error()+`; want {"user_id": 1, "product_ids": [1, 3]}`)
		return
	}
	if dec.More() {
		in.writeError(w, http.StatusBadRequest, "invalid order: more than one JSON value in the body")
		return
	}

	o, status, msg := in.addOrder(req)
	if status != http.StatusCreated {
		in.writeError(w, status, msg)
		return
	}
	w.Header().Set("Location", "/orders/"+strconv.Itoa(o.ID))
	in.writeJSON(w, http.StatusCreated, orderView{Instance: in.id, Order: o})
}

// addOrder validates req against the catalog and stores the new order. It
// returns 201, or the status and message of the problem.
func (in *instance) addOrder(req newOrder) (Order, int, string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	// Semantic problems get 422 (RFC 9110, section 15.5.21): the JSON was
	// fine, its content is not.
	if _, ok := in.catalog.user(req.UserID); !ok {
		return Order{}, http.StatusUnprocessableEntity, fmt.Sprintf("unknown user_id %d", req.UserID)
	}
	if len(req.ProductIDs) == 0 {
		return Order{}, http.StatusUnprocessableEntity, "product_ids is empty: an order needs at least one product"
	}
	o, err := in.catalog.newOrder(in.nextID, req.UserID, req.ProductIDs, "pending", in.now().UTC().Truncate(time.Second))
	if err != nil {
		return Order{}, http.StatusUnprocessableEntity, err.Error()
	}
	in.nextID++
	in.catalog.orders = append(in.catalog.orders, o)
	return o, http.StatusCreated, ""
}

// events streams Server-Sent Events: n events (?n=, default 5, at most
// 1000), the first at once and then one per eventInterval, each flushed as
// it is written so that a proxy in between can be seen to stream.
func (in *instance) events(w http.ResponseWriter, r *http.Request) {
	n := 5
	if v := r.URL.Query().Get("n"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 || n > 1000 {
			in.writeError(w, http.StatusBadRequest, fmt.Sprintf("invalid n %q: want a count from 1 to 1000", v))
			return
		}
	}
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	// Asks nginx-style buffering proxies in front not to hold events back.
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	tick := time.NewTicker(in.eventInterval)
	defer tick.Stop()
	for seq := 1; seq <= n; seq++ {
		if seq > 1 {
			select {
			case <-tick.C:
			case <-r.Context().Done():
				return
			}
		}
		data, _ := json.Marshal(map[string]any{
			"instance": in.id, "seq": seq, "of": n, "time": in.now().UTC().Format(time.RFC3339Nano),
		})
		if _, err := fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", seq, in.service, data); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

// pathID parses the {id} path segment.
func pathID(r *http.Request) (int, bool) {
	id, err := strconv.Atoi(r.PathValue("id"))
	return id, err == nil
}

// writeJSON writes v as indented JSON (the demo is read by people with curl).
func (in *instance) writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		in.writeError(w, http.StatusInternalServerError, "encoding response: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(status)
	w.Write(append(body, '\n'))
}

// writeError writes the demo's JSON error: {"error": msg, "status": status,
// "instance": id}.
func (in *instance) writeError(w http.ResponseWriter, status int, msg string) {
	body, _ := json.MarshalIndent(struct {
		Error    string `json:"error"`
		Status   int    `json:"status"`
		Instance string `json:"instance"`
	}{msg, status, in.id}, "", "  ")
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(status)
	w.Write(append(body, '\n'))
}
