package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/discovery"
	"github.com/meshgate/meshgate/policies"
	"github.com/meshgate/meshgate/proxy"
)

// policyRuntime loads the policy files of the config in force into a
// policies.Manager and reloads them when they change.
type policyRuntime struct {
	mgr   *policies.Manager
	gw    *proxy.Gateway
	redis *redis.Client // nil without policies.redis
	log   *slog.Logger

	mu  sync.Mutex // guards cfg and kv
	cfg *config.Config
	kv  []policies.Source // the documents under the Consul KV prefix
}

// newRedis returns the client of policies.redis, or nil.
func newRedis(cfg *config.Config) *redis.Client {
	if cfg.Policies == nil || cfg.Policies.Redis == nil {
		return nil
	}
	rc := cfg.Policies.Redis
	opts := &redis.Options{
		Addr:     rc.Address,
		Username: rc.Username,
		DB:       rc.DB,
		// A rate-limit check must not wait long: past the timeout the
		// limit's failure mode applies.
		DialTimeout:  rc.Timeout.D(),
		ReadTimeout:  rc.Timeout.D(),
		WriteTimeout: rc.Timeout.D(),
		PoolTimeout:  rc.Timeout.D(),
		MaxRetries:   -1,
	}
	if rc.PasswordEnv != "" {
		opts.Password = os.Getenv(rc.PasswordEnv)
	}
	if rc.TLS {
		opts.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return redis.NewClient(opts)
}

// startPolicies loads the policies cfg names and puts them in force in gw.
// An invalid policy file stops meshgate from starting, as an invalid
// config does.
//
// With policies.consul_kv_prefix the documents under the prefix are read
// before the first load (for up to kvStartWait: meshgate does not start
// without policies it was told to enforce) and watched until ctx is done;
// each change signals changed.
func startPolicies(ctx context.Context, cfg *config.Config, gw *proxy.Gateway, obs policies.Observer, log *slog.Logger, changed chan<- struct{}) (*policyRuntime, error) {
	pr := &policyRuntime{redis: newRedis(cfg), log: log, cfg: cfg}
	env := policies.Env{Logger: log, ClientIP: gw.ClientIP, Observer: obs}
	if pr.redis != nil {
		env.Redis = pr.redis
	}
	pr.mgr = policies.NewManager(env)
	pr.gw = gw
	if err := pr.startKV(ctx, cfg, changed); err != nil {
		pr.close()
		return nil, err
	}
	if err := pr.load(cfg, gw.SetPolicies); err != nil {
		pr.close()
		return nil, err
	}
	return pr, nil
}

// kvStartWait bounds the wait for Consul KV's policy documents at start.
const kvStartWait = 10 * time.Second

// startKV reads the policy documents under the Consul KV prefix, then
// watches them. Changing the prefix takes a restart.
func (pr *policyRuntime) startKV(ctx context.Context, cfg *config.Config, changed chan<- struct{}) error {
	if cfg.Policies == nil || cfg.Policies.ConsulKVPrefix == "" || cfg.Discovery.Consul == nil {
		return nil
	}
	cc := *cfg.Discovery.Consul
	prefix := cfg.Policies.ConsulKVPrefix
	client, _, err := discovery.NewConsulClient(cc)
	if err != nil {
		return err
	}
	first := make(chan struct{})
	var seen atomic.Bool
	go discovery.WatchKV(ctx, client, cc, prefix, pr.log, func(entries []discovery.KVEntry) {
		docs := make([]policies.Source, 0, len(entries))
		for _, e := range entries {
			docs = append(docs, policies.Source{Name: "consul:" + e.Key, Data: e.Value})
		}
		pr.setKV(docs)
		if seen.CompareAndSwap(false, true) {
			close(first) // the first load reads them
			return
		}
		select {
		case changed <- struct{}{}:
		default:
		}
	})
	select {
	case <-first:
		return nil
	case <-time.After(kvStartWait):
		return fmt.Errorf("policies.consul_kv_prefix: no answer from Consul at %s within %s; not starting without the policies stored there", cc.Address, kvStartWait)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// load reads the policy sources cfg names (and the Consul KV documents),
// checks the set against cfg's routes and services, and hands it to
// install, which puts it in force. On any error the policies in force
// stay.
func (pr *policyRuntime) load(cfg *config.Config, install func(*policies.Set) error) error {
	sources, err := policySources(cfg)
	if err != nil {
		return err
	}
	pr.mu.Lock()
	sources = append(sources, pr.kv...)
	pr.mu.Unlock()
	return pr.mgr.Load(sources, pr.redis != nil, func(set *policies.Set) error {
		if err := checkPolicyRefs(cfg, set); err != nil {
			return err
		}
		return install(set)
	})
}

// reload reloads the policies of the config in force after a change of
// the policy files, logged.
func (pr *policyRuntime) reload(why string) {
	pr.mu.Lock()
	cfg := pr.cfg
	pr.mu.Unlock()
	if err := pr.load(cfg, pr.gw.SetPolicies); err != nil {
		pr.log.Error("policy reload failed; keeping the policies in force", "trigger", why, "error", err)
		return
	}
	pr.log.Info("policies reloaded", "trigger", why, "policies", len(pr.mgr.Current().Policies()))
}

// reloadConfig puts next and the policies it names in force together; on
// error neither changes.
func (pr *policyRuntime) reloadConfig(next *config.Config) error {
	installed := false
	err := pr.load(next, func(set *policies.Set) error {
		installed = true
		return pr.gw.ReloadWithPolicies(next, set)
	})
	if err != nil {
		if !installed {
			// The gateway counts the reloads it sees; count this one too.
			pr.gw.RecordReloadFailure(err)
		}
		return err
	}
	pr.mu.Lock()
	pr.cfg = next
	pr.mu.Unlock()
	return nil
}

// setKV replaces the documents read from Consul KV.
func (pr *policyRuntime) setKV(kv []policies.Source) {
	pr.mu.Lock()
	pr.kv = kv
	pr.mu.Unlock()
}

func (pr *policyRuntime) close() {
	if err := pr.mgr.Close(); err != nil {
		pr.log.Warn("closing policies", "error", err)
	}
	if pr.redis != nil {
		_ = pr.redis.Close()
	}
}

// watch reloads the policies when a file of the policy directory changes,
// until ctx is done. since is the config.DirSum taken before the policies
// in force were read (nil: none).
func (pr *policyRuntime) watch(ctx context.Context, dir string, since []byte, changed chan<- struct{}) {
	if dir == "" {
		return
	}
	err := config.WatchDir(ctx, dir, 250*time.Millisecond, since, func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	})
	if err != nil {
		pr.log.Warn("policy file changes will not be noticed; SIGHUP still reloads", "error", err)
	}
}

// policySources reads the policy directory of cfg.
func policySources(cfg *config.Config) ([]policies.Source, error) {
	if cfg.Policies == nil || cfg.Policies.Dir == "" {
		return nil, nil
	}
	return policies.ReadDir(cfg.Policies.Dir)
}

// checkPolicyRefs checks the route and service names of applies_to against
// cfg. With Consul discovery, services and routes may come from the
// catalog later, so unknown names are not errors there.
func checkPolicyRefs(cfg *config.Config, set *policies.Set) error {
	if cfg.Discovery.Consul != nil {
		return nil
	}
	routes := make([]string, 0, len(cfg.Routes))
	for _, r := range cfg.Routes {
		routes = append(routes, r.Name)
	}
	services := make([]string, 0, len(cfg.Services))
	for name := range cfg.Services {
		services = append(services, name)
	}
	return set.CheckRefs(routes, services, true)
}

// validatePolicies checks the policy files a valid config names, for
// meshgate validate: nothing is fetched or connected.
func validatePolicies(cfg *config.Config) error {
	sources, err := policySources(cfg)
	if err != nil {
		return err
	}
	haveRedis := cfg.Policies != nil && cfg.Policies.Redis != nil
	set, err := policies.Validate(sources, haveRedis)
	if err != nil {
		return err
	}
	return checkPolicyRefs(cfg, set)
}

// printProblems prints err as `file:line: field: message` lines when it
// is config.Errors, else as one line prefixed with name.
func printProblems(w io.Writer, name string, err error) {
	var errs config.Errors
	if errors.As(err, &errs) {
		for _, e := range errs {
			fmt.Fprintln(w, e)
		}
		return
	}
	fmt.Fprintf(w, "%s: %v\n", name, err)
}
