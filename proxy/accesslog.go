package proxy

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// requestInfo collects what the access log says of a request beyond its
// status: the instances tried and the bytes sent.
type requestInfo struct {
	instances []string
	bytes     *int64
}

// attempt records an attempt on ep; i may be nil (access log off).
func (i *requestInfo) attempt(ep *endpoint) {
	if i != nil {
		i.instances = append(i.instances, ep.inst.ID)
	}
}

// countingWriter counts the body bytes sent to the client. Unwrap lets
// http.ResponseController reach the server's writer (flush, hijack, full
// duplex).
type countingWriter struct {
	http.ResponseWriter
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}

func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// logAccess writes the request's access log line: one JSON object (with
// a JSON handler) with the trace and span IDs, the route, the service, the
// instances tried, the attempts, the status, the bytes sent and the
// duration.
func (g *Gateway) logAccess(ctx context.Context, r *http.Request, rte *Route, info *requestInfo, status int, start time.Time) {
	attrs := make([]slog.Attr, 0, 14)
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		attrs = append(attrs, slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	attrs = append(attrs,
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.String("host", r.Host),
		slog.String("remote", remoteIP(r.RemoteAddr)),
		slog.String("proto", r.Proto),
		slog.Int("status", status),
		slog.Int64("bytes", *info.bytes),
		slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000),
	)
	if rte != nil {
		attrs = append(attrs, slog.String("route", rte.Name), slog.String("service", rte.upstream.name))
	}
	if n := len(info.instances); n > 0 {
		attrs = append(attrs, slog.String("instance", info.instances[n-1]), slog.Int("attempts", n))
		if n > 1 {
			attrs = append(attrs, slog.String("instances", strings.Join(info.instances, ",")))
		}
	}
	g.access.LogAttrs(ctx, slog.LevelInfo, "request", attrs...)
}
