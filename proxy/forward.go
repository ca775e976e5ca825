package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshgate/meshgate/resilience"
	"github.com/meshgate/meshgate/telemetry"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

var _ http.Handler = (*Gateway)(nil)

// copyBufPool holds the buffers response bodies are copied through.
var copyBufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// ServeHTTP routes r and forwards it to an instance of the route's service.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	t := g.table.Load()
	var rte *Route
	pathErr := t.normalizePath(r)
	if pathErr == nil {
		rte = t.router.match(r)
	}
	ctx, span := g.tr.startServer(r, rte, t.ignoreTrace)
	status := http.StatusBadGateway // until a status is known
	var info *requestInfo
	if span != nil || g.met != nil || g.access != nil {
		// Deferred, so that aborted responses are recorded too.
		start, scheme := time.Now(), schemeOf(r)
		if g.met != nil {
			g.met.ServerStarted(ctx, r.Method, scheme)
		}
		if g.access != nil {
			info = &requestInfo{}
			cw := &countingWriter{ResponseWriter: w}
			w = cw
			info.bytes = &cw.n
		}
		defer func() {
			endSpan(span, status, nil)
			if g.met != nil {
				route, service := "", ""
				if rte != nil {
					route, service = routeTemplate(rte), rte.upstream.name
				}
				g.met.ServerDone(ctx, start, r.Method, scheme, route, service, status, telemetry.ErrorType(status))
			}
			if info != nil {
				g.logAccess(ctx, r, rte, info, status, start)
			}
		}()
	}
	if pathErr != nil {
		status = http.StatusBadRequest
		writeErrorTrace(w, ctx, status, pathErr.Error())
		return
	}
	if rte == nil {
		status = http.StatusNotFound
		writeErrorTrace(w, ctx, status, msgNoRoute)
		return
	}
	if r.ContentLength > t.maxBody {
		status = http.StatusRequestEntityTooLarge
		writeErrorTrace(w, ctx, status, msgBodyTooLarge)
		return
	}
	if g.serveRouted(ctx, w, r, t, rte, info, &status) {
		// The client must not take what net/http would send after this
		// handler for an answer: a response cut short would end as if
		// complete, and a client that only half-closed its side would read
		// "200 OK" with an empty body. The connection is closed instead (the
		// stream reset, over HTTP/2).
		panic(http.ErrAbortHandler)
	}
}

// serveRouted serves a routed request: through the route's policy chain
// when it has one, then by its aggregate or its service. Client requests
// and an aggregate's sub-requests both go this way. *status is the status
// the client got, set also when a policy chain aborts the response (by
// panicking with http.ErrAbortHandler); abort reports that the response
// was cut short and the connection must be closed. info may be nil.
func (g *Gateway) serveRouted(ctx context.Context, w http.ResponseWriter, r *http.Request, t *table, rte *Route, info *requestInfo, status *int) (abort bool) {
	switch {
	case rte.chain != nil:
		g.serveChain(ctx, w, r, t, rte, info, status)
		return false
	case rte.agg != nil:
		*status, abort = g.serveAggregate(ctx, w, r, t, rte)
		return abort
	default:
		*status, abort = g.serveRoute(ctx, w, r, t, rte, info)
		return abort
	}
}

// serveRoute sends a routed request upstream: bulkheads, then the attempt
// loop, and writes the response. abort is set when the response was cut
// short and the client connection must be closed rather than ended.
func (g *Gateway) serveRoute(ctx context.Context, w http.ResponseWriter, r *http.Request, t *table, rte *Route, info *requestInfo) (status int, abort bool) {
	status = http.StatusBadGateway // until a status is known
	upgrade := requestedUpgrade(r.Header)
	if upgrade != "" {
		// Counted from here, so that a shutdown that begins while the
		// upstream has yet to agree waits for the tunnel too.
		if !g.upgrades.begin() {
			status = http.StatusServiceUnavailable
			writeErrorTrace(w, ctx, status, msgShuttingDown)
			return status, false
		}
		defer g.upgrades.end()
	}
	up := rte.upstream
	if !up.res.limiter.Acquire() {
		// A bulkhead sheds rather than queues: the client may try again.
		g.log.Debug("load shed", "route", rte.Name, "service", up.name)
		g.obs.Observe(resilience.Event{Kind: resilience.EventLoadShed, Service: up.name, Reason: "service"})
		event(spanOf(ctx), "load_shed", attribute.String("meshgate.limit", "service"))
		status = http.StatusServiceUnavailable
		w.Header()["Retry-After"] = []string{"1"}
		writeErrorTrace(w, ctx, status, msgOverloaded)
		return status, false
	}
	defer up.res.limiter.Release()
	if up.res.retry.Attempts() > 1 {
		up.res.budget.Request() // only services that retry need the count
	}
	if upgrade == "" && up.takesH1(r) {
		return g.serveH1(ctx, w, r, t, rte, info)
	}
	var tried triedSet
	ep, done := up.admit(r, &tried)
	if ep == nil {
		status = http.StatusServiceUnavailable
		g.unavailable(ctx, w, up)
		return status, false
	}
	ep.state.inFlight.Add(1)
	ep.state.requests.Add(1)
	cctx, cspan, traceHeader := g.tr.startClient(ctx, r, ep, r.URL.Path, 1)
	attemptStart := time.Now()
	info.attempt(ep)
	// Deferred, so that an aborted response and any other panic end the
	// accounting too; until a status is known the request is a failure.
	defer func() {
		done(breakerOutcome(status)) // ignored when forward already reported
		g.account(r, rte, ep, status)
		endSpan(cspan, status, nil)
		g.clientDone(cctx, attemptStart, r, up, ep, status, nil)
	}()
	status, abort = g.forward(cctx, w, r, t, rte, ep, upgrade, done, traceHeader)
	return status, abort
}

// unavailable answers 503 when no instance can take a request: none is
// known, or every one is ejected or behind an open breaker. Retry-After
// says when the first breaker lets a probe through.
func (g *Gateway) unavailable(ctx context.Context, w http.ResponseWriter, up *upstream) {
	w.Header()["Retry-After"] = []string{up.unavailableRetryAfter()}
	writeErrorTrace(w, ctx, http.StatusServiceUnavailable, msgNoInstance)
}

// account ends an attempt's bookkeeping on its instance: it is no longer
// in flight, and a 5xx status counts as a failure of the instance and in
// its ejection record. A client that left (499) tells nothing about the
// instance. (The breaker learns the outcome when the head arrives.)
func (g *Gateway) account(r *http.Request, rte *Route, ep *endpoint, status int) {
	ep.state.inFlight.Add(-1)
	if status != StatusClientClosedRequest {
		failed := status >= 500
		if rte.upstream.res.outliers.Record(ep.res.outlier, failed, len(rte.upstream.endpoints), time.Now()) {
			g.log.Warn("instance ejected", "service", rte.upstream.name, "instance", ep.inst.ID)
			g.obs.Observe(resilience.Event{Kind: resilience.EventEjection, Service: rte.upstream.name, Instance: ep.inst.ID, Reason: strconv.Itoa(status)})
		}
	}
	switch {
	case status == StatusClientClosedRequest:
		g.log.Info("client closed request", "status", status, "route", rte.Name,
			"service", rte.upstream.name, "instance", ep.inst.ID, "method", r.Method)
	case status >= 500:
		ep.state.failures.Add(1)
	}
}

// takesH1 reports whether r goes over meshgate's own HTTP/1.1 client: a
// request without a body or with a short one of known length, to an
// HTTP/1.1 service. Bodies that stream (chunked, or longer than
// replayLimit) go through net/http's Transport, which sends them while it
// reads the response: an upstream that answers as it reads (full duplex),
// or stops reading to answer early, neither deadlocks nor stalls them.
func (u *upstream) takesH1(r *http.Request) bool {
	return u.h1 != nil && u.cfg.Protocol != "h2c" && len(r.Trailer) == 0 &&
		r.ContentLength >= 0 && r.ContentLength <= max(replayLimit, u.res.retry.ReplayLimit()) && !expectsContinue(r)
}

// expectsContinue reports whether the client waits for 100 Continue
// before sending its body (RFC 9110 §10.1.1); net/http's transport relays it.
func expectsContinue(r *http.Request) bool {
	return r.ContentLength != 0 && headerHasToken(r.Header, "Expect", "100-continue")
}

// serveH1 is the hot path: r goes over meshgate's own pooled HTTP/1.1
// client, with retries. Each attempt goes to an instance the request has
// not tried, whose breaker is closed (or half-open with a probe free) and
// which is not ejected. A failed attempt — a connect failure, a reset or
// timeout before the response, or a status of the retry policy — is tried
// again when the request may be (idempotent, an Idempotency-Key, or the
// route's opt-in), attempts remain, the retry budget allows it and the
// back-off (or the upstream's Retry-After) fits; otherwise the client gets
// that attempt's answer. Nothing reaches the client before the attempt
// that answers it is chosen. It reports whether the response must be
// aborted.
func (g *Gateway) serveH1(ctx context.Context, w http.ResponseWriter, r *http.Request, t *table, rte *Route, info *requestInfo) (int, bool) {
	up := rte.upstream
	pol := up.res.retry
	span := trace.SpanFromContext(ctx)
	req := h1Request{in: r, path: rte.upstreamPath(r.URL), query: r.URL.RawQuery, trusted: t.trusted, resend: canResend(r)}
	if d := rte.Config.Timeout.D(); d > 0 {
		// The route's deadline bounds the attempts up to the response
		// head, back-off included; a response body may take longer.
		req.deadline = time.Now().Add(d)
	}
	if r.ContentLength > 0 {
		// The body is read whole first, so that it can be sent again: to a
		// stale pooled connection's replacement, or to another instance.
		bp := replayPool.Get().(*[]byte)
		defer replayPool.Put(bp)
		if int64(cap(*bp)) < r.ContentLength {
			*bp = make([]byte, r.ContentLength)
		}
		buf := (*bp)[:r.ContentLength]
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			return g.clientBodyFailed(w, ctx, rte, err)
		}
		req.body = buf
	}
	eligible := pol.Attempts() > 1 && r.ContentLength <= pol.ReplayLimit() &&
		pol.Eligible(r.Method, r.Header, rte.Config.RetryNonIdempotent)
	dst := w.Header()
	var tried triedSet
	ep, done := up.admit(r, &tried)
	if ep == nil {
		g.unavailable(ctx, w, up)
		return http.StatusServiceUnavailable, false
	}
	for attempt := 1; ; attempt++ {
		ep.state.inFlight.Add(1)
		ep.state.requests.Add(1)
		status := http.StatusBadGateway
		cctx, cspan, traceHeader := g.tr.startClient(ctx, r, ep, req.path, attempt)
		req.trace = traceHeader
		attemptStart := time.Now()
		info.attempt(ep)
		c, res, err := up.h1.roundTrip(ctx, &ep.state.pool, ep.inst.HostPort, &req, dst)
		retryable := false
		switch {
		case err != nil && ctx.Err() != nil:
			status = StatusClientClosedRequest
		case err != nil:
			retryable, _ = pol.CheckRetry(ctx, nil, err)
			status, _ = classify(ctx, err)
		default:
			status = res.status
			retryable = pol.RetryableStatus(res.status) // CheckRetry's status rule, without a Response
		}
		// The breaker learns the outcome as soon as it is known, so that a
		// long response body does not hold a half-open probe slot.
		done(breakerOutcome(status))

		if retryable && eligible && attempt < pol.Attempts() {
			var wait time.Duration
			fits := true
			if res != nil {
				wait, fits = pol.Backoff(attempt, &http.Response{StatusCode: res.status, Header: dst})
			} else {
				wait, fits = pol.Backoff(attempt, nil)
			}
			if fits && !req.deadline.IsZero() && time.Until(req.deadline) <= wait {
				fits = false // no time left to try again: this answer is the one
			}
			// A retry goes to another instance whose breaker lets it in; with
			// none left, the client gets this attempt's answer.
			var next *endpoint
			var nextDone func(resilience.Outcome)
			if fits {
				next, nextDone = up.admit(r, &tried)
			}
			if next != nil && !up.res.budget.TryRetry() {
				nextDone(resilience.Excluded)
				next = nil
				g.log.Debug("retry denied by the budget", "route", rte.Name, "service", up.name)
				g.obs.Observe(resilience.Event{Kind: resilience.EventBudgetDenied, Service: up.name, Instance: ep.inst.ID})
				event(span, "retry_budget_exhausted")
			}
			if next != nil {
				if c != nil {
					up.h1.finish(&ep.state.pool, c, res, false) // the unread answer is dropped with its connection
				}
				clear(dst)
				g.account(r, rte, ep, status)
				endSpan(cspan, status, err)
				g.clientDone(cctx, attemptStart, r, up, ep, status, err)
				g.log.Debug("retrying", "route", rte.Name, "service", up.name, "instance", ep.inst.ID,
					"attempt", attempt, "status", status, "error", err, "backoff", wait)
				g.obs.Observe(resilience.Event{Kind: resilience.EventRetry, Service: up.name, Instance: ep.inst.ID, Reason: retryReason(status, err)})
				event(span, "retry", attribute.String("meshgate.reason", retryReason(status, err)),
					attribute.String("meshgate.instance", ep.inst.ID), attribute.Int("meshgate.attempt", attempt))
				if !resilience.Sleep(ctx, wait) {
					nextDone(resilience.Excluded)
					return StatusClientClosedRequest, true // the client left: nothing to answer
				}
				ep, done = next, nextDone
				continue
			}
		}
		abort := g.commitH1(ctx, w, r, rte, ep, c, res, err, &status)
		g.account(r, rte, ep, status)
		endSpan(cspan, status, err)
		g.clientDone(cctx, attemptStart, r, up, ep, status, err)
		return status, abort
	}
}

// admit picks an instance r has not tried whose breaker lets the request
// in, marking each candidate tried; nil when none is left.
func (u *upstream) admit(r *http.Request, tried *triedSet) (*endpoint, func(resilience.Outcome)) {
	for {
		ep, idx := u.pickAvailable(r, tried, time.Now())
		if ep == nil {
			return nil, nil
		}
		tried.add(idx)
		if done, ok := ep.res.breaker.Allow(); ok {
			return ep, done
		}
	}
}

// breakerOutcome is what an attempt's status tells the instance's breaker:
// a client that left says nothing about the instance.
func breakerOutcome(status int) resilience.Outcome {
	switch {
	case status == StatusClientClosedRequest:
		return resilience.Excluded
	case status >= 500:
		return resilience.Failure
	default:
		return resilience.Success
	}
}

// clientDone records an upstream attempt's duration, when metrics are on.
func (g *Gateway) clientDone(ctx context.Context, start time.Time, r *http.Request, up *upstream, ep *endpoint, status int, err error) {
	if g.met == nil {
		return
	}
	errType := telemetry.ErrorType(status)
	if err != nil {
		errType = errorType(status)
	}
	g.met.ClientDone(ctx, start, r.Method, up.name, ep.inst.ID, ep.inst.Address, ep.inst.Port, status, errType)
}

// schemeOf is the url.scheme of a request received by the gateway.
func schemeOf(r *http.Request) string {
	if r.TLS != nil {
		return "https"
	}
	return "http"
}

// retryReason names why an attempt is retried: its status, or the kind of
// failure ("timeout" or "connect").
func retryReason(status int, err error) string {
	if err == nil {
		return strconv.Itoa(status)
	}
	if status == http.StatusGatewayTimeout {
		return "timeout"
	}
	return "connect"
}

// commitH1 sends the chosen attempt's outcome to the client: the failure
// mapped to its status, or the response streamed. status is updated with
// what the client got.
func (g *Gateway) commitH1(ctx context.Context, w http.ResponseWriter, r *http.Request, rte *Route, ep *endpoint, c *upConn, res *h1Response, err error, status *int) bool {
	up := rte.upstream
	dst := w.Header()
	if err != nil {
		clear(dst)
		if *status == StatusClientClosedRequest {
			return true
		}
		msg := msgUpstreamFailed
		switch *status {
		case http.StatusGatewayTimeout:
			msg = msgUpstreamTimeout
		default:
			_, msg = classify(ctx, err)
		}
		g.log.Warn("upstream request failed", "route", rte.Name, "service", up.name,
			"instance", ep.inst.ID, "status", *status, "error", err)
		writeErrorTrace(w, ctx, *status, msg)
		return false
	}
	w.WriteHeader(res.status)
	if res.body == nil {
		up.h1.finish(&ep.state.pool, c, res, true)
		return false
	}
	flush := res.length < 0 || strings.HasPrefix(dst.Get("Content-Type"), "text/event-stream")
	toClient, cerr := copyResponse(w, res.body, flush)
	if cerr == nil && res.chunked {
		cerr = readTrailer(c.br, dst)
	}
	up.h1.finish(&ep.state.pool, c, res, cerr == nil)
	if cerr != nil {
		var abort bool
		*status, abort = g.responseCopyFailed(ctx, rte, ep, cerr, toClient)
		return abort
	}
	return false
}

// errRouteTimeout is the failure of a request whose route timeout ran out
// before the response head arrived; it maps to 504.
var errRouteTimeout = fmt.Errorf("route timeout before the response head: %w", context.DeadlineExceeded)

// headDeadline bounds a net/http Transport request up to its response head
// (the route's timeout) without bounding the response body, which shares
// the request's context: the timer cancels the context only while the head
// is still awaited.
type headDeadline struct {
	state  atomic.Int32 // 0 waiting, 1 head arrived, 2 timed out
	cancel context.CancelFunc
	timer  *time.Timer
}

func (h *headDeadline) start(ctx context.Context, d time.Duration) context.Context {
	ctx, h.cancel = context.WithCancel(ctx)
	if d > 0 {
		h.timer = time.AfterFunc(d, func() {
			if h.state.CompareAndSwap(0, 2) {
				h.cancel()
			}
		})
	}
	return ctx
}

// arrived records that the head came; false when the deadline won.
func (h *headDeadline) arrived() bool { return h.state.CompareAndSwap(0, 1) || h.state.Load() == 1 }

func (h *headDeadline) expired() bool { return h.state.Load() == 2 }

func (h *headDeadline) stop() {
	if h.timer != nil {
		h.timer.Stop()
	}
	h.cancel()
}

// clientBodyStatus maps a failure to read the client's request body to the
// status the client gets: too large (413); ended before its declared end
// (400: the client may have closed only its sending side and still wait
// for the answer, as nginx also answers); failed otherwise while the client
// was gone (499); malformed (400).
func clientBodyStatus(ctx context.Context, err error) (int, string) {
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge, msgBodyTooLarge
	case errors.Is(err, io.ErrUnexpectedEOF):
		return http.StatusBadRequest, msgBodyIncomplete
	case ctx.Err() != nil:
		return StatusClientClosedRequest, ""
	default:
		return http.StatusBadRequest, msgBodyUnreadable
	}
}

// clientBodyFailed answers a request whose body could not be read from the
// client (see clientBodyStatus). It is never the instance's failure.
func (g *Gateway) clientBodyFailed(w http.ResponseWriter, ctx context.Context, rte *Route, err error) (int, bool) {
	status, msg := clientBodyStatus(ctx, err)
	if status == StatusClientClosedRequest {
		return status, true
	}
	g.log.Debug("reading the request body failed", "route", rte.Name, "status", status, "error", err)
	writeErrorTrace(w, ctx, status, msg)
	return status, false
}

// upstreamFailed maps a failed round trip to its status and answers with
// it, unless the client went away (499: the response is aborted).
func (g *Gateway) upstreamFailed(w http.ResponseWriter, ctx context.Context, rte *Route, ep *endpoint, err error) (int, bool) {
	status, msg := classify(ctx, err)
	if status == StatusClientClosedRequest {
		return status, true
	}
	g.log.Warn("upstream request failed", "route", rte.Name, "service", rte.upstream.name,
		"instance", ep.inst.ID, "status", status, "error", err)
	writeErrorTrace(w, ctx, status, msg)
	return status, false
}

// responseCopyFailed handles a response that broke after its header was
// sent. The client's response is aborted so that it sees a truncated body
// rather than a complete-looking one; the status is 502, a failure of the
// instance, unless the client is the side that went away (499).
func (g *Gateway) responseCopyFailed(ctx context.Context, rte *Route, ep *endpoint, err error, toClient bool) (int, bool) {
	if toClient || ctx.Err() != nil {
		return StatusClientClosedRequest, true
	}
	g.log.Warn("copying upstream response failed", "route", rte.Name, "service", rte.upstream.name,
		"instance", ep.inst.ID, "error", err)
	return http.StatusBadGateway, true
}

// forward sends r to ep with net/http's transport (WebSocket upgrades,
// 100-continue, h2c, streamed bodies) and streams the answer back. It
// returns the status the client got (499 when it went away first) and
// whether its response must be aborted. reqUpgrade is the protocol the
// client asked to switch to, "" for none.
func (g *Gateway) forward(ctx context.Context, w http.ResponseWriter, r *http.Request, t *table, rte *Route, ep *endpoint,
	reqUpgrade string, done func(resilience.Outcome), traceHeader http.Header) (int, bool) {
	out := new(http.Request)
	*out = *r // shallow: the header map is rebuilt below, the body is wrapped
	head := headDeadline{}
	out = out.WithContext(head.start(ctx, rte.Config.Timeout.D()))
	defer head.stop()
	u := *r.URL
	u.Scheme = "http"
	u.Host = ep.inst.HostPort
	rte.rewriteURL(&u)
	out.URL = &u
	out.RequestURI = ""
	out.Close = false

	out.Header = cloneHeaderForUpstream(r.Header)
	if reqUpgrade != "" {
		out.Header["Connection"] = []string{"Upgrade"}
		out.Header["Upgrade"] = []string{reqUpgrade}
	}
	if headerHasToken(r.Header, "Te", "trailers") {
		// gRPC needs "TE: trailers" end to end (RFC 9110 §10.1.4).
		out.Header["Te"] = []string{"trailers"}
	}
	forwardedOf(r, t.trusted).setOn(out.Header)
	for k, vv := range traceHeader {
		out.Header[k] = vv
	}
	if _, ok := out.Header["User-Agent"]; !ok {
		// Keep Go's transport from adding its own User-Agent.
		out.Header["User-Agent"] = nil
	}
	var body *clientBody
	switch {
	case r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody:
		out.Body = nil // a GET must not look like it has a body to the transport
	default:
		rc := r.Body
		if r.ContentLength < 0 {
			// Known lengths were checked above and the server enforces
			// them; only a chunked body needs counting.
			rc = http.MaxBytesReader(nil, rc, t.maxBody)
		}
		body = &clientBody{rc: rc}
		out.Body = body
		// The upstream may answer while it still reads the body: the
		// server must not wait for the whole body before it sends the
		// response (HTTP/2 always allows this).
		_ = http.NewResponseController(w).EnableFullDuplex()
	}

	res, err := rte.upstream.transport.RoundTrip(out)
	if !head.arrived() && err == nil {
		// The deadline fired as the head arrived: the request context is
		// cancelled and the body cannot be read.
		res.Body.Close()
		err = errRouteTimeout
	}
	body.closeUnlessRead(w, r)
	// The breaker learns the outcome from the head: a stream or a tunnel
	// must not hold a half-open probe slot for its whole life.
	switch {
	case err != nil && ctx.Err() != nil:
		done(resilience.Excluded)
	case err != nil:
		if body.failure() != nil {
			done(resilience.Excluded) // the client's body failed, not the instance
		} else {
			done(resilience.Failure)
		}
	default:
		done(breakerOutcome(res.StatusCode))
	}
	if err != nil {
		if berr := body.failure(); berr != nil {
			return g.clientBodyFailed(w, ctx, rte, berr)
		}
		if head.expired() {
			err = errRouteTimeout
		}
		return g.upstreamFailed(w, ctx, rte, ep, err)
	}

	if res.StatusCode == http.StatusSwitchingProtocols {
		return g.serveUpgrade(w, r, res, reqUpgrade), false
	}

	removeHopHeaders(res.Header)
	dst := w.Header()
	for k, vv := range res.Header {
		dst[k] = vv
	}
	announced := len(res.Trailer)
	if announced > 0 {
		names := make([]string, 0, announced)
		for k := range res.Trailer {
			names = append(names, k)
		}
		dst["Trailer"] = []string{strings.Join(names, ", ")}
	}
	w.WriteHeader(res.StatusCode)

	toClient, err := copyResponse(w, res.Body, shouldFlush(res))
	res.Body.Close()
	if err != nil {
		if berr := body.failure(); berr != nil {
			// The client's body broke while the upstream was answering (full
			// duplex): the client's failure, not the instance's.
			status, _ := clientBodyStatus(ctx, berr)
			return status, true
		}
		return g.responseCopyFailed(ctx, rte, ep, err, toClient)
	}
	if len(res.Trailer) > 0 {
		for k, vv := range res.Trailer {
			if _, ok := dst[k]; !ok || announced == 0 {
				k = http.TrailerPrefix + k
			}
			dst[k] = vv
		}
	}
	return res.StatusCode, false
}

// clientBody is the client's request body as net/http's transport reads
// it. It records its own first read error, so that a client whose body
// fails is told from an upstream that fails by what happened, not by how
// the transport reports it (it may return either side's error, wrapped).
type clientBody struct {
	rc  io.ReadCloser
	mu  sync.Mutex // the transport reads on its own goroutine
	err error
	eof bool
}

func (b *clientBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err != nil {
		b.mu.Lock()
		if err == io.EOF {
			b.eof = true
		} else if b.err == nil {
			b.err = err
		}
		b.mu.Unlock()
	}
	return n, err
}

// closeUnlessRead asks net/http to close the client connection after the
// response when the transport has not read the client's body to its end:
// the transport may still be reading it on its own goroutine, and the
// server must not start reading the next request from the same
// connection meanwhile. HTTP/2 streams need nothing of the kind.
func (b *clientBody) closeUnlessRead(w http.ResponseWriter, r *http.Request) {
	if b == nil || r.ProtoMajor != 1 {
		return
	}
	b.mu.Lock()
	done := b.eof
	b.mu.Unlock()
	if !done {
		w.Header()["Connection"] = []string{"close"}
	}
}

// Close leaves the client's body open: net/http's server closes it once
// the handler returns, after the response is on its way. Closing it here,
// as the transport does when the upstream fails, would read it to its end,
// blocking while a client that stalls mid-body sends nothing more.
func (b *clientBody) Close() error { return nil }

// failure returns the first error reading the client's body, or nil; b
// may be nil (no body).
func (b *clientBody) failure() error {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// cloneHeaderForUpstream copies the client's header without the
// hop-by-hop fields, in one allocation for all values.
func cloneHeaderForUpstream(h http.Header) http.Header {
	// Count values to size one backing slice, as http.Header.Clone does.
	nv := 0
	for _, vv := range h {
		nv += len(vv)
	}
	sv := make([]string, nv)
	out := make(http.Header, len(h)+3)
	for k, vv := range h {
		if isHopHeader(k) {
			continue
		}
		n := copy(sv, vv)
		out[k] = sv[:n:n]
		sv = sv[n:]
	}
	for _, v := range h["Connection"] {
		for len(v) > 0 {
			var name string
			name, v, _ = strings.Cut(v, ",")
			if name = strings.TrimSpace(name); name != "" {
				out.Del(name)
			}
		}
	}
	return out
}

func isHopHeader(k string) bool {
	for _, h := range hopHeaders {
		if k == h {
			return true
		}
	}
	return false
}

// shouldFlush reports whether each chunk of the response must reach the
// client at once: Server-Sent Events, and bodies of unknown length that may
// be streams (as httputil.ReverseProxy does since Go 1.19).
func shouldFlush(res *http.Response) bool {
	if res.ContentLength == -1 {
		return true
	}
	ct := res.Header.Get("Content-Type")
	return strings.HasPrefix(ct, "text/event-stream")
}

// copyResponse streams the response body to w through a pooled buffer,
// flushing after every read when flush is set. A read error from the
// upstream is returned; so is a write error to the client, with toClient
// set: the client went away, the upstream did not fail.
func copyResponse(w http.ResponseWriter, body io.Reader, flush bool) (toClient bool, err error) {
	bp := copyBufPool.Get().(*[]byte)
	defer copyBufPool.Put(bp)
	buf := *bp
	var rc *http.ResponseController
	if flush {
		rc = http.NewResponseController(w)
	}
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return true, werr
			}
			if flush {
				if err := rc.Flush(); err != nil {
					return true, err
				}
			}
		}
		if rerr == io.EOF {
			return false, nil
		}
		if rerr != nil {
			return false, rerr
		}
	}
}
