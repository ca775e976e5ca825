package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
)

var _ http.Handler = (*Gateway)(nil)

// copyBufPool holds the buffers response bodies are copied through.
var copyBufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// ServeHTTP routes r and forwards it to an instance of the route's service.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	t := g.table.Load()
	rte := t.router.match(r)
	if rte == nil {
		writeError(w, http.StatusNotFound, msgNoRoute)
		return
	}
	if r.ContentLength > t.maxBody {
		writeError(w, http.StatusRequestEntityTooLarge, msgBodyTooLarge)
		return
	}
	up := rte.upstream
	ep := up.pick(r)
	if ep == nil {
		w.Header()["Retry-After"] = []string{"1"}
		writeError(w, http.StatusServiceUnavailable, msgNoInstance)
		return
	}
	ep.state.inFlight.Add(1)
	ep.state.requests.Add(1)
	var status int
	if up.h1 != nil && up.cfg.Protocol != "h2c" && len(r.Trailer) == 0 && upgradeType(r.Header) == "" && !expectsContinue(r) {
		status = g.forwardH1(w, r, t, rte, ep)
	} else {
		status = g.forward(w, r, t, rte, ep)
	}
	ep.state.inFlight.Add(-1)
	switch {
	case status == StatusClientClosedRequest:
		g.log.Info("client closed request", "status", status, "route", rte.Name,
			"service", up.name, "instance", ep.inst.ID, "method", r.Method)
	case status >= 500:
		ep.state.failures.Add(1)
	}
}

// expectsContinue reports whether the client waits for 100 Continue
// before sending its body (RFC 9110 §10.1.1); net/http's transport relays it.
func expectsContinue(r *http.Request) bool {
	return r.ContentLength != 0 && headerHasToken(r.Header, "Expect", "100-continue")
}

// forwardH1 is the hot path: r goes to ep over meshgate's own pooled
// HTTP/1.1 client, and the response is streamed back.
func (g *Gateway) forwardH1(w http.ResponseWriter, r *http.Request, t *table, rte *Route, ep *endpoint) int {
	ctx := r.Context()
	path := r.URL.EscapedPath()
	if path == "" {
		path = "/"
	}
	if rte.rewrite {
		path = rte.rewritePath(path)
	}
	req := h1Request{in: r, path: path, query: r.URL.RawQuery, trusted: t.trusted}
	switch {
	case r.ContentLength > 0:
		req.body, req.length = r.Body, r.ContentLength
		if r.ContentLength <= replayLimit {
			// Small bodies are read first so that a request meeting a stale
			// pooled connection can be sent again.
			bp := replayPool.Get().(*[]byte)
			defer replayPool.Put(bp)
			buf := (*bp)[:r.ContentLength]
			if _, err := io.ReadFull(r.Body, buf); err != nil {
				return g.clientBodyFailed(w, ctx, rte, err)
			}
			req.replay = buf
		}
	case r.ContentLength < 0 && r.Body != nil && r.Body != http.NoBody:
		req.body, req.length = http.MaxBytesReader(nil, r.Body, t.maxBody), -1
	}

	up := rte.upstream
	dst := w.Header()
	c, res, err := up.h1.roundTrip(ctx, &ep.state.pool, ep.inst.HostPort, &req, dst)
	if err != nil {
		clear(dst)
		var be *requestBodyError
		if errors.As(err, &be) {
			return g.clientBodyFailed(w, ctx, rte, be.err)
		}
		return g.upstreamFailed(w, ctx, rte, ep, err)
	}
	w.WriteHeader(res.status)
	if res.body == nil {
		up.h1.finish(&ep.state.pool, c, res, true)
		return res.status
	}
	flush := res.length < 0 || strings.HasPrefix(dst.Get("Content-Type"), "text/event-stream")
	err = copyResponse(w, res.body, flush)
	if err == nil && res.chunked {
		err = readTrailer(c.br, dst)
	}
	up.h1.finish(&ep.state.pool, c, res, err == nil)
	if err != nil {
		return g.responseCopyFailed(ctx, rte, ep, err)
	}
	return res.status
}

// clientBodyFailed answers a request whose body could not be read from the
// client: too large (413), the client gone (499), or malformed (400).
func (g *Gateway) clientBodyFailed(w http.ResponseWriter, ctx context.Context, rte *Route, err error) int {
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		writeError(w, http.StatusRequestEntityTooLarge, msgBodyTooLarge)
		return http.StatusRequestEntityTooLarge
	case ctx.Err() != nil:
		return StatusClientClosedRequest
	default:
		g.log.Debug("reading the request body failed", "route", rte.Name, "error", err)
		writeError(w, http.StatusBadRequest, "could not read the request body")
		return http.StatusBadRequest
	}
}

// upstreamFailed maps a failed round trip to its status and answers with
// it, unless the client went away (499, logged only).
func (g *Gateway) upstreamFailed(w http.ResponseWriter, ctx context.Context, rte *Route, ep *endpoint, err error) int {
	status, msg := classify(ctx, err)
	if status == StatusClientClosedRequest {
		return status
	}
	g.log.Warn("upstream request failed", "route", rte.Name, "service", rte.upstream.name,
		"instance", ep.inst.ID, "status", status, "error", err)
	writeError(w, status, msg)
	return status
}

// responseCopyFailed handles a response that broke after its header was
// sent: the client's response is aborted so it sees a truncated body
// rather than a complete-looking one.
func (g *Gateway) responseCopyFailed(ctx context.Context, rte *Route, ep *endpoint, err error) int {
	if ctx.Err() != nil {
		return StatusClientClosedRequest
	}
	g.log.Warn("copying upstream response failed", "route", rte.Name, "service", rte.upstream.name,
		"instance", ep.inst.ID, "error", err)
	panic(http.ErrAbortHandler)
}

// forward sends r to ep with net/http's transport (upgrades, 100-continue,
// h2c, HTTP/2 clients) and streams the answer back, returning the status
// the client got (499 when it went away first).
func (g *Gateway) forward(w http.ResponseWriter, r *http.Request, t *table, rte *Route, ep *endpoint) int {
	ctx := r.Context()
	out := new(http.Request)
	*out = *r // shallow: the header map is rebuilt below, the body is shared
	out = out.WithContext(ctx)
	u := *r.URL
	u.Scheme = "http"
	u.Host = ep.inst.HostPort
	if rte.rewrite {
		u.Path = rte.rewritePath(u.Path)
		if u.RawPath != "" {
			u.RawPath = rte.rewritePath(u.RawPath)
		}
	}
	out.URL = &u
	out.RequestURI = ""
	out.Close = false

	reqUpgrade := upgradeType(r.Header)
	out.Header = cloneHeaderForUpstream(r.Header)
	if reqUpgrade != "" {
		out.Header["Connection"] = []string{"Upgrade"}
		out.Header["Upgrade"] = []string{reqUpgrade}
	}
	if headerHasToken(r.Header, "Te", "trailers") {
		// gRPC needs "TE: trailers" end to end (RFC 9110 §10.1.4).
		out.Header["Te"] = []string{"trailers"}
	}
	forwardedFor(out.Header, r.RemoteAddr, r.Host, r.TLS != nil, t.trusted)
	if _, ok := out.Header["User-Agent"]; !ok {
		// Keep Go's transport from adding its own User-Agent.
		out.Header["User-Agent"] = nil
	}
	switch {
	case r.ContentLength == 0:
		out.Body = nil // a GET must not look like it has a body to the transport
	case r.ContentLength < 0 && r.Body != nil && r.Body != http.NoBody:
		// Known lengths were checked above and the server enforces them;
		// only a chunked body needs counting.
		out.Body = http.MaxBytesReader(nil, r.Body, t.maxBody)
	}

	res, err := rte.upstream.transport.RoundTrip(out)
	if err != nil {
		return g.upstreamFailed(w, ctx, rte, ep, err)
	}

	if res.StatusCode == http.StatusSwitchingProtocols {
		return g.serveUpgrade(w, r, res, reqUpgrade)
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

	err = copyResponse(w, res.Body, shouldFlush(res))
	res.Body.Close()
	if err != nil {
		return g.responseCopyFailed(ctx, rte, ep, err)
	}
	if len(res.Trailer) > 0 {
		for k, vv := range res.Trailer {
			if _, ok := dst[k]; !ok || announced == 0 {
				k = http.TrailerPrefix + k
			}
			dst[k] = vv
		}
	}
	return res.StatusCode
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
// upstream is returned; so is a write error to the client.
func copyResponse(w http.ResponseWriter, body io.Reader, flush bool) error {
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
				return werr
			}
			if flush {
				if err := rc.Flush(); err != nil {
					return err
				}
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}
