package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// This file is meshgate's HTTP/1.1 client for upstream requests: the hot
// path of every proxied request without a body or with a body of known
// length up to replayLimit. Protocol upgrades, "Expect: 100-continue",
// h2c, and streamed bodies (chunked, or larger than replayLimit) use
// net/http's Transport, which writes the body while it reads the response
// (full duplex) instead of writing all of it first.
//
// net/http's Transport runs two goroutines per connection and hands each
// request and response across channels, with a context, timers and a
// parsed header map per request: about 45 allocations and several
// goroutine switches per round trip. Here a request is written straight
// from the client's header (hop-by-hop fields skipped, X-Forwarded-* set)
// onto a pooled connection and the response head is parsed once into the
// client's response header: a handful of allocations, no extra goroutines.

// errStaleConn marks a failure on a reused connection before any response
// byte arrived: the upstream closed it while it sat idle, or just as the
// request reached it. A request that is safe to send again is retried
// once on a fresh connection; see canResend.
var errStaleConn = errors.New("reused upstream connection was closed by the peer")

// errMalformedResponse is returned for a response head that is not
// HTTP/1.x as RFC 9112 defines it.
var errMalformedResponse = errors.New("malformed HTTP response from upstream")

// longAgo is a deadline in the past, to interrupt blocked I/O at once.
var longAgo = time.Unix(1, 0)

// maxResponseHeadBytes bounds the status line and header of a response.
const maxResponseHeadBytes = 1 << 20

// replayLimit is the largest request body this client sends: it is read
// whole before the request is written, so that the request can be sent
// again after a stale connection. Larger bodies go through net/http's
// Transport.
const replayLimit = 32 << 10

// maxInterimResponses bounds the 1xx responses skipped before the final
// one, as net/http's Transport does.
const maxInterimResponses = 5

// upConn is one pooled connection to an instance.
type upConn struct {
	nc     net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	idleAt time.Time
	reused bool
	stop   func() bool // ends the watch for the client going away
	probe  idleProbe
}

// connPool keeps the idle connections to one instance, most recently used
// first. Its mutex is per instance and held only to push or pop.
type connPool struct {
	mu     sync.Mutex
	idle   []*upConn
	closed bool
}

// get returns an idle connection younger than idleTimeout, or nil.
//
// A connection is checked before it is handed out: one the upstream closed
// while it sat idle, or sent bytes on (many servers answer an idle
// connection with "408 Request Timeout" and close it), is closed and the
// next one tried. Those bytes would otherwise be read as the response to
// the next request.
func (p *connPool) get(now time.Time, idleTimeout time.Duration) *upConn {
	p.mu.Lock()
	for n := len(p.idle); n > 0; n = len(p.idle) {
		c := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		if (idleTimeout > 0 && now.Sub(c.idleAt) > idleTimeout) || !c.probe.clean() {
			c.close()
			p.mu.Lock()
			continue
		}
		c.reused = true
		return c
	}
	p.mu.Unlock()
	return nil
}

// put returns c to the pool, or closes it when the pool is full or closed.
func (p *connPool) put(c *upConn, now time.Time, maxIdle int) {
	c.idleAt = now
	p.mu.Lock()
	if p.closed || len(p.idle) >= maxIdle {
		p.mu.Unlock()
		c.close()
		return
	}
	p.idle = append(p.idle, c)
	p.mu.Unlock()
}

// prune closes the idle connections older than idleTimeout.
func (p *connPool) prune(now time.Time, idleTimeout time.Duration) {
	if idleTimeout <= 0 {
		return
	}
	var stale []*upConn
	p.mu.Lock()
	kept := p.idle[:0]
	for _, c := range p.idle {
		if now.Sub(c.idleAt) > idleTimeout {
			stale = append(stale, c)
		} else {
			kept = append(kept, c)
		}
	}
	clear(p.idle[len(kept):])
	p.idle = kept
	p.mu.Unlock()
	for _, c := range stale {
		c.close()
	}
}

// closeIdle closes every idle connection; with final, the pool refuses
// connections from then on (its instance is gone).
func (p *connPool) closeIdle(final bool) {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	if final {
		p.closed = true
	}
	p.mu.Unlock()
	for _, c := range idle {
		c.close()
	}
}

// bufPools recycle the connection buffers of closed connections.
var (
	readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 16<<10) }}
	writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 16<<10) }}
	replayPool = sync.Pool{New: func() any { b := make([]byte, 0, replayLimit); return &b }}
)

func (c *upConn) close() {
	c.nc.Close()
	if c.br != nil {
		c.br.Reset(nil)
		readerPool.Put(c.br)
		c.br = nil
	}
	if c.bw != nil {
		c.bw.Reset(nil)
		writerPool.Put(c.bw)
		c.bw = nil
	}
}

// h1Settings are a service's client settings, from its config.
type h1Settings struct {
	dialer         *net.Dialer
	responseHeader time.Duration
	idleConn       time.Duration
	maxIdle        int
}

// h1Request is what the gateway sends upstream, described without building
// an *http.Request.
type h1Request struct {
	in      *http.Request // the client's request: method and header
	path    string        // escaped path to send
	query   string
	trusted int
	body    []byte // the whole body, read beforehand; nil for none
	resend  bool   // the request may be sent a second time (canResend)
	// deadline, when set, bounds the exchange up to the response head
	// (the route's timeout); the response body is not bound by it.
	deadline time.Time
	// trace holds the trace context headers of the attempt's client span
	// (traceparent, tracestate, baggage, b3...); they replace the client's.
	trace http.Header
}

// h1Response is the parsed head of an upstream response. Header fields were
// written into the client's response header already.
type h1Response struct {
	status    int
	keepAlive bool
	body      io.Reader // nil when there is none
	chunked   bool
	length    int64 // -1 unknown (read to EOF)
	sized     lengthReader
}

// lengthReader reads a body of known length. An upstream that closes the
// connection before sending all of it is reported as io.ErrUnexpectedEOF,
// where io.LimitedReader would pass the io.EOF on and a truncated body
// would look complete.
type lengthReader struct {
	r io.Reader
	n int64 // bytes still to come
}

func (l *lengthReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	if err == io.EOF && l.n > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// roundTrip sends req to the instance behind pool at hostPort and reads the
// response head into dst. On success the caller must call finish.
func (s *h1Settings) roundTrip(ctx context.Context, pool *connPool, hostPort string, req *h1Request, dst http.Header) (*upConn, *h1Response, error) {
	for attempt := 0; ; attempt++ {
		c, err := s.conn(ctx, pool, hostPort, attempt > 0)
		if err != nil {
			return nil, nil, err
		}
		res, err := s.exchange(ctx, c, req, dst)
		if err == nil {
			return c, res, nil
		}
		c.close()
		// The upstream closed a reused connection before answering. It may
		// have closed it while idle, and never seen the request; or it may
		// have received and processed the request before failing: only a
		// request that is safe to repeat is sent again, once, on a new
		// connection (RFC 9110 §9.2.2).
		if errors.Is(err, errStaleConn) && attempt == 0 && req.resend && ctx.Err() == nil {
			continue
		}
		if errors.Is(err, errStaleConn) {
			err = fmt.Errorf("%w: %w", errStaleConn, io.ErrUnexpectedEOF)
		}
		return nil, nil, err
	}
}

// conn returns a pooled connection, or dials one.
func (s *h1Settings) conn(ctx context.Context, pool *connPool, hostPort string, fresh bool) (*upConn, error) {
	if !fresh {
		if c := pool.get(time.Now(), s.idleConn); c != nil {
			return c, nil
		}
	}
	nc, err := s.dialer.DialContext(ctx, "tcp", hostPort)
	if err != nil {
		return nil, err
	}
	br := readerPool.Get().(*bufio.Reader)
	br.Reset(nc)
	bw := writerPool.Get().(*bufio.Writer)
	bw.Reset(nc)
	c := &upConn{nc: nc, br: br, bw: bw}
	c.probe.init(nc)
	return c, nil
}

// exchange writes the request and reads the response head. On success the
// connection stays watched for the client going away until finish.
func (s *h1Settings) exchange(ctx context.Context, c *upConn, req *h1Request, dst http.Header) (*h1Response, error) {
	// The client going away interrupts whatever I/O is blocked, through the
	// response body copy too.
	c.stop = context.AfterFunc(ctx, func() { c.nc.SetDeadline(longAgo) })
	res, err := s.exchangeWatched(ctx, c, req, dst)
	if err != nil {
		c.stop()
		c.stop = nil
	}
	return res, err
}

func (s *h1Settings) exchangeWatched(ctx context.Context, c *upConn, req *h1Request, dst http.Header) (*h1Response, error) {
	// The response header timeout covers writing the request too: an
	// upstream that stops reading cannot hold the request forever.
	headDeadline := req.deadline
	if s.responseHeader > 0 {
		if d := time.Now().Add(s.responseHeader); headDeadline.IsZero() || d.Before(headDeadline) {
			headDeadline = d
		}
	}
	if !headDeadline.IsZero() {
		c.nc.SetDeadline(headDeadline)
	}
	// Setting a deadline may have overwritten the one the cancellation hook
	// set just before; the hook runs only after ctx is done, so checking
	// here closes the gap.
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	writeRequest(c.bw, req)
	werr := c.bw.Flush()
	if werr != nil && c.reused && ctx.Err() == nil && isConnGone(werr) {
		return nil, errStaleConn
	}
	// Even when writing failed the upstream may have answered (an early
	// 413, say): try to read a response before giving up.
	res, err := readResponseHead(c.br, req.in.Method, dst)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if c.reused && errors.Is(err, errNoResponseBytes) {
			return nil, errStaleConn
		}
		if werr != nil {
			return nil, werr
		}
		return nil, err
	}
	if werr != nil {
		res.keepAlive = false
	}
	if !headDeadline.IsZero() {
		c.nc.SetDeadline(time.Time{})
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	return res, nil
}

func isConnGone(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)
}

// finish ends the exchange: the connection goes back to the pool when the
// response was read to its end and may be reused, and is closed otherwise.
func (s *h1Settings) finish(pool *connPool, c *upConn, res *h1Response, complete bool) {
	// A cancellation hook that already ran may still be setting a deadline:
	// such a connection is not reused.
	if !c.stop() {
		complete = false
	}
	c.stop = nil
	// Bytes already read past the end of the response belong to no request:
	// reused, the connection would serve them as the next response.
	if complete && res.keepAlive && c.br.Buffered() == 0 {
		pool.put(c, time.Now(), s.maxIdle)
		return
	}
	c.close()
}

// writeRequest writes the request head and body (RFC 9112 §3 and §6) into
// bw; errors surface when bw is flushed.
func writeRequest(bw *bufio.Writer, req *h1Request) {
	in := req.in
	bw.WriteString(in.Method)
	bw.WriteByte(' ')
	bw.WriteString(req.path)
	if req.query != "" {
		bw.WriteByte('?')
		bw.WriteString(req.query)
	}
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(in.Host)
	bw.WriteString("\r\n")

	h := in.Header
	connListed := len(h["Connection"]) > 0
	for k, vv := range h {
		if isHopHeader(k) || k == "Host" || k == "Content-Length" {
			continue
		}
		if req.trusted == 0 && isForwardedHeader(k) {
			continue
		}
		if connListed && headerHasToken(h, "Connection", k) {
			continue
		}
		if req.trusted > 0 && k == "X-Forwarded-For" {
			continue // written below with the peer appended
		}
		if _, ok := req.trace[k]; ok {
			continue // replaced by the attempt's trace context below
		}
		for _, v := range vv {
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	for k, vv := range req.trace {
		for _, v := range vv {
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	if headerHasToken(h, "Te", "trailers") {
		bw.WriteString("Te: trailers\r\n")
	}
	writeForwarded(bw, forwardedOf(in, req.trusted))

	if req.body == nil {
		if methodExpectsBody(in.Method) {
			bw.WriteString("Content-Length: 0\r\n")
		}
		bw.WriteString("\r\n")
		return
	}
	bw.WriteString("Content-Length: ")
	var nb [20]byte
	bw.Write(strconv.AppendInt(nb[:0], int64(len(req.body)), 10))
	bw.WriteString("\r\n\r\n")
	bw.Write(req.body)
}

// canResend reports whether r may be sent upstream a second time after a
// connection failed under it, when the upstream may already have acted on
// it: idempotent methods (RFC 9110 §9.2.2) and requests the client marked
// with an idempotency key, as net/http's Transport decides.
func canResend(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	_, ok := r.Header["Idempotency-Key"]
	if !ok {
		_, ok = r.Header["X-Idempotency-Key"]
	}
	return ok
}

func methodExpectsBody(m string) bool {
	return m == http.MethodPost || m == http.MethodPut || m == http.MethodPatch
}

// isForwardedHeader reports whether k is one of the fields that describe
// the client to the upstream, which a client could forge: with no trusted
// proxy in front they are dropped (the X-Forwarded-* ones replaced).
func isForwardedHeader(k string) bool {
	return k == "X-Forwarded-For" || k == "X-Forwarded-Proto" || k == "X-Forwarded-Host" || k == "Forwarded"
}

// writeForwarded writes the X-Forwarded-* headers that f decides onto
// the wire.
func writeForwarded(bw *bufio.Writer, f forwarded) {
	bw.WriteString("X-Forwarded-For: ")
	for _, v := range f.prior {
		bw.WriteString(v)
		bw.WriteString(", ")
	}
	bw.WriteString(f.ip)
	bw.WriteString("\r\n")
	if f.proto != "" {
		bw.WriteString("X-Forwarded-Proto: ")
		bw.WriteString(f.proto)
		bw.WriteString("\r\n")
	}
	if f.host != "" {
		bw.WriteString("X-Forwarded-Host: ")
		bw.WriteString(f.host)
		bw.WriteString("\r\n")
	}
}

// errNoResponseBytes: the connection ended before the first response byte.
// It wraps io.EOF, so that the retry policy treats it as the connection
// failure it is.
var errNoResponseBytes = fmt.Errorf("upstream closed the connection without answering: %w", io.EOF)

// readResponseHead reads the status line and header of a response,
// skipping 1xx interim responses, and writes the end-to-end header fields
// into dst. The header block becomes one string that every key and value
// slices, and all values share one backing slice: three allocations for
// a typical response head.
func readResponseHead(br *bufio.Reader, method string, dst http.Header) (*h1Response, error) {
	first := true
	for interim := 0; ; interim++ {
		line, err := readLine(br)
		if err != nil {
			if first && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)) {
				return nil, errNoResponseBytes
			}
			return nil, err
		}
		first = false
		major, minor, status, ok := parseStatusLine(line)
		if !ok {
			return nil, fmt.Errorf("%w: status line %q", errMalformedResponse, truncate(line))
		}
		if status >= 100 && status < 200 && status != http.StatusSwitchingProtocols {
			// 100 Continue and 103 Early Hints: skip their header and read on.
			if interim == maxInterimResponses {
				return nil, fmt.Errorf("%w: too many 1xx responses", errMalformedResponse)
			}
			if err := skipHeader(br); err != nil {
				return nil, err
			}
			continue
		}
		if status == http.StatusSwitchingProtocols {
			return nil, fmt.Errorf("%w: unexpected 101 to a request without Upgrade", errMalformedResponse)
		}
		res := &h1Response{status: status, length: -1, keepAlive: major == 1 && minor >= 1}
		if err := readHeader(br, dst, res); err != nil {
			return nil, err
		}
		noBody := method == http.MethodHead || status == http.StatusNoContent || status == http.StatusNotModified
		switch {
		case noBody:
			res.length = 0
			if !res.chunked {
				// A HEAD answer keeps its Content-Length for the client.
				break
			}
			res.chunked = false
		case res.chunked:
			res.body = httputil.NewChunkedReader(br)
			delete(dst, "Content-Length")
		case res.length >= 0:
			res.sized = lengthReader{r: br, n: res.length}
			res.body = &res.sized
		default:
			res.body = br // read until the upstream closes
			res.keepAlive = false
		}
		if noBody {
			res.body = nil
		}
		return res, nil
	}
}

func truncate(b []byte) string {
	if len(b) > 64 {
		b = b[:64]
	}
	return string(b)
}

// readLine reads one CRLF- or LF-terminated line without its terminator.
// The slice is valid until the next read from br.
func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		line, err = readLongLine(br, line)
	}
	if err != nil {
		if err == io.EOF && len(line) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

// readLongLine reads the rest of a line longer than br's buffer, whose
// start is first, into a new slice: a line may be as long as the whole
// response head (a large cookie, say).
func readLongLine(br *bufio.Reader, first []byte) ([]byte, error) {
	line := append([]byte(nil), first...)
	for {
		frag, err := br.ReadSlice('\n')
		if len(line)+len(frag) > maxResponseHeadBytes {
			return nil, fmt.Errorf("%w: header too large", errMalformedResponse)
		}
		line = append(line, frag...)
		if err != bufio.ErrBufferFull {
			return line, err
		}
	}
}

// parseStatusLine parses "HTTP/1.1 200 OK".
func parseStatusLine(line []byte) (major, minor, status int, ok bool) {
	if len(line) < 12 || string(line[:5]) != "HTTP/" || line[6] != '.' || line[8] != ' ' || (len(line) > 12 && line[12] != ' ') {
		return 0, 0, 0, false
	}
	if line[5] < '0' || line[5] > '9' || line[7] < '0' || line[7] > '9' {
		return 0, 0, 0, false
	}
	major, minor = int(line[5]-'0'), int(line[7]-'0')
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return 0, 0, 0, false
		}
		status = status*10 + int(c-'0')
	}
	return major, minor, status, major == 1 && status >= 100
}

// skipHeader reads past the header of an interim (1xx) response.
func skipHeader(br *bufio.Reader) error { return readFieldLines(br, "header", nil) }

// readFieldLines reads field lines up to the empty line that ends a header
// or trailer section, at most maxResponseHeadBytes in all, passing each to
// each when it is set.
func readFieldLines(br *bufio.Reader, section string, each func(line []byte) error) error {
	total := 0
	for {
		line, err := readLine(br)
		if err != nil {
			return err
		}
		if len(line) == 0 {
			return nil
		}
		if total += len(line); total > maxResponseHeadBytes {
			return fmt.Errorf("%w: %s too large", errMalformedResponse, section)
		}
		if each != nil {
			if err := each(line); err != nil {
				return err
			}
		}
	}
}

// headerField is a parsed field before it is copied into the destination.
type headerField struct{ kStart, kEnd, vStart, vEnd int }

var fieldsPool = sync.Pool{New: func() any { s := make([]headerField, 0, 32); return &s }}
var headBufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// readHeader reads header fields up to the empty line, stores end-to-end
// fields in dst and records framing (Content-Length, Transfer-Encoding,
// Connection) in res.
func readHeader(br *bufio.Reader, dst http.Header, res *h1Response) error {
	bp := headBufPool.Get().(*[]byte)
	fp := fieldsPool.Get().(*[]headerField)
	defer func() {
		*bp = (*bp)[:0]
		headBufPool.Put(bp)
		*fp = (*fp)[:0]
		fieldsPool.Put(fp)
	}()
	buf, fields := *bp, *fp
	for {
		line, err := readLine(br)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return fmt.Errorf("%w: obsolete line folding", errMalformedResponse)
		}
		colon := -1
		for i, c := range line {
			if c == ':' {
				colon = i
				break
			}
			if !isTokenByte(c) {
				return fmt.Errorf("%w: invalid header field name %q", errMalformedResponse, truncate(line))
			}
		}
		if colon <= 0 {
			return fmt.Errorf("%w: header line without a colon", errMalformedResponse)
		}
		v := line[colon+1:]
		for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
			v = v[1:]
		}
		for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
			v = v[:len(v)-1]
		}
		for _, c := range v {
			if c == 0 || c == '\r' || c == '\n' {
				return fmt.Errorf("%w: invalid byte in header value", errMalformedResponse)
			}
		}
		if len(buf)+len(line) > maxResponseHeadBytes {
			return fmt.Errorf("%w: header too large", errMalformedResponse)
		}
		f := headerField{kStart: len(buf)}
		buf = append(buf, line[:colon]...)
		canonicalizeInPlace(buf[f.kStart:])
		f.kEnd = len(buf)
		f.vStart = len(buf)
		buf = append(buf, v...)
		f.vEnd = len(buf)
		fields = append(fields, f)
	}
	*bp, *fp = buf, fields
	if len(fields) == 0 {
		return nil
	}
	block := string(buf) // the one allocation every key and value shares
	values := make([]string, len(fields))
	var connection []string
	sawClose, sawKeepAlive := false, false
	for i, f := range fields {
		k, v := block[f.kStart:f.kEnd], block[f.vStart:f.vEnd]
		switch k {
		case "Content-Length":
			n, ok := parseContentLength(v)
			if !ok || (res.length >= 0 && res.length != n) {
				return fmt.Errorf("%w: invalid Content-Length %q", errMalformedResponse, v)
			}
			if res.length >= 0 {
				continue // a repeated, equal field: the client gets one
			}
			res.length = n
			if len(v) > 1 && v[0] == '0' {
				// The client gets the value as parsed: "007" becomes "7".
				v = strconv.FormatInt(n, 10)
			}
		case "Transfer-Encoding":
			// RFC 9112 §6.1: chunked must be the final coding; meshgate
			// passes no other coding through.
			if !equalFoldTrim(v, "chunked") {
				return fmt.Errorf("%w: unsupported Transfer-Encoding %q", errMalformedResponse, v)
			}
			res.chunked = true
			continue
		case "Connection":
			connection = append(connection, v)
			sawClose = sawClose || headerValueHasToken(v, "close")
			sawKeepAlive = sawKeepAlive || headerValueHasToken(v, "keep-alive")
			continue
		}
		if isHopHeader(k) {
			continue
		}
		values[i] = v
		if prev := dst[k]; len(prev) > 0 {
			dst[k] = append(prev, v)
		} else {
			dst[k] = values[i : i+1 : i+1]
		}
	}
	// "close" wins wherever it appears (RFC 9112 §9.6); "keep-alive" only
	// matters to HTTP/1.0.
	if sawClose {
		res.keepAlive = false
	} else if sawKeepAlive {
		res.keepAlive = true
	}
	if res.chunked {
		// A message with both is framed by Transfer-Encoding (RFC 9112
		// §6.3) and must not be reused: it may be a smuggling attempt.
		if res.length >= 0 {
			res.keepAlive = false
		}
		res.length = -1
	}
	for _, c := range connection {
		for len(c) > 0 {
			var name string
			name, c, _ = cutComma(c)
			if name != "" {
				delete(dst, textproto.CanonicalMIMEHeaderKey(name))
			}
		}
	}
	return nil
}

// parseContentLength parses a Content-Length value: digits only (RFC 9110
// §8.6), so that a message framed by "+5" or "0x5" is refused, not guessed
// at (strconv.ParseInt accepts a sign).
func parseContentLength(v string) (int64, bool) {
	if v == "" || len(v) > 18 { // 18 digits cannot overflow an int64
		return 0, false
	}
	var n int64
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// readTrailer reads the trailer section after the last chunk into dst,
// as trailers of the client response. It is bounded like a response head.
func readTrailer(br *bufio.Reader, dst http.Header) error {
	return readFieldLines(br, "trailer", func(line []byte) error {
		k, v, ok := cutColon(string(line))
		if !ok {
			return fmt.Errorf("%w: trailer line without a colon", errMalformedResponse)
		}
		k = textproto.CanonicalMIMEHeaderKey(k)
		if !isHopHeader(k) && k != "Content-Length" {
			dst[http.TrailerPrefix+k] = append(dst[http.TrailerPrefix+k], v)
		}
		return nil
	})
}

func cutColon(s string) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == ':' {
			return s[:i], textproto.TrimString(s[i+1:]), i > 0
		}
	}
	return "", "", false
}

func cutComma(s string) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == ',' {
			return textproto.TrimString(s[:i]), s[i+1:], true
		}
	}
	return textproto.TrimString(s), "", false
}

func headerValueHasToken(v, token string) bool {
	for len(v) > 0 {
		var t string
		t, v, _ = cutComma(v)
		if equalFoldTrim(t, token) {
			return true
		}
	}
	return false
}

func equalFoldTrim(s, t string) bool {
	s = textproto.TrimString(s)
	if len(s) != len(t) {
		return false
	}
	for i := 0; i < len(s); i++ {
		a, b := s[i], t[i]
		if 'A' <= a && a <= 'Z' {
			a += 'a' - 'A'
		}
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		if a != b {
			return false
		}
	}
	return true
}

// canonicalizeInPlace turns a valid field name into its canonical MIME
// form ("content-type" → "Content-Type"), as textproto does.
func canonicalizeInPlace(k []byte) {
	upper := true
	for i, c := range k {
		if upper && 'a' <= c && c <= 'z' {
			k[i] = c - ('a' - 'A')
		} else if !upper && 'A' <= c && c <= 'Z' {
			k[i] = c + ('a' - 'A')
		}
		upper = c == '-'
	}
}

// isTokenByte reports whether c may appear in a field name (RFC 9110 §5.6.2).
func isTokenByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}
