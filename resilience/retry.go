// Package resilience decides how meshgate survives failing upstreams: which
// requests are retried and when ([RetryPolicy]), how many retries a service
// can take ([Budget]), which instances are skipped because they keep failing
// (per-instance [Breaker] on github.com/sony/gobreaker/v2, and passive
// ejection with [OutlierGroup]), and how many requests may be in flight at
// once ([Limiter]). [Event] describes these decisions for telemetry.
//
// The package decides; the proxy acts. Every type is built from the
// matching section of the configuration file (package config) and treats a
// zero field as that field's documented default, so it works on
// configurations that did not go through [config.Config.SetDefaults] too.
// Every type is safe for concurrent use, starts no goroutines, and keeps
// its state only in values the caller owns: budgets, outlier groups,
// breakers and ejection records live in the gateway's registry and outlive
// configuration reloads.
//
// The methods the proxy calls on every request, [Breaker.Open],
// [Outlier.Ejected] and [Limiter.Acquire], are lock-free.
package resilience

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/meshgate/meshgate/config"
)

// Defaults of config.Retry, applied by [NewRetryPolicy] to fields left at
// their zero value.
const (
	// DefaultAttempts is the number of tries, the first included.
	DefaultAttempts = 3
	// DefaultBackoffBase is the first retry's back-off cap.
	DefaultBackoffBase = 25 * time.Millisecond
	// DefaultBackoffMax caps every back-off.
	DefaultBackoffMax = 250 * time.Millisecond
	// DefaultRetryAfterMax is the longest Retry-After honoured.
	DefaultRetryAfterMax = time.Second
	// DefaultReplayLimit is the largest request body buffered for replay.
	DefaultReplayLimit = 64 << 10
	// DefaultPerTryTimeout bounds one try when neither the retry policy
	// nor the service's response-header timeout says otherwise; it is the
	// default of a service's timeouts.response_header.
	DefaultPerTryTimeout = 30 * time.Second
)

// HeaderIdempotencyKey is the request header that makes any request
// eligible for retries: the client promises that the server deduplicates
// requests carrying the same key (draft-ietf-httpapi-idempotency-key-header).
const HeaderIdempotencyKey = "Idempotency-Key"

// RetryPolicy is a service's retry policy, compiled from config.Retry: how
// many tries, which outcomes are retried, how long to back off, and how
// much of a request body may be buffered for replay. It is immutable and
// safe for concurrent use; build a new one on reload.
//
// Its hooks have go-retryablehttp's shapes: [RetryPolicy.CheckRetry] is a
// [retryablehttp.CheckRetry], and the back-off is computed by a
// [retryablehttp.Backoff] (exponential with full jitter) once a
// Retry-After header has been looked at. meshgate nevertheless runs its
// own attempt loop instead of retryablehttp.Client: that client sends
// every try to the same URL and buffers the whole request body up front,
// while meshgate picks another instance for each try (skipping the ones
// already tried, open breakers and ejected instances), buffers only bodies
// up to [RetryPolicy.ReplayLimit], streams the rest, and must stop
// retrying once a response byte has reached the client.
type RetryPolicy struct {
	attempts      int
	perTry        time.Duration
	replayLimit   int64
	base, max     time.Duration
	retryAfterMax time.Duration
	statuses      statusSet
	now           func() time.Time
	int64n        func(n int64) int64
	backoff       retryablehttp.Backoff
}

// Compile-time checks that the hooks keep go-retryablehttp's shapes.
func _(p *RetryPolicy) {
	var _ retryablehttp.CheckRetry = p.CheckRetry
	var _ retryablehttp.Backoff = p.jitterBackoff
}

// NewRetryPolicy compiles cfg into a policy. responseHeaderTimeout is the
// service's timeouts.response_header, the per-try timeout when cfg sets
// none. Zero fields take their documented defaults (see the Default
// constants; nil statuses means 502, 503 and 504, which say that the
// instance could not process the request or not in time); a back-off
// maximum below the base is raised to the base. A negative ReplayLimit or
// RetryAfterMax stands for an explicit zero: no body is replayed, and any
// Retry-After ends the retries.
func NewRetryPolicy(cfg config.Retry, responseHeaderTimeout time.Duration) *RetryPolicy {
	return NewRetryPolicyClock(cfg, responseHeaderTimeout, nil, nil)
}

// NewRetryPolicyClock is [NewRetryPolicy] with the clock used to read
// Retry-After dates and the random source of the back-off jitter injected,
// for tests. int64n(n) must return a number in [0, n) and be safe for
// concurrent use. Nil arguments mean time.Now and math/rand/v2's Int64N.
func NewRetryPolicyClock(cfg config.Retry, responseHeaderTimeout time.Duration, now func() time.Time, int64n func(n int64) int64) *RetryPolicy {
	if now == nil {
		now = time.Now
	}
	if int64n == nil {
		int64n = rand.Int64N
	}
	p := &RetryPolicy{
		attempts:      cfg.Attempts,
		perTry:        cfg.PerTryTimeout.D(),
		replayLimit:   int64(cfg.ReplayLimit),
		base:          cfg.BackoffBase.D(),
		max:           cfg.BackoffMax.D(),
		retryAfterMax: cfg.RetryAfterMax.D(),
		now:           now,
		int64n:        int64n,
	}
	p.backoff = p.jitterBackoff
	if p.attempts <= 0 {
		p.attempts = DefaultAttempts
	}
	if p.perTry <= 0 {
		p.perTry = responseHeaderTimeout
	}
	if p.perTry <= 0 {
		p.perTry = DefaultPerTryTimeout
	}
	switch {
	case p.replayLimit == 0:
		p.replayLimit = DefaultReplayLimit
	case p.replayLimit < 0: // an explicit zero: no body is replayed
		p.replayLimit = 0
	}
	if p.base <= 0 {
		p.base = DefaultBackoffBase
	}
	if p.max <= 0 {
		p.max = DefaultBackoffMax
	}
	p.max = max(p.max, p.base)
	switch {
	case p.retryAfterMax == 0:
		p.retryAfterMax = DefaultRetryAfterMax
	case p.retryAfterMax < 0: // an explicit zero: any Retry-After stops retries
		p.retryAfterMax = 0
	}
	for _, s := range cfg.Statuses {
		p.statuses.add(s)
	}
	if cfg.Statuses == nil {
		// Unset: the defaults. An empty list, written as [], retries no
		// status (connection failures still are).
		p.statuses.add(http.StatusBadGateway)
		p.statuses.add(http.StatusServiceUnavailable)
		p.statuses.add(http.StatusGatewayTimeout)
	}
	return p
}

// Attempts is the total number of tries of a request, the first included;
// at least 1, and 1 means no retries.
func (p *RetryPolicy) Attempts() int { return p.attempts }

// PerTryTimeout bounds one try up to the response headers: the policy's
// per_try_timeout, else the service's response-header timeout, else 30s.
// Past it the try counts as failed and may be retried.
func (p *RetryPolicy) PerTryTimeout() time.Duration { return p.perTry }

// ReplayLimit is the largest request body, in bytes, that may be buffered
// so that it can be sent again; a request with a larger (or unknown
// length) body is streamed and not retried once its body was sent.
func (p *RetryPolicy) ReplayLimit() int64 { return p.replayLimit }

// Eligible reports whether a request may be retried at all: the policy
// allows more than one try, and the method is idempotent (GET, HEAD,
// OPTIONS, TRACE, PUT, DELETE; RFC 9110 §9.2.2), or the request carries a
// non-empty Idempotency-Key header, or the route opts in with
// retry_non_idempotent (routeOptIn). Methods are case-sensitive (RFC 9110
// §9.1); an empty method is GET, as in net/http. Whether a particular
// failure is retried is [RetryPolicy.CheckRetry]'s decision.
func (p *RetryPolicy) Eligible(method string, h http.Header, routeOptIn bool) bool {
	if p.attempts <= 1 {
		return false
	}
	if routeOptIn || idempotent(method) {
		return true
	}
	return h.Get(HeaderIdempotencyKey) != ""
}

// idempotent reports whether method is idempotent by definition.
func idempotent(method string) bool {
	switch method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace,
		http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// CheckRetry decides whether a try's outcome is worth another try, with
// the signature of go-retryablehttp's [retryablehttp.CheckRetry]. ctx is
// the request's context, not the try's: a per-try deadline must not stop
// the retries.
//
//   - When ctx is done it returns false and ctx.Err(): the client left or
//     the route's timeout passed.
//   - With an error (and whatever resp) it returns true for failures that
//     happened before any response and that another instance may not
//     have: connect failures (a *net.OpError, including "dial" ones,
//     connection refused), connections reset or closed (io.EOF,
//     io.ErrUnexpectedEOF, ECONNRESET, EPIPE) and timeouts (a net.Error
//     whose Timeout is true, or context.DeadlineExceeded of the try's own
//     context). Certificate errors, a try's context canceled while ctx is
//     not, and any other error give false.
//   - With a response it returns true when the status is one of the
//     policy's statuses (by default 502, 503 and 504).
//
// The returned error is non-nil only when ctx is done.
func (p *RetryPolicy) CheckRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if cerr := ctx.Err(); cerr != nil {
		return false, cerr
	}
	if err != nil {
		return retryableError(err), nil
	}
	if resp == nil {
		return false, nil
	}
	return p.statuses.has(resp.StatusCode), nil
}

// RetryableStatus reports whether the policy retries a response with the
// given status.
func (p *RetryPolicy) RetryableStatus(status int) bool { return p.statuses.has(status) }

// retryableError reports whether a try that failed with err before a
// response may be tried again elsewhere.
func retryableError(err error) bool {
	// Checked first, as they arrive wrapped in a *net.OpError too: another
	// instance presents the same certificate, or the same trust store
	// rejects it; retrying only adds load (go-retryablehttp agrees).
	var (
		verr *tls.CertificateVerificationError
		uerr x509.UnknownAuthorityError
		herr x509.HostnameError
		ierr x509.CertificateInvalidError
	)
	if errors.As(err, &verr) || errors.As(err, &uerr) || errors.As(err, &herr) || errors.As(err, &ierr) {
		return false
	}
	// The try's own context was canceled while the request's is live:
	// someone (a hedged request that won, say) chose to end this try.
	if errors.Is(err, context.Canceled) {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var nerr net.Error
	if errors.As(err, &nerr) && nerr.Timeout() {
		return true
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	for _, errno := range []syscall.Errno{
		syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.ECONNABORTED, syscall.EPIPE,
		syscall.ETIMEDOUT, syscall.EHOSTUNREACH, syscall.ENETUNREACH,
	} {
		if errors.Is(err, errno) {
			return true
		}
	}
	var operr *net.OpError
	return errors.As(err, &operr)
}

// Backoff returns how long to wait before the retry numbered attempt (1 is
// the first retry) and whether to retry at all.
//
// When resp carries a Retry-After header (delay-seconds or an HTTP date,
// RFC 9110 §10.2.3), whatever its status, the wait is what it asks for; if
// that is longer than the policy's retry_after_max, ok is false and the
// request must not be retried (the instance's answer goes to the client).
// A date in the past means no wait. An unparsable header is ignored.
//
// Otherwise the wait is drawn uniformly from [0, cap) ("full jitter"),
// where cap is backoff_base for the first retry and doubles with every
// further retry up to backoff_max. resp may be nil.
func (p *RetryPolicy) Backoff(attempt int, resp *http.Response) (wait time.Duration, ok bool) {
	if resp != nil {
		if v := resp.Header.Get("Retry-After"); v != "" {
			if d, parsed := parseRetryAfter(v, p.now()); parsed {
				if d > p.retryAfterMax {
					return 0, false
				}
				return d, true
			}
		}
	}
	// retryablehttp numbers retries from 0.
	return p.backoff(p.base, p.max, max(attempt, 1)-1, nil), true
}

// BackoffCap is the upper bound of the jittered back-off before the retry
// numbered attempt (1 is the first retry): backoff_base doubled attempt-1
// times, at most backoff_max.
func (p *RetryPolicy) BackoffCap(attempt int) time.Duration {
	return backoffCap(p.base, p.max, max(attempt, 1)-1)
}

// jitterBackoff is an exponential back-off with full jitter as a
// retryablehttp.Backoff: a random duration in [0, base·2^attemptNum) with
// the bound capped at limit, attemptNum counting retries from 0. Retry-After is handled by
// Backoff, so resp is not looked at.
func (p *RetryPolicy) jitterBackoff(base, limit time.Duration, attemptNum int, _ *http.Response) time.Duration {
	c := backoffCap(base, limit, attemptNum)
	if c <= 0 {
		return 0
	}
	return time.Duration(p.int64n(int64(c)))
}

// backoffCap is base·2^n, at most limit, without overflowing.
func backoffCap(base, limit time.Duration, n int) time.Duration {
	if base <= 0 {
		return 0
	}
	c := min(base, limit)
	for range n {
		if c >= limit/2 {
			return limit
		}
		c *= 2
	}
	return c
}

// maxDuration stands for a Retry-After too large to represent.
const maxDuration = time.Duration(1<<63 - 1)

// parseRetryAfter parses a Retry-After value, delay-seconds or an HTTP
// date (any of the three formats of RFC 9110 §5.6.7), into the wait it
// asks for at now. A delay too large for a time.Duration is reported as
// the largest one; a date in the past as 0. ok is false when v is neither
// form. go-retryablehttp has the same parser, but unexported and applied
// only to 429 and 503 answers.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if allDigits(v) {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n > int64(maxDuration/time.Second) {
			return maxDuration, true // only a range error is possible
		}
		return time.Duration(n) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}

// allDigits reports whether s is a non-empty run of ASCII digits.
func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// statusSet is a set of HTTP status codes 0-639.
type statusSet [10]uint64

func (s *statusSet) add(code int) {
	if code >= 0 && code < len(s)*64 {
		s[code/64] |= 1 << (code % 64)
	}
}

func (s *statusSet) has(code int) bool {
	return code >= 0 && code < len(s)*64 && s[code/64]&(1<<(code%64)) != 0
}
