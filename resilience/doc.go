// Package resilience decides how meshgate survives failing upstreams:
// retry policy and retry budget (on github.com/hashicorp/go-retryablehttp),
// per-instance circuit breakers (github.com/sony/gobreaker/v2), passive
// outlier ejection, timeouts, and concurrency limits with load shedding.
//
// The proxy package asks it, per attempt, whether to retry and which
// instances to skip; its state lives in a registry owned by the gateway and
// outlives configuration reloads.
//
// The package holds no code yet: the proxy forwards each request once, with
// the connect and response-header timeouts of its service.
package resilience
