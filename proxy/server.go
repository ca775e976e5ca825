package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/resilience"
)

// Server runs the traffic listeners and the admin listener of one
// configuration, with the hardening limits of its server section.
type Server struct {
	log     *slog.Logger
	traffic []*listener
	admin   *listener
	wg      sync.WaitGroup
	errc    chan error
}

type listener struct {
	name string
	srv  *http.Server
	ln   net.Listener
	tls  bool
}

// Addrs returns the bound traffic addresses by listener name, for tests and
// logs (useful when a config asks for port 0).
func (s *Server) Addrs() map[string]string {
	m := make(map[string]string, len(s.traffic))
	for _, l := range s.traffic {
		m[l.name] = l.ln.Addr().String()
	}
	return m
}

// AdminAddr returns the bound admin address, or "" when it is off.
func (s *Server) AdminAddr() string {
	if s.admin == nil {
		return ""
	}
	return s.admin.ln.Addr().String()
}

// Listen binds every listener of cfg; nothing is served until Serve. An
// address already in use fails here, before any traffic is accepted.
func Listen(cfg *config.Config, traffic, admin http.Handler, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.Default()
	}
	s := &Server{log: log, errc: make(chan error, len(cfg.Listeners)+1)}
	errorLog := slog.NewLogLogger(log.Handler(), slog.LevelDebug)
	for _, lc := range cfg.Listeners {
		srv := &http.Server{
			Handler:           listenerLimit(lc.MaxConcurrentRequests, traffic),
			ReadHeaderTimeout: cfg.Server.ReadHeaderTimeout.D(),
			IdleTimeout:       cfg.Server.IdleTimeout.D(),
			MaxHeaderBytes:    int(cfg.Server.MaxHeaderBytes),
			ErrorLog:          errorLog,
		}
		var p http.Protocols
		p.SetHTTP1(true)
		if lc.TLS != nil {
			cert, err := tls.LoadX509KeyPair(lc.TLS.CertFile, lc.TLS.KeyFile)
			if err != nil {
				s.closeAll()
				return nil, fmt.Errorf("listener %q: loading TLS certificate: %w", lc.Name, err)
			}
			srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
			p.SetHTTP2(true)
		}
		if lc.H2C {
			p.SetUnencryptedHTTP2(true)
		}
		srv.Protocols = &p
		ln, err := net.Listen("tcp", lc.Address)
		if err != nil {
			s.closeAll()
			return nil, fmt.Errorf("listener %q: %w", lc.Name, err)
		}
		s.traffic = append(s.traffic, &listener{name: lc.Name, srv: srv, ln: ln, tls: lc.TLS != nil})
	}
	if cfg.Admin.Address != "off" {
		ln, err := net.Listen("tcp", cfg.Admin.Address)
		if err != nil {
			s.closeAll()
			return nil, fmt.Errorf("admin listener: %w", err)
		}
		s.admin = &listener{name: "admin", ln: ln, srv: &http.Server{
			Handler:           admin,
			ReadHeaderTimeout: 5 * time.Second,
			IdleTimeout:       60 * time.Second,
			ErrorLog:          errorLog,
		}}
	}
	return s, nil
}

func (s *Server) closeAll() {
	for _, l := range s.traffic {
		l.ln.Close()
	}
	if s.admin != nil {
		s.admin.ln.Close()
	}
}

// Serve starts serving every listener in the background. Errors other than
// a normal shutdown arrive on Errors.
func (s *Server) Serve() {
	all := append([]*listener{}, s.traffic...)
	if s.admin != nil {
		all = append(all, s.admin)
	}
	for _, l := range all {
		s.log.Info("listening", "listener", l.name, "address", l.ln.Addr().String(), "tls", l.tls)
		s.wg.Add(1)
		go func(l *listener) {
			defer s.wg.Done()
			var err error
			if l.tls {
				err = l.srv.ServeTLS(l.ln, "", "")
			} else {
				err = l.srv.Serve(l.ln)
			}
			if err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.errc <- fmt.Errorf("listener %q: %w", l.name, err)
			}
		}(l)
	}
}

// Errors reports listeners that stopped for a reason other than shutdown.
func (s *Server) Errors() <-chan error { return s.errc }

// Shutdown stops the traffic listeners gracefully: they stop accepting,
// idle connections close, and in-flight requests may finish until ctx is
// done, when the rest are closed. Upgraded connections (WebSocket) are
// waited for through gw, those whose upstream has yet to agree included;
// upgrade requests that arrive after Shutdown began are refused. The admin
// listener stops last. It returns ctx's error when the grace period ran
// out.
func (s *Server) Shutdown(ctx context.Context, gw *Gateway) error {
	var wg sync.WaitGroup
	errs := make([]error, len(s.traffic)+1)
	for i, l := range s.traffic {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.srv.Shutdown(ctx); err != nil {
				l.srv.Close()
				errs[i] = fmt.Errorf("listener %q: %w", l.name, err)
			}
		}()
	}
	if gw != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := gw.WaitUpgraded(ctx); err != nil {
				errs[len(s.traffic)] = fmt.Errorf("upgraded connections: %w", err)
			}
		}()
	}
	wg.Wait()
	if s.admin != nil {
		actx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := s.admin.srv.Shutdown(actx); err != nil {
			s.admin.srv.Close()
		}
	}
	s.wg.Wait()
	return errors.Join(errs...)
}

// listenerLimit bounds the requests in flight on one listener: beyond max
// they are shed with 503 and Retry-After instead of queueing without
// bound. max ≤ 0 means no limit.
func listenerLimit(max int, next http.Handler) http.Handler {
	if max <= 0 {
		return next
	}
	l := resilience.NewLimiter(max)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !l.Acquire() {
			w.Header()["Retry-After"] = []string{"1"}
			writeError(w, http.StatusServiceUnavailable, msgOverloaded)
			return
		}
		defer l.Release()
		next.ServeHTTP(w, r)
	})
}
