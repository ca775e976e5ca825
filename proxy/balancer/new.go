package balancer

import (
	"strconv"

	"github.com/meshgate/meshgate/config"
)

// Policy names, the values of config.LoadBalancer.Policy.
const (
	// PolicyRoundRobin selects RoundRobin. It is the default.
	PolicyRoundRobin = "round_robin"
	// PolicyWeightedRoundRobin selects WeightedRoundRobin.
	PolicyWeightedRoundRobin = "weighted_round_robin"
	// PolicyLeastRequest selects LeastRequest.
	PolicyLeastRequest = "least_request"
	// PolicyConsistentHash selects ConsistentHash; it needs hash_on.
	PolicyConsistentHash = "consistent_hash"
)

// ConfigError reports a load_balancer setting that New cannot use.
type ConfigError struct {
	// Field is the dotted path of the setting within a service, for
	// example "load_balancer.hash_on.cookie". Callers that know the
	// service prefix it ("services.api.").
	Field string
	// Msg says what is wrong and what is allowed.
	Msg string
}

// Error returns "field: message".
func (e *ConfigError) Error() string { return e.Field + ": " + e.Msg }

// New builds the balancer that cfg describes over eps. An empty policy
// means round robin. rnd is the random source of least_request; nil means
// DefaultRand. The endpoints may be empty: Pick then returns -1.
//
// New fails with a *ConfigError when the policy is unknown, when
// consistent_hash lacks a hash_on naming exactly one valid header or
// cookie, or when hash_on is set for another policy.
func New(cfg config.LoadBalancer, eps []Endpoint, rnd Rand) (Balancer, error) {
	if cfg.HashOn != nil && cfg.Policy != PolicyConsistentHash {
		return nil, &ConfigError{
			Field: "load_balancer.hash_on",
			Msg:   "only allowed with policy " + PolicyConsistentHash,
		}
	}
	switch cfg.Policy {
	case "", PolicyRoundRobin:
		return NewRoundRobin(eps), nil
	case PolicyWeightedRoundRobin:
		return NewWeightedRoundRobin(eps), nil
	case PolicyLeastRequest:
		return NewLeastRequest(eps, rnd), nil
	case PolicyConsistentHash:
		if cfg.HashOn == nil {
			return nil, &ConfigError{
				Field: "load_balancer.hash_on",
				Msg:   "required for policy " + PolicyConsistentHash + "; set header or cookie",
			}
		}
		b, err := NewConsistentHash(eps, *cfg.HashOn)
		if err != nil {
			// Not b itself: a nil *ConsistentHash would be a non-nil Balancer.
			return nil, err
		}
		return b, nil
	}
	return nil, &ConfigError{
		Field: "load_balancer.policy",
		Msg: "unknown policy " + quote(cfg.Policy) + "; allowed: " + PolicyRoundRobin + ", " +
			PolicyWeightedRoundRobin + ", " + PolicyLeastRequest + ", " + PolicyConsistentHash,
	}
}

func quote(s string) string { return strconv.Quote(s) }
