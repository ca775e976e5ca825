package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/itchyny/gojq"
	"github.com/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/policies"
	"github.com/meshgate/meshgate/telemetry"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.39.0"
	"go.opentelemetry.io/otel/trace"
)

// Aggregation: a route with an aggregate answers GET and HEAD by calling
// other routes (its parts) and merging their JSON answers into one object.
// Each call is a GET sub-request that goes the way a client request goes
// after routing (serveRouted): the same router, the called route's policy
// chain, then discovery, balancing, retries and breakers. It never gets a
// server span or a server metric of its own; its client spans nest under
// the part's span.

// Limits of aggregation.
const (
	// maxPartBody bounds the answer of one call (1 MiB); a larger one
	// fails it.
	maxPartBody = 1 << 20
	// maxPartPaths bounds the paths one part's expression may give.
	maxPartPaths = 64
	// maxPartTotal bounds the answers of all the calls of one list part
	// together (4 MiB); more fails the part.
	maxPartTotal = 4 << 20
	// maxListConcurrency bounds the calls of one list part in flight.
	maxListConcurrency = 8
	// maxPathEval bounds the evaluation of a path expression, which is a
	// program (jq has loops and recursion).
	maxPathEval = 250 * time.Millisecond
)

// HeaderPartial names the parts missing from a partial aggregate answer.
const HeaderPartial = "Meshgate-Partial"

// aggregate is a route's compiled aggregate.
type aggregate struct {
	timeout time.Duration
	parts   []*aggPart
}

// aggPart is one compiled part.
type aggPart struct {
	name     string
	code     *gojq.Code
	needs    []int // indexes of the parts it needs
	timeout  time.Duration
	optional bool
	needed   bool // a later part reads its value in jq
}

// compileAggregate compiles a validated aggregate's path expressions.
func compileAggregate(ac *config.Aggregate) (*aggregate, error) {
	a := &aggregate{timeout: ac.Timeout.D()}
	index := make(map[string]int, len(ac.Parts))
	for i, pc := range ac.Parts {
		index[pc.Name] = i
	}
	for _, pc := range ac.Parts {
		code, err := config.CompileAggregatePath(pc.Path)
		if err != nil {
			return nil, fmt.Errorf("part %q: %w", pc.Name, err)
		}
		p := &aggPart{name: pc.Name, code: code, timeout: pc.Timeout.D(), optional: pc.Optional}
		for _, n := range pc.Needs {
			j, ok := index[n]
			if !ok {
				return nil, fmt.Errorf("part %q: unknown need %q", pc.Name, n)
			}
			p.needs = append(p.needs, j)
		}
		a.parts = append(a.parts, p)
	}
	for _, p := range a.parts {
		for _, j := range p.needs {
			a.parts[j].needed = true
		}
	}
	return a, nil
}

// partResult is the outcome of one part of one request.
type partResult struct {
	done   chan struct{} // closed when the rest is set
	result string        // telemetry.PartOK, PartFailed or PartSkipped
	raw    []byte        // the JSON value, when ok
	value  any           // raw decoded for jq, when ok and needed
	reason string        // why it failed or was skipped
	// timedOut is set when it failed for want of time (its own timeout or
	// the aggregate's): the client gets 504 rather than 502.
	timedOut bool
}

// partTimeout is the failure of a part that ran out of time.
type partTimeout struct{ msg string }

func (e partTimeout) Error() string { return e.msg }

// aggregateRun is the state of one aggregate request.
type aggregateRun struct {
	g      *Gateway
	t      *table
	rte    *Route
	agg    *aggregate
	client *http.Request
	input  map[string]any // .request of the path expressions
	res    []partResult

	cancel context.CancelCauseFunc
	mu     sync.Mutex
	failed int // index of the first required part that failed; -1 none
}

// errRequiredFailed cancels the parts still running once a required part
// failed: the answer is a 502 whatever they give.
var errRequiredFailed = errors.New("a required part failed")

// serveAggregate answers r from the route's parts. It returns the status
// the client got, and whether the response must be aborted (the client
// went away).
func (g *Gateway) serveAggregate(ctx context.Context, w http.ResponseWriter, r *http.Request, t *table, rte *Route) (int, bool) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header()["Allow"] = []string{"GET, HEAD"}
		writeErrorTrace(w, ctx, http.StatusMethodNotAllowed, "an aggregate route answers GET and HEAD only")
		return http.StatusMethodNotAllowed, false
	}
	agg := rte.agg
	actx, stop := context.WithTimeout(ctx, agg.timeout)
	defer stop()
	actx, cancel := context.WithCancelCause(actx)
	defer cancel(nil)
	run := &aggregateRun{g: g, t: t, rte: rte, agg: agg, client: r, input: requestInput(r),
		res: make([]partResult, len(agg.parts)), cancel: cancel, failed: -1}
	var wg sync.WaitGroup
	for i := range agg.parts {
		run.res[i].done = make(chan struct{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			run.part(actx, i)
		}()
	}
	wg.Wait()

	route := routeTemplate(rte)
	var missing []string
	for i, p := range agg.parts {
		res := &run.res[i]
		if g.aggMet != nil {
			g.aggMet.Part(ctx, route, p.name, res.result)
		}
		if res.result != telemetry.PartOK {
			missing = append(missing, p.name)
		}
	}
	if ctx.Err() != nil {
		if g.aggMet != nil {
			g.aggMet.Request(ctx, route, telemetry.AggregateFailed)
		}
		return StatusClientClosedRequest, true // the client left: nothing to answer
	}
	if run.failed >= 0 {
		p, res := agg.parts[run.failed], &run.res[run.failed]
		g.log.Warn("aggregate failed", "route", rte.Name, "part", p.name, "reason", res.reason)
		if g.aggMet != nil {
			g.aggMet.Request(ctx, route, telemetry.AggregateFailed)
		}
		status := http.StatusBadGateway
		if res.timedOut {
			status = http.StatusGatewayTimeout // as for any upstream that did not answer in time
		}
		writeErrorTrace(w, ctx, status, fmt.Sprintf("required part %q failed: %s", p.name, res.reason))
		return status, false
	}

	var b bytes.Buffer
	b.WriteByte('{')
	for i, p := range agg.parts {
		if i > 0 {
			b.WriteByte(',')
		}
		// Part names are [a-z_][a-z0-9_]*: nothing to escape.
		b.WriteByte('"')
		b.WriteString(p.name)
		b.WriteString(`":`)
		if raw := run.res[i].raw; run.res[i].result == telemetry.PartOK {
			b.Write(raw)
		} else {
			b.WriteString("null")
		}
	}
	result := telemetry.AggregateComplete
	if len(missing) > 0 {
		result = telemetry.AggregatePartial
		slices.Sort(missing)
		b.WriteString(`,"_partial":["`)
		b.WriteString(strings.Join(missing, `","`))
		b.WriteString(`"]`)
		w.Header()[HeaderPartial] = []string{strings.Join(missing, ", ")}
	}
	b.WriteString("}\n")
	if g.aggMet != nil {
		g.aggMet.Request(ctx, route, result)
	}
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	h["Content-Length"] = []string{strconv.Itoa(b.Len())}
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(b.Bytes())
	}
	return http.StatusOK, false
}

// part runs part i once the parts it needs are done, or skips it when one
// of them failed.
func (run *aggregateRun) part(ctx context.Context, i int) {
	p, res := run.agg.parts[i], &run.res[i]
	defer close(res.done)
	for _, j := range p.needs {
		<-run.res[j].done // every part ends soon after ctx does
	}
	ctx, span := run.g.tr.startPart(ctx, run.rte.Name, p.name)
	defer func() {
		if span == nil {
			return
		}
		span.SetAttributes(attribute.String("meshgate.aggregate.result", res.result))
		if res.result == telemetry.PartFailed {
			span.SetStatus(codes.Error, res.reason)
		}
		span.End()
	}()
	for _, j := range p.needs {
		if run.res[j].result != telemetry.PartOK {
			res.result = telemetry.PartSkipped
			res.reason = fmt.Sprintf("skipped: the part %q it needs failed", run.agg.parts[j].name)
			if !p.optional {
				run.fail(i)
			}
			return
		}
	}
	raw, value, err := run.call(ctx, span, p)
	if err != nil {
		res.result, res.reason = telemetry.PartFailed, err.Error()
		res.timedOut = errors.As(err, new(partTimeout))
		if !p.optional {
			run.fail(i)
		}
		return
	}
	res.result, res.raw, res.value = telemetry.PartOK, raw, value
}

// fail records that required part i failed and cancels the others.
func (run *aggregateRun) fail(i int) {
	run.mu.Lock()
	if run.failed < 0 {
		run.failed = i
	}
	run.mu.Unlock()
	run.cancel(errRequiredFailed)
}

// call evaluates the part's path expression and calls the paths it gives.
// value is the answer decoded for later parts' expressions (nil when no
// part needs it).
func (run *aggregateRun) call(ctx context.Context, span trace.Span, p *aggPart) (raw []byte, value any, err error) {
	paths, list, err := run.paths(ctx, p)
	if err != nil {
		return nil, nil, err
	}
	if !list {
		if span != nil {
			span.SetAttributes(semconv.URLPath(paths[0]))
		}
		raw, err := run.get(ctx, span, p, paths[0])
		if err != nil {
			return nil, nil, err
		}
		if p.needed {
			if value, err = decodeJSON(raw); err != nil {
				return nil, nil, fmt.Errorf("GET %s answered invalid JSON", paths[0])
			}
		}
		return raw, value, nil
	}
	// One call per path, a few at a time, all within the part's timeout;
	// the value is the list of the answers in the order of the paths.
	raws := make([][]byte, len(paths))
	errs := make([]error, len(paths))
	pctx, stop := context.WithTimeout(ctx, p.timeout)
	defer stop()
	lctx, cancel := context.WithCancelCause(pctx)
	defer cancel(nil)
	var total atomic.Int64
	sem := make(chan struct{}, maxListConcurrency)
	var wg sync.WaitGroup
	for k, path := range paths {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-lctx.Done():
				errs[k] = run.cancelled(p, lctx)
				return
			}
			defer func() { <-sem }()
			raws[k], errs[k] = run.get(lctx, span, p, path)
			if errs[k] == nil && total.Add(int64(len(raws[k]))) > maxPartTotal {
				errs[k] = fmt.Errorf("the answers of the part's %d calls exceed %d MiB together", len(paths), maxPartTotal>>20)
			}
			if errs[k] != nil {
				cancel(errSiblingFailed) // one failed call fails the part
			}
		}()
	}
	wg.Wait()
	// The first failure in path order that is not the cancellation of the
	// others explains the part best.
	for _, e := range errs {
		if e != nil && !errors.Is(e, errSiblingFailed) {
			return nil, nil, e
		}
	}
	var b bytes.Buffer
	b.WriteByte('[')
	for k, r := range raws {
		if k > 0 {
			b.WriteByte(',')
		}
		b.Write(r)
	}
	b.WriteByte(']')
	raw = b.Bytes()
	if p.needed {
		if value, err = decodeJSON(raw); err != nil {
			return nil, nil, errors.New("invalid JSON")
		}
	}
	return raw, value, nil
}

// errSiblingFailed is the failure of a call of a list part that was
// cancelled because another call of the part failed.
var errSiblingFailed = errors.New("cancelled: another call of the part failed")

// cancelled explains why a call of part p ended before its answer: the
// end of partCtx, the context it was made in (a sibling call's failure,
// the aggregate's timeout, a required part's failure, the client leaving),
// or else its own timeout.
func (run *aggregateRun) cancelled(p *aggPart, partCtx context.Context) error {
	if partCtx.Err() != nil {
		return run.ended(partCtx)
	}
	return partTimeout{fmt.Sprintf("timed out after %s", p.timeout)}
}

// ended explains why the aggregate's context ended.
func (run *aggregateRun) ended(ctx context.Context) error {
	switch cause := context.Cause(ctx); {
	case errors.Is(cause, errSiblingFailed):
		return errSiblingFailed
	case errors.Is(cause, errRequiredFailed):
		return errors.New("cancelled: a required part failed")
	case errors.Is(cause, context.DeadlineExceeded):
		return partTimeout{fmt.Sprintf("the aggregate timed out after %s", run.agg.timeout)}
	default:
		return errors.New("cancelled: the client went away")
	}
}

// paths evaluates the part's expression on the request and the parts it
// needs. It must give one value: a path, or a list of at most
// maxPartPaths paths; list reports the latter.
func (run *aggregateRun) paths(ctx context.Context, p *aggPart) (paths []string, list bool, err error) {
	parts := make(map[string]any, len(p.needs))
	for _, j := range p.needs {
		parts[run.agg.parts[j].name] = run.res[j].value
	}
	ectx, cancel := context.WithTimeout(ctx, min(p.timeout, maxPathEval))
	defer cancel()
	iter := p.code.RunWithContext(ectx, map[string]any{"request": run.input, "parts": parts})
	v, ok := iter.Next()
	if !ok {
		return nil, false, errors.New("path expression gave no value, want a string or a list of strings")
	}
	if e, isErr := v.(error); isErr {
		if ectx.Err() != nil {
			return nil, false, fmt.Errorf("path expression did not finish within %s", min(p.timeout, maxPathEval))
		}
		return nil, false, fmt.Errorf("path expression failed: %v", e)
	}
	if _, more := iter.Next(); more {
		return nil, false, errors.New("path expression gave more than one value, want exactly one")
	}
	switch v := v.(type) {
	case string:
		if err := checkPartPath(v); err != nil {
			return nil, false, err
		}
		return []string{v}, false, nil
	case []any:
		if len(v) > maxPartPaths {
			return nil, false, fmt.Errorf("path expression gave %d paths, want at most %d", len(v), maxPartPaths)
		}
		paths = make([]string, len(v))
		for k, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, false, fmt.Errorf("path expression gave a list holding %s, want a list of strings", jqType(e))
			}
			if err := checkPartPath(s); err != nil {
				return nil, false, err
			}
			paths[k] = s
		}
		return paths, true, nil
	default:
		return nil, false, fmt.Errorf("path expression gave %s, want a string or a list of strings", jqType(v))
	}
}

// checkPartPath accepts an absolute path, in normal form, with an
// optional query. A path that normalisation would change (dot segments,
// repeated or encoded slashes) is refused rather than sent: a value from
// the request or an answer, spliced in without @uri, must not steer the
// call to another route than the one the expression names.
func checkPartPath(s string) error {
	if !strings.HasPrefix(s, "/") {
		return fmt.Errorf("path expression gave %q, want a path starting with /", s)
	}
	if strings.ContainsAny(s, "#\r\n") {
		return fmt.Errorf("path expression gave %q, want a path without # or line breaks", s)
	}
	path, _, _ := strings.Cut(s, "?")
	if n, err := policies.NormalizePath(path, policies.EscapedSlashesReject, true); err != nil || n != path {
		return fmt.Errorf("path expression gave %q, which is not a normalised path (dot segments, repeated or encoded slashes); escape values with @uri", s)
	}
	return nil
}

// jqType names the type of a jq value, with its article.
func jqType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case string:
		return "a string"
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	default:
		return "a number"
	}
}

// get makes one call of part p: a GET sub-request to path, routed and
// served as a client request would be, its answer captured.
func (run *aggregateRun) get(ctx context.Context, span trace.Span, p *aggPart, path string) (body []byte, err error) {
	cctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	cw := &captureWriter{header: make(http.Header)}
	status := 0
	defer func() {
		if span != nil {
			attrs := []attribute.KeyValue{semconv.URLPath(path)}
			if status > 0 {
				attrs = append(attrs, semconv.HTTPResponseStatusCode(status))
			}
			if err != nil {
				attrs = append(attrs, attribute.String("meshgate.reason", err.Error()))
			}
			event(span, "aggregate.call", attrs...)
		}
	}()
	sub, err := run.subRequest(cctx, path)
	if err != nil {
		return nil, err
	}
	t := run.t
	if err := t.normalizePath(sub); err != nil {
		return nil, fmt.Errorf("GET %s: %v", path, err)
	}
	rte := t.router.match(sub)
	switch {
	case rte == nil:
		status = http.StatusNotFound
		return nil, fmt.Errorf("GET %s answered 404: no route matches", path)
	case rte.agg != nil:
		return nil, fmt.Errorf("GET %s: aggregate routes cannot call aggregate routes (route %q)", path, rte.Name)
	}
	aborted := false
	func() {
		defer func() {
			// A response cut short (upstream failure mid-body, our buffer
			// full) unwinds a policy chain as a panic; anything else is a
			// bug that must not take the process down from this goroutine.
			if v := recover(); v != nil {
				aborted = true
				if v != http.ErrAbortHandler {
					run.g.log.Error("aggregate part panicked", "route", run.rte.Name, "part", p.name, "panic", v)
				}
			}
		}()
		aborted = run.g.serveRouted(cctx, cw, sub, t, rte, nil, &status)
	}()
	switch {
	case cctx.Err() != nil:
		return nil, run.cancelled(p, ctx)
	case cw.overflow:
		return nil, fmt.Errorf("GET %s answered more than 1 MiB", path)
	case aborted:
		return nil, fmt.Errorf("GET %s: the answer was cut short", path)
	case cw.code < 200 || cw.code > 299:
		return nil, fmt.Errorf("GET %s answered %d", path, cw.code)
	case !policies.IsJSON(cw.header.Get("Content-Type")):
		return nil, fmt.Errorf("GET %s answered %s, want JSON", path, contentTypeText(cw.header.Get("Content-Type")))
	case !json.Valid(cw.buf.Bytes()):
		return nil, fmt.Errorf("GET %s answered invalid JSON", path)
	}
	return bytes.TrimSpace(cw.buf.Bytes()), nil
}

// subHeaderDrop are client request fields a sub-request does not carry
// besides the hop-by-hop ones: it has no body, its answer is parsed as
// JSON (no content coding), and must be a whole 2xx answer, not a 304 to a
// condition or a 206 to a range meant for the aggregate.
var subHeaderDrop = []string{
	"Content-Length", "Content-Type", "Content-Encoding", "Expect", "Accept-Encoding",
	"If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since", "If-Range", "Range",
}

// subRequest builds the GET of a part to path: the client's header (less
// hop-by-hop fields and subHeaderDrop), host, peer address and TLS state,
// so that policies and X-Forwarded-* see the client.
func (run *aggregateRun) subRequest(ctx context.Context, path string) (*http.Request, error) {
	u, err := url.ParseRequestURI(path)
	if err != nil || u.Host != "" || u.Scheme != "" {
		return nil, fmt.Errorf("path expression gave %q, which is not a request path", path)
	}
	c := run.client
	h := cloneHeaderForUpstream(c.Header)
	for _, k := range subHeaderDrop {
		delete(h, k)
	}
	// The part is parsed as JSON whatever the client accepts.
	h["Accept"] = []string{"application/json"}
	sub := &http.Request{
		Method: http.MethodGet, URL: u, RequestURI: u.RequestURI(),
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: http.NoBody, Host: c.Host, RemoteAddr: c.RemoteAddr, TLS: c.TLS,
	}
	return sub.WithContext(ctx), nil
}

// requestInput is .request of the path expressions: method, the path and
// its segments in escaped (URL) form, the first value of each query
// parameter (decoded: escape it with @uri) and the header with lower-case
// names and values joined by ", ".
func requestInput(r *http.Request) map[string]any {
	// The escaped form, so that a segment spliced into a part's path stays
	// one segment: "7%3Fadmin=1" cannot become a query, nor "%2E%2E" a
	// step up.
	path := r.URL.EscapedPath()
	segs := make([]any, 0, 4)
	for s := range strings.SplitSeq(path, "/") {
		if s != "" {
			segs = append(segs, s)
		}
	}
	query := make(map[string]any)
	for k, vv := range r.URL.Query() {
		if len(vv) > 0 {
			query[k] = vv[0]
		}
	}
	headers := make(map[string]any, len(r.Header))
	for k, vv := range r.Header {
		headers[strings.ToLower(k)] = strings.Join(vv, ", ")
	}
	return map[string]any{"method": r.Method, "path": path, "segments": segs, "query": query, "headers": headers}
}

// decodeJSON decodes a JSON value for jq: integers that fit stay exact
// (an ID such as 9007199254740993 must not become a float), other numbers
// become float64.
func decodeJSON(raw []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	return fromNumbers(v), nil
}

func fromNumbers(v any) any {
	switch v := v.(type) {
	case json.Number:
		if i, err := strconv.Atoi(string(v)); err == nil {
			return i
		}
		f, _ := v.Float64()
		return f
	case []any:
		for i := range v {
			v[i] = fromNumbers(v[i])
		}
	case map[string]any:
		for k, e := range v {
			v[k] = fromNumbers(e)
		}
	}
	return v
}

func contentTypeText(ct string) string {
	if ct == "" {
		return "no Content-Type"
	}
	return ct
}

// captureWriter takes a sub-request's answer, up to maxPartBody bytes;
// a write beyond fails (the forwarding code then stops reading).
type captureWriter struct {
	header   http.Header
	code     int
	buf      bytes.Buffer
	overflow bool
}

// errPartTooLarge fails the write that would exceed maxPartBody.
var errPartTooLarge = errors.New("aggregate part answer too large")

func (c *captureWriter) Header() http.Header { return c.header }

func (c *captureWriter) WriteHeader(code int) {
	if c.code == 0 && code >= 200 {
		c.code = code
	}
}

func (c *captureWriter) Write(p []byte) (int, error) {
	if c.code == 0 {
		c.code = http.StatusOK
	}
	if c.buf.Len()+len(p) > maxPartBody {
		c.overflow = true
		return 0, errPartTooLarge
	}
	return c.buf.Write(p)
}

// Flush does nothing: the answer is used once whole. It lets streamed
// answers be copied here as to a client.
func (c *captureWriter) Flush() {}
