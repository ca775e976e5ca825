package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"reflect"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/deployments"
	"github.com/meshgate/meshgate/discovery"
	"github.com/meshgate/meshgate/proxy"
	"github.com/meshgate/meshgate/telemetry"
	"github.com/spf13/cobra"
)

type runOptions struct {
	configPath string
	logLevel   string
	logFormat  string
	accessLog  string
	stderr     io.Writer
	stdout     io.Writer
	// started, when set, is called once every listener is bound (tests).
	started func(*proxy.Server)
}

func newRunCmd() *cobra.Command {
	opts := runOptions{}
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the gateway",
		Long: `run serves the configuration in --config (or $MESHGATE_CONFIG). Without
either it serves the embedded default: the demo catalog on 127.0.0.1:8080.

SIGTERM or SIGINT drains: /readyz fails at once, the listeners stop after
server.drain_delay, in-flight requests get server.grace_period, then meshgate
exits 0. SIGHUP or a change of the file reloads it; a bad file keeps the last
good configuration.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.stderr = cmd.ErrOrStderr()
			opts.stdout = cmd.OutOrStdout()
			return run(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVarP(&opts.configPath, "config", "c", os.Getenv("MESHGATE_CONFIG"),
		"configuration file (env MESHGATE_CONFIG); the embedded default when empty")
	cmd.Flags().StringVar(&opts.logLevel, "log-level", envOr("MESHGATE_LOG_LEVEL", "info"), "debug, info, warn or error (env MESHGATE_LOG_LEVEL)")
	cmd.Flags().StringVar(&opts.logFormat, "log-format", envOr("MESHGATE_LOG_FORMAT", "json"), "json or text (env MESHGATE_LOG_FORMAT)")
	cmd.Flags().StringVar(&opts.accessLog, "access-log", envOr("MESHGATE_ACCESS_LOG", "stdout"),
		"where the JSON access log goes: stdout, stderr or off (env MESHGATE_ACCESS_LOG)")
	return cmd
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	ho := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "json":
		return slog.New(slog.NewJSONHandler(w, ho)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, ho)), nil
	default:
		return nil, fmt.Errorf("--log-format %q: want json or text", format)
	}
}

// tracingWanted reports whether spans should be exported: an OTLP endpoint
// is configured (telemetry.otlp_endpoint or the standard variables), or
// OTEL_TRACES_EXPORTER asks for otlp. Without either, meshgate creates no
// spans at all (no cost on the request path) rather than exporting to a
// collector that is not there.
func tracingWanted(tc config.Telemetry) bool {
	if tc.TracesDisabled || os.Getenv("OTEL_TRACES_EXPORTER") == "none" {
		return false
	}
	return tc.OTLPEndpoint != "" || os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" ||
		os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" || os.Getenv("OTEL_TRACES_EXPORTER") == "otlp"
}

// loadConfig reads path, or the embedded default when path is empty.
func loadConfig(path string) (*config.Config, error) {
	if path == "" {
		return config.Parse(deployments.DefaultConfigName, deployments.DefaultConfig)
	}
	return config.Load(path)
}

// source runs the discovery source of one configuration until replaced.
type source struct {
	cancel context.CancelFunc
	done   chan struct{}
	consul *discovery.Consul // nil for the static catalog
}

// startSource starts the source cfg asks for: Consul when
// discovery.consul is set, else the static catalog.
func startSource(ctx context.Context, cfg *config.Config, store *discovery.Store, log *slog.Logger) (*source, error) {
	var src discovery.Source
	s := &source{done: make(chan struct{})}
	if cc := cfg.Discovery.Consul; cc != nil {
		client, counter, err := discovery.NewConsulClient(*cc)
		if err != nil {
			return nil, err
		}
		s.consul = discovery.NewConsul(discovery.ConsulOptions{
			Client: client, Requests: counter, Config: *cc,
			Watch: consulWatchList(cfg), Static: cfg.Services, Logger: log,
		})
		src = s.consul
	} else {
		src = discovery.NewStatic(cfg.Services)
	}
	ctx, s.cancel = context.WithCancel(ctx)
	go func() {
		defer close(s.done)
		if err := src.Run(ctx, store.Publish); err != nil {
			log.Error("discovery source stopped", "error", err)
		}
	}()
	return s, nil
}

// consulWatchList names the services Consul is asked about: those that
// routes lead to and that the static catalog gives no instances.
func consulWatchList(cfg *config.Config) []string {
	seen := map[string]bool{}
	var out []string
	for _, r := range cfg.Routes {
		// An aggregate route has no service of its own: its parts are
		// routed like client requests.
		if r.Service == "" || seen[r.Service] || len(cfg.Services[r.Service].Instances) > 0 {
			continue
		}
		seen[r.Service] = true
		out = append(out, r.Service)
	}
	sort.Strings(out)
	return out
}

func (s *source) stop() { s.cancel(); <-s.done }

// status is the source's health for /admin/instances.
func (s *source) status() any {
	if s.consul == nil {
		return map[string]string{"source": "static"}
	}
	return map[string]any{"source": "consul", "consul": s.consul.Status()}
}

// registration keeps the local service registered in Consul (sidecar mode).
type registration struct {
	r      *discovery.Registrar
	cancel context.CancelFunc
	done   chan struct{}
}

func startRegistration(cfg *config.Config, log *slog.Logger) (*registration, error) {
	if cfg.Register == nil {
		return nil, nil
	}
	client, _, err := discovery.NewConsulClient(*cfg.Discovery.Consul)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	reg := &registration{r: discovery.NewRegistrar(client, *cfg.Register, log), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(reg.done)
		if err := reg.r.Run(ctx); err != nil {
			log.Error("consul registration stopped", "error", err)
		}
	}()
	return reg, nil
}

// stop ends the registration loop and removes the service from Consul.
func (reg *registration) stop(log *slog.Logger) {
	if reg == nil {
		return
	}
	reg.cancel()
	<-reg.done
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := reg.r.Deregister(ctx); err != nil {
		log.Error("deregistering from consul", "error", err)
		return
	}
	log.Info("deregistered from consul")
}

func run(ctx context.Context, opts runOptions) error {
	log, err := newLogger(opts.stderr, opts.logLevel, opts.logFormat)
	if err != nil {
		return err
	}
	// The sums of what is about to be read, so that the file watches,
	// which start once meshgate serves, see a change made in between.
	var cfgSum []byte
	if opts.configPath != "" {
		cfgSum = config.FileSum(opts.configPath)
	}
	cfg, err := loadConfig(opts.configPath)
	if err != nil {
		return err
	}
	name := opts.configPath
	if name == "" {
		name = "embedded default (" + deployments.DefaultConfigName + ")"
	}
	log.Info("starting meshgate", "version", Version, "config", name)

	store := discovery.NewStore()
	tc := cfg.Telemetry
	traced := tracingWanted(tc)
	tracing, err := telemetry.NewTracing(ctx, telemetry.TracingOptions{
		ServiceName: tc.ServiceName, ServiceVersion: Version,
		Endpoint: tc.OTLPEndpoint, Protocol: tc.OTLPProtocol, Disabled: !traced,
	})
	if err != nil {
		return err
	}
	defer func() {
		// Flush what is queued, bounded: a dead collector must not hold the exit.
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tracing.Shutdown(sctx); err != nil {
			log.Warn("flushing traces", "error", err, "dropped_spans", tracing.Dropped())
		}
	}()
	metrics, err := telemetry.NewMetrics(tracing.Resource())
	if err != nil {
		return err
	}
	defer metrics.Shutdown(context.Background())
	observer, err := telemetry.ResilienceObserver(metrics.Meter())
	if err != nil {
		return err
	}
	httpMetrics, err := telemetry.NewHTTPMetrics(metrics.Meter())
	if err != nil {
		return err
	}
	aggMetrics, err := telemetry.NewAggregateMetrics(metrics.Meter())
	if err != nil {
		return err
	}
	popts := proxy.Options{Logger: log, Store: store, Observer: observer, Metrics: httpMetrics, AggregateMetrics: aggMetrics}
	switch opts.accessLog {
	case "stdout":
		popts.AccessLog = slog.New(slog.NewJSONHandler(opts.stdout, nil))
	case "stderr":
		popts.AccessLog = slog.New(slog.NewJSONHandler(opts.stderr, nil))
	case "off", "":
	default:
		return fmt.Errorf("--access-log %q: want stdout, stderr or off", opts.accessLog)
	}
	if traced {
		popts.Tracer, popts.Propagator = tracing.Tracer(), tracing.Propagator()
	}
	gw, err := proxy.New(cfg, popts)
	if err != nil {
		return err
	}
	if err := telemetry.RegisterProcess(metrics.Meter(), telemetry.ProcessState{Reloads: gw.ReloadStats, SpansDropped: tracing.Dropped}); err != nil {
		return err
	}
	defer gw.Close()
	var cur atomic.Pointer[source]
	err = telemetry.RegisterDiscovery(metrics.Meter(), telemetry.DiscoveryState{Store: store, Consul: func() *discovery.ConsulStatus {
		if s := cur.Load(); s != nil && s.consul != nil {
			st := s.consul.Status()
			return &st
		}
		return nil
	}})
	if err != nil {
		return err
	}
	policyObs, err := telemetry.NewPolicyObserver(metrics.Meter())
	if err != nil {
		return err
	}
	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	policiesChanged := make(chan struct{}, 1)
	var polSum []byte
	if dir := policyDir(cfg); dir != "" {
		polSum = config.DirSum(dir)
	}
	pols, err := startPolicies(watchCtx, cfg, gw, policyObs, log, policiesChanged)
	if err != nil {
		return err
	}
	defer pols.close()
	srv, err := proxy.Listen(cfg, gw, gw.AdminHandler(map[string]http.Handler{
		"GET /metrics":        metrics.Handler(),
		"GET /admin/policies": pols.mgr,
	}), log)
	if err != nil {
		return err
	}

	go gw.Watch(watchCtx)
	src, err := startSource(watchCtx, cfg, store, log)
	if err != nil {
		srv.Shutdown(context.Background(), gw)
		return err
	}
	cur.Store(src)
	gw.SetDiscoveryStatus(func() any { return cur.Load().status() })
	defer func() { cur.Load().stop() }()
	srv.Serve()
	reg, err := startRegistration(cfg, log)
	if err != nil {
		srv.Shutdown(context.Background(), gw)
		return err
	}
	if opts.started != nil {
		opts.started(srv)
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	changed := make(chan struct{}, 1)
	// The policy directory's watch follows the config: a reload that
	// changes policies.dir restarts it.
	policyWatchCtx, stopPolicyWatch := context.WithCancel(watchCtx)
	pols.watch(policyWatchCtx, policyDir(cfg), polSum, policiesChanged)
	defer func() { stopPolicyWatch() }()
	if opts.configPath != "" {
		err := config.Watch(watchCtx, opts.configPath, 250*time.Millisecond, cfgSum, func() {
			select {
			case changed <- struct{}{}:
			default:
			}
		})
		if err != nil {
			log.Warn("config file changes will not be noticed; SIGHUP still reloads", "error", err)
		}
	}

	// reload reloads the config file and the policies it names, together;
	// it reports whether the config reloaded.
	reload := func(why string) bool {
		if opts.configPath == "" {
			log.Info("reload requested, but the embedded default cannot change", "trigger", why)
			return false
		}
		next, err := config.Load(opts.configPath)
		if err == nil {
			err = pols.reloadConfig(next)
		} else {
			gw.RecordReloadFailure(err)
		}
		if err != nil {
			log.Error("reload failed; keeping the last good configuration", "trigger", why, "error", err)
			return false
		}
		nsrc, err := startSource(watchCtx, next, store, log)
		if err != nil {
			log.Error("reload: starting discovery failed; keeping the previous source", "error", err)
		} else {
			cur.Swap(nsrc).stop()
		}
		if !reflect.DeepEqual(next.Register, cfg.Register) {
			reg.stop(log)
			if reg, err = startRegistration(next, log); err != nil {
				log.Error("reload: consul registration failed", "error", err)
			}
		}
		if !reflect.DeepEqual(next.Listeners, cfg.Listeners) || next.Admin != cfg.Admin {
			log.Warn("listener or admin addresses changed: restart meshgate to apply them; routes and services are live")
		}
		if policyDir(next) != policyDir(cfg) {
			stopPolicyWatch()
			policyWatchCtx, stopPolicyWatch = context.WithCancel(watchCtx)
			pols.watch(policyWatchCtx, policyDir(next), nil, policiesChanged)
		}
		if !reflect.DeepEqual(redisOf(next), redisOf(cfg)) {
			log.Warn("policies.redis changed: restart meshgate to apply it")
		}
		cfg = next
		log.Info("configuration reloaded", "trigger", why)
		return true
	}

	for {
		select {
		case <-ctx.Done():
			// Leave Consul first, so no new traffic is sent here while draining.
			reg.stop(log)
			return shutdown(srv, gw, cfg, log)
		case err := <-srv.Errors():
			log.Error("listener failed", "error", err)
			reg.stop(log)
			_ = shutdown(srv, gw, cfg, log)
			return err
		case <-hup:
			// The policies reload with the config; when the config cannot
			// (it is broken, or the embedded default), on their own.
			if !reload("SIGHUP") {
				pols.reload("SIGHUP")
			}
		case <-changed:
			reload("file change")
		case <-policiesChanged:
			pols.reload("policy file change")
		}
	}
}

// policyDir returns the policy directory of cfg, or "".
func policyDir(cfg *config.Config) string {
	if cfg.Policies == nil {
		return ""
	}
	return cfg.Policies.Dir
}

// redisOf returns the Redis settings of cfg, or nil.
func redisOf(cfg *config.Config) *config.Redis {
	if cfg.Policies == nil {
		return nil
	}
	return cfg.Policies.Redis
}

// shutdown drains: readiness fails first, listeners stop after the drain
// delay, and in-flight work gets the grace period.
func shutdown(srv *proxy.Server, gw *proxy.Gateway, cfg *config.Config, log *slog.Logger) error {
	gw.Drain()
	log.Info("draining", "drain_delay", cfg.Server.DrainDelay.String(), "grace_period", cfg.Server.GracePeriod.String())
	time.Sleep(cfg.Server.DrainDelay.D())
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Server.GracePeriod.D())
	defer cancel()
	if err := srv.Shutdown(ctx, gw); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			log.Warn("grace period over; closed the connections still open", "error", err)
		} else {
			log.Warn("shutdown", "error", err)
		}
	}
	log.Info("stopped")
	return nil
}
