// Package telemetry owns meshgate's OpenTelemetry setup and names: tracer
// and meter providers configured from the standard OTEL_* variables, OTLP
// exporters, the Prometheus endpoint on the admin listener, propagators, and
// the JSON access log with trace and span IDs.
//
// The package holds no code yet: meshgate logs operational events through
// log/slog on stderr.
package telemetry
