package proxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"syscall"

	"github.com/meshgate/meshgate/internal/httperr"
)

// StatusClientClosedRequest is logged (never sent) when the client went
// away before the response ended, as nginx and fabio log it. Nothing more
// is sent to such a client: its connection is closed (its HTTP/2 stream
// reset), so that a client that only half-closed its side cannot read an
// empty "200 OK" as the answer.
const StatusClientClosedRequest = 499

// Error messages sent to clients. They name the gateway's view of the
// failure and nothing of the upstream's internals.
const (
	msgNoRoute         = "no route matches the request"
	msgNoInstance      = "no healthy instance of the service is available"
	msgUpstreamConnect = "could not connect to the upstream service"
	msgUpstreamTimeout = "the upstream service did not answer in time"
	msgUpstreamFailed  = "the upstream service failed to answer"
	msgBodyTooLarge    = "request body too large"
	msgBodyIncomplete  = "the request body ended before its declared length"
	msgBodyUnreadable  = "could not read the request body"
	msgShuttingDown    = "the gateway is shutting down"
	msgOverloaded      = "the service has too many requests in flight; try again shortly"
	msgUpgradeFailed   = "protocol upgrade failed"
	msgInternal        = "internal gateway error"
)

// writeError answers with the JSON error body of the contract:
// {"error": "...", "status": N}. The body is built without reflection.
func writeError(w http.ResponseWriter, status int, msg string) {
	writeErrorTrace(w, nil, status, msg)
}

// writeErrorTrace is writeError with the trace_id of the span in ctx (nil
// or no span: none), so that a client can quote it in a report.
func writeErrorTrace(w http.ResponseWriter, ctx context.Context, status int, msg string) {
	httperr.Write(w, ctx, status, msg)
}

// classify maps an error of an upstream round trip to the status the
// client gets and the message it reads. ctx is the client request's
// context: when it is done the client went away (499, never written).
func classify(ctx context.Context, err error) (int, string) {
	if ctx.Err() != nil {
		return StatusClientClosedRequest, "client closed request"
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return http.StatusRequestEntityTooLarge, msgBodyTooLarge
	}
	// Connecting comes first: a dial that times out is a connect failure,
	// not a slow answer, though its error also matches
	// context.DeadlineExceeded.
	if isDial(err) || errors.Is(err, syscall.ECONNREFUSED) {
		return http.StatusBadGateway, msgUpstreamConnect
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return http.StatusGatewayTimeout, msgUpstreamTimeout
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return http.StatusGatewayTimeout, msgUpstreamTimeout
	}
	return http.StatusBadGateway, msgUpstreamFailed
}

// isDial reports whether err happened while connecting.
func isDial(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial"
}
