package proxy

import (
	"context"
	"net/http"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.39.0"
	"go.opentelemetry.io/otel/trace"
)

// This file creates the spans of a request, named and attributed by the
// OpenTelemetry HTTP semantic conventions: a server span per request,
// "{method} {http.route}", and a client span per upstream attempt with
// http.request.resend_count. otelhttp would wrap the whole handler; the
// gateway needs the route before naming the server span and one client
// span per attempt of its own client, so it creates the spans itself.
// Without a tracer (tracing off) none of this runs.

// tracing is the gateway's tracer and propagator.
type tracing struct {
	tracer trace.Tracer
	prop   propagation.TextMapPropagator
}

// routeTemplate is the http.route of a route: its exact path or prefix.
func routeTemplate(rte *Route) string {
	if rte.exact != "" {
		return rte.exact
	}
	return rte.prefix
}

// startServer starts the server span of r, continuing the client's trace
// context. It returns r's context when tracing is off.
func (tr *tracing) startServer(r *http.Request, rte *Route, ignoreIncoming bool) (context.Context, trace.Span) {
	ctx := r.Context()
	if tr.tracer == nil {
		return ctx, nil
	}
	var opts []trace.SpanStartOption
	if ignoreIncoming {
		// A new root, linked to what the caller sent (server.
		// ignore_incoming_trace_context): neither its trace nor its baggage
		// is continued.
		remote := trace.SpanContextFromContext(tr.prop.Extract(ctx, propagation.HeaderCarrier(r.Header)))
		opts = append(opts, trace.WithNewRoot())
		if remote.IsValid() {
			opts = append(opts, trace.WithLinks(trace.Link{SpanContext: remote}))
		}
	} else {
		ctx = tr.prop.Extract(ctx, propagation.HeaderCarrier(r.Header))
	}
	name := r.Method
	attrs := []attribute.KeyValue{
		semconv.HTTPRequestMethodKey.String(r.Method),
		semconv.URLPath(r.URL.Path),
		semconv.ServerAddress(stripPort(r.Host)),
		semconv.NetworkPeerAddress(remoteIP(r.RemoteAddr)),
	}
	attrs = append(attrs, semconv.URLScheme(schemeOf(r)))
	if ua := r.UserAgent(); ua != "" {
		attrs = append(attrs, semconv.UserAgentOriginal(ua))
	}
	if rte != nil {
		name += " " + routeTemplate(rte)
		attrs = append(attrs, semconv.HTTPRoute(routeTemplate(rte)),
			attribute.String("meshgate.route", rte.Name), attribute.String("meshgate.service", rte.upstream.name))
	}
	opts = append(opts, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attrs...))
	return tr.tracer.Start(ctx, name, opts...)
}

// endSpan records the status a span ends with; 5xx marks it as an error
// (for a server span only 5xx, as the conventions say).
func endSpan(span trace.Span, status int, err error) {
	if span == nil {
		return
	}
	if status > 0 && status != StatusClientClosedRequest {
		span.SetAttributes(semconv.HTTPResponseStatusCode(status))
	}
	switch {
	case err != nil:
		span.SetAttributes(semconv.ErrorTypeKey.String(errorType(status)))
		span.SetStatus(codes.Error, err.Error())
	case status == StatusClientClosedRequest:
		span.SetAttributes(semconv.ErrorTypeKey.String("client_closed_request"))
	case status >= 500:
		span.SetAttributes(semconv.ErrorTypeKey.String(strconv.Itoa(status)))
		span.SetStatus(codes.Error, "")
	}
	span.End()
}

func errorType(status int) string {
	switch status {
	case http.StatusGatewayTimeout:
		return "timeout"
	case StatusClientClosedRequest:
		return "client_closed_request"
	default:
		return "connect"
	}
}

// startClient starts the client span of one upstream attempt and returns
// the trace context headers to send with it.
func (tr *tracing) startClient(ctx context.Context, r *http.Request, ep *endpoint, path string, attempt int) (context.Context, trace.Span, http.Header) {
	if tr.tracer == nil {
		return ctx, nil, nil
	}
	attrs := []attribute.KeyValue{
		semconv.HTTPRequestMethodKey.String(r.Method),
		semconv.ServerAddress(ep.inst.Address),
		semconv.ServerPort(ep.inst.Port),
		semconv.URLFull("http://" + ep.inst.HostPort + path),
		attribute.String("meshgate.instance", ep.inst.ID),
	}
	if attempt > 1 {
		attrs = append(attrs, semconv.HTTPRequestResendCount(attempt-1))
	}
	ctx, span := tr.tracer.Start(ctx, r.Method, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	h := make(http.Header, 2)
	tr.prop.Inject(ctx, propagation.HeaderCarrier(h))
	return ctx, span, h
}

// startPart starts the internal span of one part of an aggregate request,
// "aggregate {part}", a child of the request's server span; the part's
// sub-requests' client spans are its children. nil when tracing is off.
func (tr *tracing) startPart(ctx context.Context, route, part string) (context.Context, trace.Span) {
	if tr.tracer == nil {
		return ctx, nil
	}
	return tr.tracer.Start(ctx, "aggregate "+part, trace.WithSpanKind(trace.SpanKindInternal), trace.WithAttributes(
		attribute.String("meshgate.aggregate.part", part), attribute.String("meshgate.aggregate.route", route)))
}

// event adds a resilience decision to the request's server span.
// spanOf returns the recording span of ctx, or nil.
func spanOf(ctx context.Context) trace.Span {
	if sp := trace.SpanFromContext(ctx); sp.IsRecording() {
		return sp
	}
	return nil
}

func event(span trace.Span, name string, attrs ...attribute.KeyValue) {
	if span != nil {
		span.AddEvent(name, trace.WithAttributes(attrs...))
	}
}
