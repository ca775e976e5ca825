// Package httperr writes the error responses of meshgate's contract:
// a JSON body {"error": "...", "status": N, "trace_id": "..."} with the
// status, from the proxy and from the policy steps alike.
package httperr

import (
	"context"
	"net/http"
	"strconv"

	"go.opentelemetry.io/otel/trace"
)

// Write answers with the JSON error body, with the trace_id of the span
// in ctx (nil or no span: none) so that a client can quote it in a
// report. Headers already set on w (WWW-Authenticate, Retry-After) are
// sent too. The body is built without reflection.
func Write(w http.ResponseWriter, ctx context.Context, status int, msg string) {
	var traceID trace.TraceID
	if ctx != nil {
		if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
			traceID = sc.TraceID()
		}
	}
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	h["X-Content-Type-Options"] = []string{"nosniff"}
	h["Cache-Control"] = []string{"no-store"}
	b := make([]byte, 0, 64+len(msg))
	b = append(b, `{"error":`...)
	b = strconv.AppendQuote(b, msg)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(status), 10)
	if traceID.IsValid() {
		b = append(b, `,"trace_id":"`...)
		b = append(b, traceID.String()...)
		b = append(b, '"')
	}
	b = append(b, "}\n"...)
	h["Content-Length"] = []string{strconv.Itoa(len(b))}
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
