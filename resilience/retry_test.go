package resilience

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/meshgate/meshgate/config"
)

func TestNewRetryPolicyDefaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		cfg         config.Retry
		rht         time.Duration
		attempts    int
		perTry      time.Duration
		replayLimit int64
		caps        []time.Duration // BackoffCap(1), BackoffCap(2), ...
	}{
		{
			name:        "zero config takes the documented defaults",
			rht:         5 * time.Second,
			attempts:    3,
			perTry:      5 * time.Second,
			replayLimit: 64 << 10,
			caps:        []time.Duration{25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond, 250 * time.Millisecond, 250 * time.Millisecond},
		},
		{
			name:        "no response-header timeout either: 30s",
			attempts:    3,
			perTry:      30 * time.Second,
			replayLimit: 64 << 10,
		},
		{
			name: "explicit values win",
			cfg: config.Retry{
				Attempts:      1,
				PerTryTimeout: config.Duration(time.Second),
				BackoffBase:   config.Duration(10 * time.Millisecond),
				BackoffMax:    config.Duration(30 * time.Millisecond),
				ReplayLimit:   config.Size(1 << 20),
			},
			rht:         5 * time.Second,
			attempts:    1,
			perTry:      time.Second,
			replayLimit: 1 << 20,
			caps:        []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 30 * time.Millisecond, 30 * time.Millisecond},
		},
		{
			name:        "a maximum below the base is raised to the base",
			cfg:         config.Retry{BackoffBase: config.Duration(time.Second), BackoffMax: config.Duration(time.Millisecond)},
			attempts:    3,
			perTry:      30 * time.Second,
			replayLimit: 64 << 10,
			caps:        []time.Duration{time.Second, time.Second},
		},
		{
			name:        "negative attempts are the default; a negative replay limit is an explicit zero",
			cfg:         config.Retry{Attempts: -2, ReplayLimit: -1},
			attempts:    3,
			perTry:      30 * time.Second,
			replayLimit: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := NewRetryPolicy(tt.cfg, tt.rht)
			if got := p.Attempts(); got != tt.attempts {
				t.Errorf("Attempts() = %d, want %d", got, tt.attempts)
			}
			if got := p.PerTryTimeout(); got != tt.perTry {
				t.Errorf("PerTryTimeout() = %v, want %v", got, tt.perTry)
			}
			if got := p.ReplayLimit(); got != tt.replayLimit {
				t.Errorf("ReplayLimit() = %d, want %d", got, tt.replayLimit)
			}
			for i, want := range tt.caps {
				if got := p.BackoffCap(i + 1); got != want {
					t.Errorf("BackoffCap(%d) = %v, want %v", i+1, got, want)
				}
			}
		})
	}
}

func TestEligible(t *testing.T) {
	t.Parallel()
	withKey := http.Header{"Idempotency-Key": {"8e03978e-40d5-43e8-bc93-6894a57f9324"}}
	emptyKey := http.Header{"Idempotency-Key": {""}}
	tests := []struct {
		name     string
		attempts int
		method   string
		h        http.Header
		optIn    bool
		want     bool
	}{
		{name: "GET", method: http.MethodGet, want: true},
		{name: "HEAD", method: http.MethodHead, want: true},
		{name: "OPTIONS", method: http.MethodOptions, want: true},
		{name: "TRACE", method: http.MethodTrace, want: true},
		{name: "PUT", method: http.MethodPut, want: true},
		{name: "DELETE", method: http.MethodDelete, want: true},
		{name: "empty method is GET", method: "", want: true},
		{name: "POST", method: http.MethodPost, want: false},
		{name: "PATCH", method: http.MethodPatch, want: false},
		{name: "CONNECT", method: http.MethodConnect, want: false},
		{name: "methods are case-sensitive", method: "get", want: false},
		{name: "POST with Idempotency-Key", method: http.MethodPost, h: withKey, want: true},
		{name: "PATCH with Idempotency-Key", method: http.MethodPatch, h: withKey, want: true},
		{name: "POST with an empty Idempotency-Key", method: http.MethodPost, h: emptyKey, want: false},
		{name: "POST on an opted-in route", method: http.MethodPost, optIn: true, want: true},
		{name: "PATCH on an opted-in route", method: http.MethodPatch, optIn: true, want: true},
		{name: "GET when the policy allows one try", attempts: 1, method: http.MethodGet, want: false},
		{name: "opted-in POST when the policy allows one try", attempts: 1, method: http.MethodPost, optIn: true, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := NewRetryPolicy(config.Retry{Attempts: tt.attempts}, 0)
			h := tt.h
			if h == nil {
				h = http.Header{}
			}
			if got := p.Eligible(tt.method, h, tt.optIn); got != tt.want {
				t.Errorf("Eligible(%q, %v, %v) = %v, want %v", tt.method, h, tt.optIn, got, tt.want)
			}
		})
	}
}

// timeoutError is a net.Error that timed out, like net/http's
// "timeout awaiting response headers".
type timeoutError struct{ timeout bool }

func (e timeoutError) Error() string   { return "i/o timeout" }
func (e timeoutError) Timeout() bool   { return e.timeout }
func (e timeoutError) Temporary() bool { return e.timeout }

func TestCheckRetry(t *testing.T) {
	t.Parallel()
	live := context.Background()
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Unix(0, 0))
	defer cancel2()

	dialRefused := &net.OpError{Op: "dial", Net: "tcp", Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1},
		Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}}
	readReset := &net.OpError{Op: "read", Net: "tcp", Err: &os.SyscallError{Syscall: "read", Err: syscall.ECONNRESET}}
	resp := func(status int) *http.Response { return &http.Response{StatusCode: status, Header: http.Header{}} }

	tests := []struct {
		name    string
		cfg     config.Retry
		ctx     context.Context
		resp    *http.Response
		err     error
		want    bool
		wantErr error
	}{
		{name: "200", ctx: live, resp: resp(200), want: false},
		{name: "404", ctx: live, resp: resp(404), want: false},
		{name: "429 is not a default status", ctx: live, resp: resp(429), want: false},
		{name: "500 is not a default status", ctx: live, resp: resp(500), want: false},
		{name: "502", ctx: live, resp: resp(502), want: true},
		{name: "503", ctx: live, resp: resp(503), want: true},
		{name: "504", ctx: live, resp: resp(504), want: true},
		{name: "configured 500", cfg: config.Retry{Statuses: []int{500, 429}}, ctx: live, resp: resp(500), want: true},
		{name: "configured 429", cfg: config.Retry{Statuses: []int{500, 429}}, ctx: live, resp: resp(429), want: true},
		{name: "503 not among configured statuses", cfg: config.Retry{Statuses: []int{500}}, ctx: live, resp: resp(503), want: false},
		{name: "out-of-range status", cfg: config.Retry{Statuses: []int{-1, 1000}}, ctx: live, resp: resp(1000), want: false},
		{name: "neither response nor error", ctx: live, want: false},

		{name: "dial refused", ctx: live, err: dialRefused, want: true},
		{name: "dial refused inside url.Error", ctx: live, err: &url.Error{Op: "Get", URL: "http://x", Err: dialRefused}, want: true},
		{name: "dial: no such host", ctx: live, err: &net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: "x", IsNotFound: true}}, want: true},
		{name: "bare ECONNREFUSED", ctx: live, err: syscall.ECONNREFUSED, want: true},
		{name: "read reset", ctx: live, err: readReset, want: true},
		{name: "bare ECONNRESET", ctx: live, err: fmt.Errorf("reading head: %w", syscall.ECONNRESET), want: true},
		{name: "EPIPE writing the request", ctx: live, err: fmt.Errorf("writing: %w", syscall.EPIPE), want: true},
		{name: "io.EOF", ctx: live, err: io.EOF, want: true},
		{name: "wrapped io.ErrUnexpectedEOF", ctx: live, err: fmt.Errorf("stale: %w", io.ErrUnexpectedEOF), want: true},
		{name: "io.EOF inside url.Error", ctx: live, err: &url.Error{Op: "Get", URL: "http://x", Err: io.EOF}, want: true},
		{name: "net.Error timeout", ctx: live, err: timeoutError{timeout: true}, want: true},
		{name: "net.Error without timeout", ctx: live, err: timeoutError{timeout: false}, want: false},
		{name: "per-try deadline", ctx: live, err: context.DeadlineExceeded, want: true},
		{name: "wrapped per-try deadline", ctx: live, err: fmt.Errorf("try 1: %w", context.DeadlineExceeded), want: true},
		{name: "per-try context canceled, request live", ctx: live, err: context.Canceled, want: false},
		{name: "certificate not trusted", ctx: live,
			err: &url.Error{Op: "Get", URL: "https://x", Err: &tls.CertificateVerificationError{Err: errors.New("unknown authority")}}, want: false},
		{name: "unknown error", ctx: live, err: errors.New("boom"), want: false},
		{name: "error wins over response", ctx: live, resp: resp(200), err: io.EOF, want: true},

		{name: "request canceled, with error", ctx: canceled, err: io.EOF, want: false, wantErr: context.Canceled},
		{name: "request canceled, with retryable status", ctx: canceled, resp: resp(503), want: false, wantErr: context.Canceled},
		{name: "request deadline passed", ctx: expired, err: context.DeadlineExceeded, want: false, wantErr: context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := NewRetryPolicy(tt.cfg, 0)
			got, err := p.CheckRetry(tt.ctx, tt.resp, tt.err)
			if got != tt.want || !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Errorf("CheckRetry(%v, %v) = %v, %v; want %v, %v", tt.resp != nil, tt.err, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// TestCheckRetryRealErrors checks the errors net and net/http really
// return: a refused dial, and a per-try deadline while the request's own
// context is live.
func TestCheckRetryRealErrors(t *testing.T) {
	t.Parallel()
	p := NewRetryPolicy(config.Retry{}, 0)
	ctx := context.Background()

	t.Run("refused dial", func(t *testing.T) {
		t.Parallel()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		_, err = (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", addr)
		if err == nil {
			t.Skip("something listens on the closed port")
		}
		if ok, cerr := p.CheckRetry(ctx, nil, err); !ok || cerr != nil {
			t.Errorf("CheckRetry(%v) = %v, %v; want true, nil", err, ok, cerr)
		}
	})

	t.Run("per-try timeout", func(t *testing.T) {
		t.Parallel()
		release := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}))
		defer srv.Close()
		defer close(release)
		tr := &http.Transport{}
		defer tr.CloseIdleConnections()

		tryCtx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		defer cancel()
		req, err := http.NewRequestWithContext(tryCtx, http.MethodGet, srv.URL, nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := tr.RoundTrip(req)
		if err == nil {
			res.Body.Close()
			t.Fatal("RoundTrip succeeded, want a deadline error")
		}
		// The parent context is passed, as the proxy does.
		if ok, cerr := p.CheckRetry(ctx, nil, err); !ok || cerr != nil {
			t.Errorf("CheckRetry(parent, %v) = %v, %v; want true, nil", err, ok, cerr)
		}
		// Passing the try's own context would stop the retries.
		if ok, cerr := p.CheckRetry(tryCtx, nil, err); ok || !errors.Is(cerr, context.DeadlineExceeded) {
			t.Errorf("CheckRetry(try, %v) = %v, %v; want false, deadline exceeded", err, ok, cerr)
		}
	})
}

func TestBackoffBounds(t *testing.T) {
	t.Parallel()
	base, limit := 10*time.Millisecond, 80*time.Millisecond
	cfg := config.Retry{BackoffBase: config.Duration(base), BackoffMax: config.Duration(limit)}
	wantCaps := []time.Duration{10, 20, 40, 80, 80, 80, 80, 80}
	for i := range wantCaps {
		wantCaps[i] *= time.Millisecond
	}

	t.Run("draws stay in [0, cap) and spread over it", func(t *testing.T) {
		t.Parallel()
		rng := rand.New(rand.NewPCG(1, 2))
		p := NewRetryPolicyClock(cfg, 0, nil, rng.Int64N)
		for i, c := range wantCaps {
			attempt := i + 1
			if got := p.BackoffCap(attempt); got != c {
				t.Fatalf("BackoffCap(%d) = %v, want %v", attempt, got, c)
			}
			var lo, hi time.Duration = c, 0
			for range 2000 {
				w, ok := p.Backoff(attempt, nil)
				if !ok || w < 0 || w >= c {
					t.Fatalf("Backoff(%d) = %v, %v; want ok and in [0, %v)", attempt, w, ok, c)
				}
				lo, hi = min(lo, w), max(hi, w)
			}
			// Full jitter: the draws cover most of the range.
			if lo > c/10 || hi < c*9/10 {
				t.Errorf("attempt %d: draws in [%v, %v], want most of [0, %v)", attempt, lo, hi, c)
			}
		}
	})

	t.Run("the largest draw is just below the cap", func(t *testing.T) {
		t.Parallel()
		p := NewRetryPolicyClock(cfg, 0, nil, func(n int64) int64 { return n - 1 })
		for i, c := range wantCaps {
			if w, ok := p.Backoff(i+1, nil); !ok || w != c-1 {
				t.Errorf("Backoff(%d) = %v, %v; want %v, true", i+1, w, ok, c-1)
			}
		}
	})

	t.Run("the default random source", func(t *testing.T) {
		t.Parallel()
		p := NewRetryPolicy(config.Retry{}, 0)
		for attempt := 1; attempt <= 10; attempt++ {
			c := p.BackoffCap(attempt)
			for range 500 {
				if w, ok := p.Backoff(attempt, nil); !ok || w < 0 || w >= c {
					t.Fatalf("Backoff(%d) = %v, %v; want ok and in [0, %v)", attempt, w, ok, c)
				}
			}
		}
	})

	t.Run("attempt numbers out of range", func(t *testing.T) {
		t.Parallel()
		p := NewRetryPolicyClock(cfg, 0, nil, func(n int64) int64 { return n - 1 })
		for _, attempt := range []int{0, -5} {
			if w, _ := p.Backoff(attempt, nil); w != base-1 {
				t.Errorf("Backoff(%d) = %v, want the first retry's %v", attempt, w, base-1)
			}
		}
		for _, attempt := range []int{64, 1000, 1 << 30} {
			if w, _ := p.Backoff(attempt, nil); w != limit-1 {
				t.Errorf("Backoff(%d) = %v, want the saturated %v", attempt, w, limit-1)
			}
		}
	})
}

func TestBackoffRetryAfter(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	now := clock.Now()
	date := func(d time.Duration) string { return now.Add(d).Format(http.TimeFormat) }
	const jitter = -1 // want a jittered back-off, not the header's wait

	tests := []struct {
		name       string
		max        time.Duration // retry_after_max; 0: the default 1s
		status     int
		retryAfter []string
		want       time.Duration
		wantOK     bool
	}{
		{name: "no header", status: 503, want: jitter, wantOK: true},
		{name: "seconds", status: 503, retryAfter: []string{"1"}, want: time.Second, wantOK: true},
		{name: "zero seconds", status: 503, retryAfter: []string{"0"}, want: 0, wantOK: true},
		{name: "seconds with spaces", status: 503, retryAfter: []string{" 1 "}, want: time.Second, wantOK: true},
		{name: "seconds over the cap", status: 503, retryAfter: []string{"2"}, wantOK: false},
		{name: "seconds under a raised cap", max: 10 * time.Second, status: 503, retryAfter: []string{"7"}, want: 7 * time.Second, wantOK: true},
		{name: "seconds too large for a Duration", max: time.Hour, status: 503, retryAfter: []string{"99999999999999999999999"}, wantOK: false},
		{name: "honoured on any status", status: 502, retryAfter: []string{"1"}, want: time.Second, wantOK: true},
		{name: "honoured on 429", status: 429, retryAfter: []string{"1"}, want: time.Second, wantOK: true},
		{name: "IMF-fixdate", max: 10 * time.Second, status: 503, retryAfter: []string{date(5 * time.Second)}, want: 5 * time.Second, wantOK: true},
		{name: "RFC 850 date", max: 10 * time.Second, status: 503, retryAfter: []string{now.Add(3 * time.Second).Format(time.RFC850)}, want: 3 * time.Second, wantOK: true},
		{name: "asctime date", max: 10 * time.Second, status: 503, retryAfter: []string{now.Add(2 * time.Second).Format(time.ANSIC)}, want: 2 * time.Second, wantOK: true},
		{name: "date over the cap", status: 503, retryAfter: []string{date(time.Minute)}, wantOK: false},
		{name: "date in the past", status: 503, retryAfter: []string{date(-time.Hour)}, want: 0, wantOK: true},
		{name: "negative seconds are ignored", status: 503, retryAfter: []string{"-1"}, want: jitter, wantOK: true},
		{name: "fractions are ignored", status: 503, retryAfter: []string{"0.5"}, want: jitter, wantOK: true},
		{name: "garbage is ignored", status: 503, retryAfter: []string{"soon"}, want: jitter, wantOK: true},
		{name: "the first of several", status: 503, retryAfter: []string{"1", "120"}, want: time.Second, wantOK: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := config.Retry{RetryAfterMax: config.Duration(tt.max)}
			p := NewRetryPolicyClock(cfg, 0, clock.Now, func(n int64) int64 { return n - 1 })
			resp := &http.Response{StatusCode: tt.status, Header: http.Header{}}
			for _, v := range tt.retryAfter {
				resp.Header.Add("Retry-After", v)
			}
			want := tt.want
			if want == jitter {
				want = DefaultBackoffBase - 1
			}
			got, ok := p.Backoff(1, resp)
			if ok != tt.wantOK || (ok && got != want) {
				t.Errorf("Backoff(1, Retry-After %q) = %v, %v; want %v, %v", tt.retryAfter, got, ok, want, tt.wantOK)
			}
		})
	}
}

func FuzzParseRetryAfter(f *testing.F) {
	now := newFakeClock().Now()
	for _, s := range []string{"0", "120", "-1", "1.5", "", " 7 ", "99999999999999999999",
		now.Format(http.TimeFormat), now.Format(time.RFC850), now.Format(time.ANSIC), "Fri, 31 Dec 1999 23:59:59 GMT"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, ok := parseRetryAfter(s, now)
		if !ok {
			if d != 0 {
				t.Errorf("parseRetryAfter(%q) = %v, false; want 0 when not ok", s, d)
			}
			return
		}
		if d < 0 {
			t.Errorf("parseRetryAfter(%q) = %v, want ≥ 0", s, d)
		}
		if n, err := strconv.ParseInt(s, 10, 64); err == nil && n >= 0 && n < 1<<32 && d != time.Duration(n)*time.Second {
			t.Errorf("parseRetryAfter(%q) = %v, want %ds", s, d, n)
		}
	})
}
