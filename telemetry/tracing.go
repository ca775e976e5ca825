package telemetry

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/contrib/propagators/autoprop"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Defaults applied by NewTracing when neither TracingOptions nor the
// environment say otherwise.
const (
	// DefaultServiceName is the service.name of meshgate's spans when
	// neither TracingOptions.ServiceName, OTEL_SERVICE_NAME nor a
	// service.name in OTEL_RESOURCE_ATTRIBUTES is set.
	DefaultServiceName = "meshgate"
	// DefaultTraceQueueSize is how many ended spans may wait for export
	// before new ones are dropped.
	DefaultTraceQueueSize = 2048
	// DefaultTraceExportTimeout bounds one export of a batch of spans,
	// retries included.
	DefaultTraceExportTimeout = 5 * time.Second
)

// OTLP protocols accepted in TracingOptions.Protocol and in
// OTEL_EXPORTER_OTLP_PROTOCOL / OTEL_EXPORTER_OTLP_TRACES_PROTOCOL.
const (
	ProtocolGRPC         = "grpc"
	ProtocolHTTPProtobuf = "http/protobuf"
	ProtocolHTTPJSON     = "http/json"
)

// TracingOptions configure NewTracing. Every field is optional: a zero
// field leaves the decision to the standard OpenTelemetry environment
// variables, and a set field overrides them.
//
// The environment variables honoured are OTEL_SERVICE_NAME and
// OTEL_RESOURCE_ATTRIBUTES (the resource), OTEL_TRACES_EXPORTER (otlp, the
// default, or none), OTEL_EXPORTER_OTLP_ENDPOINT and
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL and
// OTEL_EXPORTER_OTLP_TRACES_PROTOCOL (grpc, http/protobuf or http/json;
// http/protobuf by default, as the specification says), the other
// OTEL_EXPORTER_OTLP_* settings (headers, TLS, compression, timeout) read
// by the exporters themselves, OTEL_TRACES_SAMPLER and
// OTEL_TRACES_SAMPLER_ARG and OTEL_BSP_SCHEDULE_DELAY (read by the SDK),
// OTEL_BSP_MAX_QUEUE_SIZE and OTEL_BSP_MAX_EXPORT_BATCH_SIZE, and
// OTEL_PROPAGATORS (tracecontext,baggage by default; b3, b3multi, jaeger,
// xray, ottrace and none are also understood).
type TracingOptions struct {
	// ServiceName is the service.name resource attribute. It overrides
	// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; when all three are
	// empty the name is "meshgate".
	ServiceName string
	// ServiceVersion is the service.version resource attribute, usually
	// the build's version. Empty leaves it to OTEL_RESOURCE_ATTRIBUTES.
	ServiceVersion string
	// Endpoint is where spans are sent, overriding
	// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT and OTEL_EXPORTER_OTLP_ENDPOINT.
	// A URL ("http://collector:4318/v1/traces") is used as is, like
	// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, so an HTTP URL must include the
	// path; its scheme chooses TLS (https) or plain text (http). A bare
	// host:port ("collector:4317") keeps the default path and TLS setting
	// (OTEL_EXPORTER_OTLP_INSECURE), which suits gRPC.
	Endpoint string
	// Protocol is the OTLP transport: "grpc", "http/protobuf" or
	// "http/json". It overrides OTEL_EXPORTER_OTLP_TRACES_PROTOCOL and
	// OTEL_EXPORTER_OTLP_PROTOCOL; the default is "http/protobuf".
	Protocol string
	// Disabled turns the exporter off, as OTEL_TRACES_EXPORTER=none does:
	// spans are still created, sampled and propagated to upstreams, but
	// never sent anywhere.
	Disabled bool
	// QueueSize is how many ended spans may wait for export. When the
	// queue is full new spans are dropped (and counted by
	// Tracing.Dropped) rather than slowing requests down. Zero means
	// OTEL_BSP_MAX_QUEUE_SIZE, or 2048 when that is unset.
	QueueSize int
}

// Tracing is meshgate's tracer provider together with the propagator that
// carries trace context across hops. Build it with NewTracing and stop it
// with Shutdown.
//
// Tracing never gets in the way of requests: ended spans go to a bounded
// queue that an exporter drains in the background, a full queue drops
// spans instead of blocking, and each export gives up after
// DefaultTraceExportTimeout (OTEL_BSP_EXPORT_TIMEOUT is not honoured).
type Tracing struct {
	provider   *sdktrace.TracerProvider
	propagator propagation.TextMapPropagator
	resource   *resource.Resource
	counts     *spanCounts // nil when no exporter is configured
	abort      context.CancelFunc
}

// NewTracing builds the tracer provider described by o and the
// environment. ctx bounds resource detection only; the exporter connects
// lazily, so an unreachable collector does not fail NewTracing.
func NewTracing(ctx context.Context, o TracingOptions) (*Tracing, error) {
	res, err := tracingResource(ctx, o)
	if err != nil {
		return nil, err
	}
	prop, err := propagatorFromEnv()
	if err != nil {
		return nil, err
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	t := &Tracing{propagator: prop, resource: res}

	disabled := o.Disabled
	if !disabled {
		switch v := strings.TrimSpace(os.Getenv("OTEL_TRACES_EXPORTER")); v {
		case "", "otlp":
		case "none":
			disabled = true
		default:
			return nil, fmt.Errorf("reading OTEL_TRACES_EXPORTER: unsupported exporter %q: use otlp or none", v)
		}
	}
	if !disabled {
		size, err := queueSize(o.QueueSize)
		if err != nil {
			return nil, err
		}
		// A batch larger than the queue bound would never fill and would
		// wait for the schedule delay instead.
		batch, err := envPositiveInt("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", sdktrace.DefaultMaxExportBatchSize)
		if err != nil {
			return nil, err
		}
		exp, err := newExporter(o)
		if err != nil {
			return nil, err
		}
		abortCtx, abort := context.WithCancel(context.Background())
		t.abort = abort
		t.counts = &spanCounts{limit: int64(size)}
		bsp := sdktrace.NewBatchSpanProcessor(
			&countingExporter{next: exp, counts: t.counts, abort: abortCtx},
			// The gate in countingProcessor keeps at most size spans in
			// flight; the slack leaves room for ForceFlush markers, which
			// also take a queue slot, so the processor itself never drops
			// a span behind our back and the accounting stays exact.
			sdktrace.WithMaxQueueSize(2*size),
			sdktrace.WithMaxExportBatchSize(min(batch, size)),
			sdktrace.WithExportTimeout(DefaultTraceExportTimeout),
		)
		opts = append(opts, sdktrace.WithSpanProcessor(&countingProcessor{next: bsp, counts: t.counts}))
	}
	t.provider = sdktrace.NewTracerProvider(opts...)
	return t, nil
}

// TracerProvider returns the provider to hand to instrumentation such as
// otelhttp. It is never the process-global provider.
func (t *Tracing) TracerProvider() trace.TracerProvider { return t.provider }

// Propagator returns the propagator chosen by OTEL_PROPAGATORS: W3C trace
// context and baggage by default.
func (t *Tracing) Propagator() propagation.TextMapPropagator { return t.propagator }

// Tracer returns meshgate's tracer, whose instrumentation scope is
// ScopeName.
func (t *Tracing) Tracer() trace.Tracer { return t.provider.Tracer(ScopeName) }

// Resource returns the resource attached to every span (service.name,
// service.version, OTEL_RESOURCE_ATTRIBUTES and the SDK's attributes). Pass
// it to NewMetrics so that traces and metrics describe the same service.
func (t *Tracing) Resource() *resource.Resource { return t.resource }

// Shutdown exports the spans still queued and stops the provider. It
// returns when everything is flushed or when ctx ends, whichever comes
// first; in the second case the exports under way are abandoned, the
// spans not sent are counted by Dropped, and the error is ctx's. Spans
// ended after Shutdown are discarded.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t.abort == nil {
		if err := t.provider.Shutdown(ctx); err != nil {
			return fmt.Errorf("shutting down tracing: %w", err)
		}
		return nil
	}
	// An export blocked on a dead collector would otherwise keep the
	// processor's goroutine alive for up to DefaultTraceExportTimeout
	// after Shutdown returned.
	stop := context.AfterFunc(ctx, t.abort)
	err := t.provider.Shutdown(ctx)
	stop()
	t.abort()
	t.counts.closed.Store(true)
	if err != nil {
		return fmt.Errorf("shutting down tracing: %w", err)
	}
	return nil
}

// Dropped reports how many sampled spans were lost: refused because the
// export queue was full, rejected by the exporter (collector unreachable,
// export timed out or refused), or still queued when Shutdown gave up.
// Spans waiting in the queue are not counted until they are lost. It is
// always zero when the exporter is disabled.
func (t *Tracing) Dropped() uint64 {
	if t.counts == nil {
		return 0
	}
	return t.counts.dropped()
}

// tracingResource returns the SDK's default resource with service.name and
// service.version decided by o, the environment and DefaultServiceName, in
// that order.
func tracingResource(ctx context.Context, o TracingOptions) (*resource.Resource, error) {
	env, err := resource.New(ctx, resource.WithFromEnv())
	if err != nil {
		return nil, fmt.Errorf("reading OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES: %w", err)
	}
	name := o.ServiceName
	if name == "" {
		if v, ok := env.Set().Value(semconv.ServiceNameKey); ok && v.AsString() != "" {
			name = v.AsString()
		} else {
			name = DefaultServiceName
		}
	}
	attrs := []attribute.KeyValue{semconv.ServiceName(name)}
	if o.ServiceVersion != "" {
		attrs = append(attrs, semconv.ServiceVersion(o.ServiceVersion))
	}
	// The SDK's default detectors, minus its unknown_service:<exe> name.
	// resource.Default is not used: it reads the environment only once
	// per process.
	base, err := resource.New(ctx, resource.WithTelemetrySDK(), resource.WithFromEnv())
	if err != nil {
		return nil, fmt.Errorf("building the tracing resource: %w", err)
	}
	res, err := resource.Merge(base, resource.NewSchemaless(attrs...))
	if err != nil {
		return nil, fmt.Errorf("building the tracing resource: %w", err)
	}
	return res, nil
}

// propagatorFromEnv is autoprop's reading of OTEL_PROPAGATORS, except that
// an unknown name is an error rather than a log line.
func propagatorFromEnv() (propagation.TextMapPropagator, error) {
	v := os.Getenv("OTEL_PROPAGATORS")
	if strings.TrimSpace(v) == "" {
		return autoprop.NewTextMapPropagator(), nil
	}
	var names []string
	for n := range strings.SplitSeq(v, ",") {
		names = append(names, strings.TrimSpace(n))
	}
	p, err := autoprop.TextMapPropagator(names...)
	if err != nil {
		return nil, fmt.Errorf("reading OTEL_PROPAGATORS %q: %w (known: tracecontext, baggage, b3, b3multi, jaeger, xray, ottrace, none)", v, err)
	}
	return p, nil
}

// queueSize resolves TracingOptions.QueueSize.
func queueSize(n int) (int, error) {
	if n < 0 {
		return 0, fmt.Errorf("tracing: queue size %d: must be positive, or zero for the default", n)
	}
	if n > 0 {
		return n, nil
	}
	return envPositiveInt("OTEL_BSP_MAX_QUEUE_SIZE", DefaultTraceQueueSize)
}

// envPositiveInt reads the positive integer in the environment variable
// name, or returns def when it is unset.
func envPositiveInt(name string, def int) (int, error) {
	v := strings.TrimSpace(os.Getenv(name))
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("reading %s %q: must be a positive integer", name, v)
	}
	return n, nil
}

// newExporter builds the OTLP exporter for the protocol chosen by o or the
// environment. Neither exporter dials before the first export.
func newExporter(o TracingOptions) (sdktrace.SpanExporter, error) {
	protocol, source := o.Protocol, "tracing protocol"
	for _, env := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if protocol == "" {
			protocol, source = strings.TrimSpace(os.Getenv(env)), "reading "+env
		}
	}
	if protocol == "" {
		protocol = ProtocolHTTPProtobuf
	}
	url := strings.Contains(o.Endpoint, "://")
	switch protocol {
	case ProtocolGRPC:
		var opts []otlptracegrpc.Option
		switch {
		case url:
			opts = append(opts, otlptracegrpc.WithEndpointURL(o.Endpoint))
		case o.Endpoint != "":
			opts = append(opts, otlptracegrpc.WithEndpoint(o.Endpoint))
		}
		exp, err := otlptracegrpc.New(context.Background(), opts...)
		if err != nil {
			return nil, fmt.Errorf("creating the OTLP/gRPC trace exporter: %w", err)
		}
		return exp, nil
	case ProtocolHTTPProtobuf, ProtocolHTTPJSON:
		// The encoding is set explicitly: the exporter would otherwise
		// follow OTEL_EXPORTER_OTLP_PROTOCOL even when o.Protocol
		// overrides it.
		enc := otlptracehttp.EncodingProtobuf
		if protocol == ProtocolHTTPJSON {
			enc = otlptracehttp.EncodingJSON
		}
		opts := []otlptracehttp.Option{otlptracehttp.WithEncoding(enc)}
		switch {
		case url:
			opts = append(opts, otlptracehttp.WithEndpointURL(o.Endpoint))
		case o.Endpoint != "":
			opts = append(opts, otlptracehttp.WithEndpoint(o.Endpoint))
		}
		exp, err := otlptracehttp.New(context.Background(), opts...)
		if err != nil {
			return nil, fmt.Errorf("creating the OTLP/HTTP trace exporter: %w", err)
		}
		return exp, nil
	default:
		return nil, fmt.Errorf("%s: unsupported OTLP protocol %q: use %s, %s or %s",
			source, protocol, ProtocolGRPC, ProtocolHTTPProtobuf, ProtocolHTTPJSON)
	}
}

// spanCounts is the accounting shared by countingProcessor, in front of
// the batch span processor, and countingExporter, behind it.
type spanCounts struct {
	limit    int64
	pending  atomic.Int64  // accepted, neither exported nor failed yet
	accepted atomic.Uint64 // handed to the batch span processor
	exported atomic.Uint64 // acknowledged by the collector
	failed   atomic.Uint64 // handed to the exporter, which returned an error
	refused  atomic.Uint64 // dropped because the queue was full
	closed   atomic.Bool   // Shutdown has returned
}

func (c *spanCounts) dropped() uint64 {
	if c.closed.Load() {
		// Whatever was accepted and not exported is lost for good,
		// including the spans still queued when Shutdown gave up.
		return c.refused.Load() + c.accepted.Load() - c.exported.Load()
	}
	return c.refused.Load() + c.failed.Load()
}

// countingProcessor bounds the spans in flight and counts those it refuses.
// The batch span processor drops silently when its queue is full; bounding
// the queue here instead is what makes Dropped exact.
type countingProcessor struct {
	next   sdktrace.SpanProcessor
	counts *spanCounts
}

var _ sdktrace.SpanProcessor = (*countingProcessor)(nil)

func (p *countingProcessor) OnStart(ctx context.Context, s sdktrace.ReadWriteSpan) {
	p.next.OnStart(ctx, s)
}

func (p *countingProcessor) OnEnd(s sdktrace.ReadOnlySpan) {
	// Spans recorded but not sampled are never exported, so they take no
	// queue slot.
	if !s.SpanContext().IsSampled() {
		return
	}
	if p.counts.pending.Add(1) > p.counts.limit {
		p.counts.pending.Add(-1)
		p.counts.refused.Add(1)
		return
	}
	p.counts.accepted.Add(1)
	p.next.OnEnd(s)
}

func (p *countingProcessor) Shutdown(ctx context.Context) error { return p.next.Shutdown(ctx) }

func (p *countingProcessor) ForceFlush(ctx context.Context) error { return p.next.ForceFlush(ctx) }

// countingExporter counts what the exporter sends and what it fails to, and
// abandons exports once Shutdown has run out of time.
type countingExporter struct {
	next   sdktrace.SpanExporter
	counts *spanCounts
	abort  context.Context
}

var _ sdktrace.SpanExporter = (*countingExporter)(nil)

// errAborted is returned for exports attempted after Shutdown gave up.
var errAborted = errors.New("tracing shut down before the spans were exported")

func (e *countingExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	err := e.abort.Err()
	if err == nil {
		ctx, cancel := context.WithCancel(ctx)
		stop := context.AfterFunc(e.abort, cancel)
		err = e.next.ExportSpans(ctx, spans)
		stop()
		cancel()
	} else {
		err = errAborted
	}
	n := len(spans)
	e.counts.pending.Add(-int64(n))
	if err != nil {
		e.counts.failed.Add(uint64(n))
		return fmt.Errorf("exporting %d spans: %w", n, err)
	}
	e.counts.exported.Add(uint64(n))
	return nil
}

func (e *countingExporter) Shutdown(ctx context.Context) error { return e.next.Shutdown(ctx) }
