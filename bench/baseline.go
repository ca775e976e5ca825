package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// backendBody is the fixed response of every benchmark backend: a small JSON
// document of exactly 100 bytes (newline included), the size of a typical
// API reply, so the benchmark measures per-request proxy overhead rather
// than copying.
const backendBody = `{"status":"ok","service":"bench","message":"hello from the meshgate benchmark backend","n":1234567}` + "\n"

// backendHandler answers every request with backendBody. The headers are set
// through the map directly to keep the backend as cheap as possible: its CPU
// time is part of every target's measurement.
func backendHandler() http.Handler {
	body := []byte(backendBody)
	length := []string{strconv.Itoa(len(body))}
	ctype := []string{"application/json"}
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h["Content-Type"] = ctype
		h["Content-Length"] = length
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(body)
	})
}

// copyBuffers backs bufferPool.
var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// bufferPool lends ReverseProxy its body copy buffers. Without one it
// allocates 32 KiB per request, a garbage-collector cost that Caddy and
// meshgate (which pool theirs) do not pay and a fair floor should not either.
type bufferPool struct{}

var _ httputil.BufferPool = bufferPool{}

func (bufferPool) Get() []byte  { return *copyBuffers.Get().(*[]byte) }
func (bufferPool) Put(b []byte) { copyBuffers.Put(&b) }

// newBaselineProxy is the "gobaseline" target: the smallest fair Go reverse
// proxy, httputil.ReverseProxy with Rewrite (not the deprecated Director),
// round robin over upstreams, pooled copy buffers and a transport whose idle
// pool is large enough (MaxIdleConnsPerHost 1024) that no request has to
// dial under load. It adds X-Forwarded-* like the other proxies do.
func newBaselineProxy(upstreams []*url.URL, errorLog *log.Logger) *httputil.ReverseProxy {
	var next atomic.Uint64
	transport := &http.Transport{
		Proxy: nil, // never an environment proxy: the upstreams are on loopback
		DialContext: (&net.Dialer{
			Timeout:   2 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConnsPerHost: 1024,
		IdleConnTimeout:     90 * time.Second,
	}
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			u := upstreams[(next.Add(1)-1)%uint64(len(upstreams))]
			pr.SetURL(u)
			pr.SetXForwarded()
		},
		Transport:  transport,
		BufferPool: bufferPool{},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			// wrk closes its connections with requests in flight when a
			// run ends; those are not errors worth a log line each.
			if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
				w.WriteHeader(statusClientClosedRequest)
				return
			}
			errorLog.Printf("gobaseline: %s %s: %v", r.Method, r.URL.Path, err)
			w.WriteHeader(http.StatusBadGateway)
		},
	}
}

// statusClientClosedRequest is nginx's 499: the client went away first.
const statusClientClosedRequest = 499

// parseUpstreams turns "host:port,host:port" into http URLs.
func parseUpstreams(list string) ([]*url.URL, error) {
	var out []*url.URL
	for _, hp := range strings.Split(list, ",") {
		hp = strings.TrimSpace(hp)
		if hp == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(hp); err != nil {
			return nil, fmt.Errorf("parsing upstream %q: %w", hp, err)
		}
		out = append(out, &url.URL{Scheme: "http", Host: hp})
	}
	if len(out) == 0 {
		return nil, errors.New("parsing upstreams: none given")
	}
	return out, nil
}

// serve runs h on addr until ctx is done. It is the body of the hidden
// -serve-backend and -serve-baseline modes, in which the harness re-executes
// itself so that backends and the baseline proxy are separate processes with
// their own CPU accounting and pinning.
func serve(ctx context.Context, addr string, h http.Handler, errorLog *log.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", addr, err)
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          errorLog,
	}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	err = srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		<-stopped // Shutdown returned: idle connections are closed
		return nil
	}
	return fmt.Errorf("serving on %s: %w", addr, err)
}
