package config

import (
	"strconv"
)

// This file validates what a service does when its calls fail: retry,
// circuit_breaker, outlier_detection and max_concurrent_requests.

func (v *validator) resilience(s *Service, p fpath) {
	v.retry(s, p)
	v.circuitBreaker(&s.CircuitBreaker, p.field("circuit_breaker"))
	v.outlierDetection(&s.OutlierDetection, p.field("outlier_detection"))
	v.notNegative(p.field("max_concurrent_requests"), s.MaxConcurrentRequests)
}

const wantRetryStatus = "want 408, 429 or a status from 500 to 599"

func (v *validator) retry(s *Service, sp fpath) {
	r := &s.Retry
	p := sp.field("retry")
	v.intRange(p.field("attempts"), r.Attempts, 1, MaxRetryAttempts, " (1 disables retries)")

	sts := p.field("statuses")
	first := make(map[int]int, len(r.Statuses))
	for i, st := range r.Statuses {
		switch j, dup := first[st]; {
		case !retryableStatus(st):
			v.addf(sts.index(i), "status %d cannot be retried; %s", st, wantRetryStatus)
		case dup:
			v.addf(sts.index(i), "duplicate status %d, already at %s; list each status once", st, sts.index(j))
		default:
			first[st] = i
		}
	}

	ptp := p.field("per_try_timeout")
	switch rh := s.Timeouts.ResponseHeader; {
	case v.defaulted(ptp) != "" && rh <= 0:
		// Copied from a bad timeouts.response_header, reported already.
	case v.defaulted(ptp) != "" && r.PerTryTimeout > MaxPerTryTimeout:
		v.addf(ptp, "%s, taken from %s, is longer than the %s a try may last; set per_try_timeout to at most %s",
			durText(r.PerTryTimeout), sp.field("timeouts").field("response_header"), durText(MaxPerTryTimeout), durText(MaxPerTryTimeout))
	default:
		v.positiveUpTo(ptp, r.PerTryTimeout, MaxPerTryTimeout)
	}

	bbp, bmp := p.field("backoff_base"), p.field("backoff_max")
	baseOK := v.positiveUpTo(bbp, r.BackoffBase, MaxRetryBackoff)
	switch {
	case r.BackoffMax > MaxRetryBackoff:
		v.addf(bmp, "%s is too long; want at most %s", durText(r.BackoffMax), durText(MaxRetryBackoff))
	case baseOK && r.BackoffMax < r.BackoffBase:
		v.addf(bmp, "%s%s must not be shorter than %s, which is %s%s; the back-off grows from backoff_base up to backoff_max",
			durText(r.BackoffMax), v.defaulted(bmp), bbp, durText(r.BackoffBase), v.defaulted(bbp))
	}
	v.durationRange(p.field("retry_after_max"), r.RetryAfterMax, 0, MaxRetryAfterMax)
	if r.ReplayLimit < 0 || r.ReplayLimit > MaxReplayLimit {
		v.addf(p.field("replay_limit"), "%s is out of range; want 0 to %s (0 retries only requests without a body)", sizeText(r.ReplayLimit), MaxReplayLimit)
	}

	bp := p.field("budget")
	if ratio := r.Budget.Ratio; !(ratio >= 0 && ratio <= 1) {
		v.addf(bp.field("ratio"), "%s is out of range; want 0 to 1, the share of requests that may be retried, such as %s",
			floatText(ratio), floatText(DefaultRetryBudgetRatio))
	}
	v.intRange(bp.field("min_per_second"), r.Budget.MinPerSecond, 0, MaxRetryBudgetMinPerSecond, "")
	v.durationRange(bp.field("window"), r.Budget.Window, MinRetryBudgetWindow, MaxRetryBudgetWindow)
}

// retryableStatus reports whether a response status may be retried:
// 408 Request Timeout, 429 Too Many Requests and the server errors.
func retryableStatus(st int) bool {
	return st == 408 || st == 429 || st >= 500 && st <= 599
}

func (v *validator) circuitBreaker(cb *CircuitBreaker, p fpath) {
	v.intRange(p.field("consecutive_failures"), cb.ConsecutiveFailures, 1, MaxBreakerConsecutiveFailures, "")
	if r := cb.FailureRatio; !(r > 0 && r <= 1) {
		v.addf(p.field("failure_ratio"), "%s is out of range; want more than 0 and at most 1, such as %s",
			floatText(r), floatText(DefaultBreakerFailureRatio))
	}
	v.intRange(p.field("min_requests"), cb.MinRequests, 1, MaxBreakerMinRequests, "")
	v.durationRange(p.field("window"), cb.Window, MinBreakerTime, MaxBreakerTime)
	v.durationRange(p.field("open_time"), cb.OpenTime, MinBreakerTime, MaxBreakerTime)
	v.intRange(p.field("half_open_requests"), cb.HalfOpenRequests, 1, MaxBreakerHalfOpenRequests, "")
}

func (v *validator) outlierDetection(od *OutlierDetection, p fpath) {
	v.intRange(p.field("consecutive_failures"), od.ConsecutiveFailures, 1, MaxOutlierConsecutiveFailures, "")
	bp, mp := p.field("base_ejection_time"), p.field("max_ejection_time")
	baseOK := od.BaseEjectionTime >= MinBaseEjectionTime && od.BaseEjectionTime <= MaxBaseEjectionTime
	if !baseOK {
		v.durationRange(bp, od.BaseEjectionTime, MinBaseEjectionTime, MaxBaseEjectionTime)
	}
	switch {
	case od.MaxEjectionTime > MaxMaxEjectionTime:
		v.addf(mp, "%s is too long; want at most %s", durText(od.MaxEjectionTime), durText(MaxMaxEjectionTime))
	case baseOK && od.MaxEjectionTime < od.BaseEjectionTime:
		v.addf(mp, "%s%s must not be shorter than %s, which is %s%s; ejections grow from base_ejection_time up to max_ejection_time",
			durText(od.MaxEjectionTime), v.defaulted(mp), bp, durText(od.BaseEjectionTime), v.defaulted(bp))
	}
	v.intRange(p.field("max_ejection_percent"), od.MaxEjectionPercent, 0, 100, "")
}

// intRange reports a whole number outside lo..hi; note follows the range.
func (v *validator) intRange(p fpath, n, lo, hi int, note string) {
	if n < lo || n > hi {
		v.addf(p, "%d is out of range; want %d to %d%s", n, lo, hi, note)
	}
}

// notNegative reports a negative limit where 0 means no limit.
func (v *validator) notNegative(p fpath, n int) {
	if n < 0 {
		v.addf(p, "must not be negative, got %d; 0 means no limit", n)
	}
}

// positiveUpTo reports a duration that is not greater than 0 or longer
// than hi, and returns whether it is in range.
func (v *validator) positiveUpTo(p fpath, d, hi Duration) bool {
	switch {
	case d <= 0:
		v.positive(p, d)
		return false
	case d > hi:
		v.addf(p, "%s is too long; want at most %s", durText(d), durText(hi))
		return false
	}
	return true
}

// floatText writes f as short as it reads back: 0.2, 1.5, 1e-07.
func floatText(f float64) string {
	return strconv.FormatFloat(f, 'g', -1, 64)
}
