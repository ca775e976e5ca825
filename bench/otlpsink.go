package main

import (
	"context"
	"io"
	"log"
	"net/http"
	"sync/atomic"
	"time"
)

// otlpSinkLinger is how long the sink keeps serving after it is told to
// stop. The harness stops every child at once, and meshgate_traced flushes
// its last spans while shutting down; without the delay that flush would
// meet a closed sink and log a failed export.
const otlpSinkLinger = time.Second

// lingerAfter returns a context that is done d after ctx is.
func lingerAfter(ctx context.Context, d time.Duration) context.Context {
	lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	go func() {
		<-ctx.Done()
		time.Sleep(d)
		cancel()
	}()
	return lctx
}

// otlpSink is the OTLP/HTTP trace receiver meshgate_traced exports to, run
// by the re-executed harness with -serve-otlp-sink: it accepts POST
// /v1/traces, reads and discards the body and answers 200 with an empty
// protobuf body, which is a valid ExportTraceServiceResponse (no partial
// success). GET / answers 200 for the readiness check. It counts what it
// received and logs the totals when it stops.
type otlpSink struct {
	exports atomic.Int64
	bytes   atomic.Int64
}

func (s *otlpSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/v1/traces" && r.Method == http.MethodPost:
		n, err := io.Copy(io.Discard, r.Body)
		s.bytes.Add(n)
		if err != nil {
			http.Error(w, "reading body: "+err.Error(), http.StatusBadRequest)
			return
		}
		s.exports.Add(1)
		h := w.Header()
		h["Content-Type"] = []string{"application/x-protobuf"}
		h["Content-Length"] = []string{"0"}
		w.WriteHeader(http.StatusOK)
	case r.URL.Path == "/" && r.Method == http.MethodGet:
		w.WriteHeader(http.StatusOK)
	default:
		http.NotFound(w, r)
	}
}

// logTotals writes what the sink received to l.
func (s *otlpSink) logTotals(l *log.Logger) {
	l.Printf("otlp-sink: %d exports, %d bytes received", s.exports.Load(), s.bytes.Load())
}
