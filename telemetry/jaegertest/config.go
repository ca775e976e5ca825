package jaegertest

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
)

// ports are the loopback ports one Jaeger instance listens on. Every
// listener Jaeger would open by default is moved here or disabled, so
// instances started by parallel tests never collide.
type ports struct {
	otlpGRPC, otlpHTTP, queryHTTP, queryGRPC, health int
}

// freePorts picks five distinct loopback ports that are free right now.
// The listeners stay open until all five are chosen so that the kernel
// cannot hand out the same port twice; another process may still take one
// before Jaeger binds it, which Start handles by retrying.
func freePorts() (ports, error) {
	var p [5]int
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for i := range p {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return ports{}, fmt.Errorf("finding a free port: %w", err)
		}
		lns = append(lns, ln)
		p[i] = ln.Addr().(*net.TCPAddr).Port
	}
	return ports{otlpGRPC: p[0], otlpHTTP: p[1], queryHTTP: p[2], queryGRPC: p[3], health: p[4]}, nil
}

// configTemplate is Jaeger v2's all-in-one memory configuration
// (cmd/jaeger/internal/all-in-one.yaml in github.com/jaegertracing/jaeger
// v1.76.0) cut down to OTLP in, memory storage and the query API, with
// every port on loopback:
//   - the jaeger, zipkin receivers and the remote_sampling, expvar and
//     zpages extensions are left out (fixed ports, not needed by tests);
//   - the health check has no gRPC server;
//   - the collector's own metrics (Prometheus on :8888 by default) are off;
//   - jaeger_query does not trace itself: enable_tracing defaults to true
//     and then exports to localhost:4317, which is noise at best, another
//     test's Jaeger at worst, and delays shutdown by 10s while it retries.
const configTemplate = `service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    resource:
      service.name: jaeger
    metrics:
      level: none
    logs:
      level: info

extensions:
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 100000
  jaeger_query:
    storage:
      traces: memstore
    enable_tracing: false
    http:
      endpoint: 127.0.0.1:%[3]d
    grpc:
      endpoint: 127.0.0.1:%[4]d
  healthcheckv2:
    use_v2: true
    http:
      endpoint: 127.0.0.1:%[5]d

receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:%[1]d
      http:
        endpoint: 127.0.0.1:%[2]d

processors:
  batch:

exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
`

// config renders the Jaeger configuration for p.
func (p ports) config() string {
	return Config(p.otlpGRPC, p.otlpHTTP, p.queryHTTP, p.queryGRPC, p.health)
}

// Config is Jaeger v2's all-in-one configuration with memory storage and
// every listener on loopback at the given ports: the OTLP receivers, the
// query API and UI (HTTP and gRPC) and the health check. The local demo
// mesh (deployments/mesh) runs Jaeger with it too.
func Config(otlpGRPC, otlpHTTP, queryHTTP, queryGRPC, health int) string {
	return fmt.Sprintf(configTemplate, otlpGRPC, otlpHTTP, queryHTTP, queryGRPC, health)
}

// writeConfig writes the configuration for p into dir and returns its path.
func (p ports) writeConfig(dir string) (string, error) {
	path := filepath.Join(dir, "jaeger-"+strconv.Itoa(p.queryHTTP)+".yaml")
	if err := os.WriteFile(path, []byte(p.config()), 0o644); err != nil {
		return "", fmt.Errorf("writing jaeger config: %w", err)
	}
	return path, nil
}
