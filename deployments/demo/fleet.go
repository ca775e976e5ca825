package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// shutdownTimeout bounds the graceful shutdown of all instances.
const shutdownTimeout = 10 * time.Second

// fleet is every instance of one meshgate-demo process, listening but not
// yet serving.
type fleet struct {
	logger *slog.Logger
	// client makes the orders instances' calls to users; its idle
	// connections are closed when the fleet stops.
	client    *http.Client
	instances []*instance
	listeners []net.Listener
}

// listen opens a listener per -listen flag and builds its instance. It
// listens on all of them before serving any, so that a taken port fails the
// whole start rather than leaving a partial fleet.
func listen(opts options, logger *slog.Logger) (*fleet, error) {
	f := &fleet{logger: logger, client: &http.Client{Transport: &http.Transport{
		Proxy:               nil, // the URL is the sidecar: never an HTTP_PROXY
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	}}}
	for i, spec := range opts.listens {
		ln, err := net.Listen("tcp", spec.addr)
		if err != nil {
			f.close()
			return nil, fmt.Errorf("listening for %s on %s: %w", spec.service, spec.addr, err)
		}
		// Name the instance after the port actually bound, which differs
		// from the flag for port 0.
		port := ln.Addr().(*net.TCPAddr).Port
		id := spec.service + "-" + strconv.Itoa(port)
		f.listeners = append(f.listeners, ln)
		f.instances = append(f.instances, newInstance(instanceConfig{
			service:       spec.service,
			id:            id,
			latency:       opts.latency,
			failRate:      opts.failRate,
			seed:          uint64(opts.seed),
			stream:        uint64(i),
			eventInterval: opts.eventInterval,
			now:           time.Now,
			usersURL:      usersURL(spec.service, opts.usersURL),
			client:        f.client,
		}))
	}
	return f, nil
}

// usersURL is the -users-url an instance of service uses: only orders
// calls users.
func usersURL(service, url string) string {
	if service != "orders" {
		return ""
	}
	return url
}

func (f *fleet) close() {
	for _, ln := range f.listeners {
		ln.Close()
	}
}

// serve serves every instance until ctx is done or one of them fails, then
// shuts all of them down gracefully. It returns the first serving error, or
// nil after a shutdown asked for by ctx.
func (f *fleet) serve(ctx context.Context) error {
	// Requests see this context, so long-lived ones (event streams, added
	// latency) end when shutdown begins instead of holding it up.
	reqCtx, cancelRequests := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRequests()

	servers := make([]*http.Server, len(f.instances))
	errc := make(chan error, len(f.instances))
	var wg sync.WaitGroup
	for i, in := range f.instances {
		srv := &http.Server{
			Handler:           in,
			ReadHeaderTimeout: 5 * time.Second,
			IdleTimeout:       2 * time.Minute,
			BaseContext:       func(net.Listener) context.Context { return reqCtx },
		}
		servers[i] = srv
		ln := f.listeners[i]
		f.logger.Info("instance started",
			"instance", in.id, "service", in.service, "address", ln.Addr().String(),
			"latency", in.latency, "fail_rate", in.failRate, "seed", int64(in.seed), "users_url", in.usersURL)
		wg.Go(func() {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("serving %s on %s: %w", in.id, ln.Addr(), err)
			}
		})
	}

	var err error
	select {
	case <-ctx.Done():
		f.logger.Info("shutting down", "instances", len(servers))
	case err = <-errc:
	}
	cancelRequests()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	for _, srv := range servers {
		if serr := srv.Shutdown(sctx); serr != nil {
			srv.Close()
			err = errors.Join(err, fmt.Errorf("shutting down: %w", serr))
		}
	}
	wg.Wait()
	f.client.CloseIdleConnections()
	return err
}
