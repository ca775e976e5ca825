package balancer

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/meshgate/meshgate/config"
)

func TestNew(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		cfg      config.LoadBalancer
		wantType string
		errField string
		errText  string
	}{
		{name: "empty policy is round robin", cfg: config.LoadBalancer{}, wantType: "*balancer.RoundRobin"},
		{name: "round_robin", cfg: config.LoadBalancer{Policy: "round_robin"}, wantType: "*balancer.RoundRobin"},
		{name: "weighted_round_robin", cfg: config.LoadBalancer{Policy: "weighted_round_robin"}, wantType: "*balancer.WeightedRoundRobin"},
		{name: "least_request", cfg: config.LoadBalancer{Policy: "least_request"}, wantType: "*balancer.LeastRequest"},
		{name: "consistent_hash on header", cfg: config.LoadBalancer{Policy: "consistent_hash", HashOn: &config.HashOn{Header: "X-User"}}, wantType: "*balancer.ConsistentHash"},
		{name: "consistent_hash on cookie", cfg: config.LoadBalancer{Policy: "consistent_hash", HashOn: &config.HashOn{Cookie: "sid"}}, wantType: "*balancer.ConsistentHash"},
		{name: "unknown policy", cfg: config.LoadBalancer{Policy: "random"}, errField: "load_balancer.policy", errText: `unknown policy "random"; allowed: round_robin, weighted_round_robin, least_request, consistent_hash`},
		{name: "policy is case-sensitive", cfg: config.LoadBalancer{Policy: "Round_Robin"}, errField: "load_balancer.policy"},
		{name: "consistent_hash without hash_on", cfg: config.LoadBalancer{Policy: "consistent_hash"}, errField: "load_balancer.hash_on", errText: "required"},
		{name: "hash_on empty", cfg: config.LoadBalancer{Policy: "consistent_hash", HashOn: &config.HashOn{}}, errField: "load_balancer.hash_on"},
		{name: "hash_on both", cfg: config.LoadBalancer{Policy: "consistent_hash", HashOn: &config.HashOn{Header: "X-User", Cookie: "sid"}}, errField: "load_balancer.hash_on", errText: "only one"},
		{name: "hash_on bad header", cfg: config.LoadBalancer{Policy: "consistent_hash", HashOn: &config.HashOn{Header: "X User"}}, errField: "load_balancer.hash_on.header"},
		{name: "hash_on bad cookie", cfg: config.LoadBalancer{Policy: "consistent_hash", HashOn: &config.HashOn{Cookie: "s id"}}, errField: "load_balancer.hash_on.cookie"},
		{name: "hash_on with round robin", cfg: config.LoadBalancer{HashOn: &config.HashOn{Header: "X-User"}}, errField: "load_balancer.hash_on", errText: "only allowed with policy consistent_hash"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, err := New(tt.cfg, endpoints(1, 2), newSeededRand())
			if tt.errField == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if got := fmt.Sprintf("%T", b); got != tt.wantType {
					t.Errorf("type %s, want %s", got, tt.wantType)
				}
				if i := b.Pick(keyed("k"), nil); i < 0 || i > 1 {
					t.Errorf("Pick = %d, want 0 or 1", i)
				}
				return
			}
			if b != nil {
				t.Errorf("balancer = %#v, want nil", b)
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v (%T), want *ConfigError", err, err)
			}
			if ce.Field != tt.errField {
				t.Errorf("Field = %q, want %q", ce.Field, tt.errField)
			}
			if !strings.HasPrefix(err.Error(), tt.errField+": ") || !strings.Contains(err.Error(), tt.errText) {
				t.Errorf("error %q, want %q prefix and %q", err, tt.errField+": ", tt.errText)
			}
		})
	}
}

func TestNewNoEndpoints(t *testing.T) {
	t.Parallel()
	for _, policy := range []string{PolicyRoundRobin, PolicyWeightedRoundRobin, PolicyLeastRequest, PolicyConsistentHash} {
		b, err := New(config.LoadBalancer{Policy: policy, HashOn: hashOnFor(policy)}, nil, nil)
		if err != nil {
			t.Fatalf("%s: %v", policy, err)
		}
		for _, r := range []bool{false, true} {
			req := keyed("")
			if r {
				req = keyed("user")
			}
			if got := b.Pick(req, nil); got != -1 {
				t.Errorf("%s: Pick = %d, want -1", policy, got)
			}
			if got := b.Pick(req, skipSet()); got != -1 {
				t.Errorf("%s: Pick with skip = %d, want -1", policy, got)
			}
		}
	}
}

func hashOnFor(policy string) *config.HashOn {
	if policy == PolicyConsistentHash {
		return &config.HashOn{Header: keyHeader}
	}
	return nil
}
