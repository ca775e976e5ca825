package proxy

import (
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/discovery"
	"github.com/meshgate/meshgate/proxy/balancer"
)

// upstream is a service as one table sees it: its instances from the
// latest snapshot, the balancer built over them and the transport that
// pools connections to them.
type upstream struct {
	name      string
	cfg       config.Service
	transport *http.Transport // upgrades, 100-continue and h2c
	h1        *h1Settings     // everything else over HTTP/1.1
	endpoints []*endpoint     // balanced to
	excluded  []*endpoint     // critical instances, kept for their state
	balancer  balancer.Balancer
	res       *serviceState // retry policy, budget, outliers, bulkhead
}

// endpoint is one instance with the state that outlives tables.
type endpoint struct {
	inst  *discovery.Instance
	state *endpointState
	res   *instanceRes // breaker and ejection record
}

// endpointState is the per-instance state kept across config reloads and
// discovery changes (health flaps included) while the instance stays at
// the same address: requests in flight now, and the totals shown on
// /admin/instances.
type endpointState struct {
	hostPort string   // the address pool connects to
	pool     connPool // idle HTTP/1.1 connections to the instance
	inFlight atomic.Int64
	requests atomic.Uint64
	failures atomic.Uint64
}

// pick chooses an endpoint for r, or nil when none is available.
func (u *upstream) pick(r *http.Request) *endpoint {
	if len(u.endpoints) == 0 {
		return nil
	}
	i := u.balancer.Pick(r, nil)
	if i < 0 {
		return nil
	}
	return u.endpoints[i]
}

// transportKey holds the settings a transport is built from; a reload that
// leaves them unchanged keeps the transport and its warm connections.
type transportKey struct {
	protocol       string
	connect        config.Duration
	responseHeader config.Duration
	idleConn       config.Duration
	maxIdle        int
}

// perTry is how long one attempt may wait for its response headers: the
// retry policy's per-try timeout, else the service's response_header.
func perTry(s config.Service) config.Duration {
	if s.Retry.PerTryTimeout > 0 {
		return s.Retry.PerTryTimeout
	}
	return s.Timeouts.ResponseHeader
}

func keyOf(s config.Service) transportKey {
	return transportKey{
		protocol:       s.Protocol,
		connect:        s.Timeouts.Connect,
		responseHeader: perTry(s),
		idleConn:       s.Timeouts.IdleConn,
		maxIdle:        s.MaxIdleConnsPerInstance,
	}
}

// newH1Settings returns the HTTP/1.1 client settings of a service.
func newH1Settings(k transportKey) *h1Settings {
	return &h1Settings{
		dialer:         &net.Dialer{Timeout: k.connect.D(), KeepAlive: 30 * time.Second},
		responseHeader: k.responseHeader.D(),
		idleConn:       k.idleConn.D(),
		maxIdle:        k.maxIdle,
	}
}

// newTransport builds the pooled transport of a service: HTTP/1.1 with
// keep-alive, or cleartext HTTP/2 (h2c, prior knowledge) for gRPC.
func newTransport(k transportKey) *http.Transport {
	dialer := &net.Dialer{Timeout: k.connect.D(), KeepAlive: 30 * time.Second}
	t := &http.Transport{
		Proxy:                  nil, // never honour HTTP_PROXY between sidecars
		DialContext:            dialer.DialContext,
		MaxIdleConns:           0, // bounded per host below
		MaxIdleConnsPerHost:    k.maxIdle,
		IdleConnTimeout:        k.idleConn.D(),
		ResponseHeaderTimeout:  k.responseHeader.D(),
		ExpectContinueTimeout:  time.Second,
		DisableCompression:     true, // pass encodings through untouched
		MaxResponseHeaderBytes: 1 << 20,
		WriteBufferSize:        32 << 10,
		ReadBufferSize:         32 << 10,
	}
	if k.protocol == "h2c" {
		var p http.Protocols
		p.SetUnencryptedHTTP2(true)
		t.Protocols = &p
		t.HTTP2 = &http.HTTP2Config{MaxReceiveBufferPerStream: 1 << 20}
	} else {
		var p http.Protocols
		p.SetHTTP1(true)
		t.Protocols = &p
	}
	return t
}
