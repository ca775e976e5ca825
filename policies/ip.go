package policies

import (
	"net/http"
	"net/netip"

	"github.com/meshgate/meshgate/config"
)

// ipList is a compiled IPList. Lists are scanned linearly: policy IP
// lists are short (a handful of CIDRs), and a scan of a few netip.Prefix
// values beats a trie's pointer chasing at that size.
type ipList struct {
	policy string
	allow  []netip.Prefix // empty: every address not denied is allowed
	deny   []netip.Prefix
}

// ipStep compiles the ip step of a policy; nil when the policy has none.
func (c *compiler) ipStep(path, policy string, spec *IPList) middleware {
	if spec == nil || c.doc.Bad(path) {
		return nil
	}
	if len(spec.Allow) == 0 && len(spec.Deny) == 0 {
		c.errorf(path, "want at least one of allow, deny")
		return nil
	}
	l := &ipList{policy: policy}
	ok := true
	l.allow, ok = c.ipPrefixes(config.Field(path, "allow"), spec.Allow, ok)
	l.deny, ok = c.ipPrefixes(config.Field(path, "deny"), spec.Deny, ok)
	if !ok {
		return nil
	}
	return func(next http.Handler) http.Handler {
		return &ipGuard{list: l, next: next}
	}
}

// ipPrefixes parses a list of addresses and prefixes; ok turns false on
// any bad entry, each reported at its index.
func (c *compiler) ipPrefixes(path string, entries []string, ok bool) ([]netip.Prefix, bool) {
	out := make([]netip.Prefix, 0, len(entries))
	for i, s := range entries {
		p, err := parsePrefix(s)
		if err != nil {
			c.errorf(config.Index(path, i), "%v", err)
			ok = false
			continue
		}
		out = append(out, ipUnmapPrefix(p))
	}
	return out, ok
}

// ipUnmapPrefix turns an IPv4-mapped IPv6 prefix (::ffff:10.0.0.0/104)
// into its IPv4 form (10.0.0.0/8): client addresses are compared unmapped.
func ipUnmapPrefix(p netip.Prefix) netip.Prefix {
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p
}

// allowed reports whether a is allowed: deny wins, and with an allow list
// only its addresses pass. An unknown address (no client address) is
// never allowed: a guard that cannot tell must fail closed.
func (l *ipList) allowed(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	a = a.Unmap()
	for _, p := range l.deny {
		if p.Contains(a) {
			return false
		}
	}
	if len(l.allow) == 0 {
		return true
	}
	for _, p := range l.allow {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ipGuard is the ip step.
type ipGuard struct {
	list *ipList
	next http.Handler
}

func (g *ipGuard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	st := stateOf(r)
	if g.list.allowed(st.clientIP) {
		st.observe(r, g.list.policy, StepIP, "allow")
		g.next.ServeHTTP(w, r)
		return
	}
	st.observe(r, g.list.policy, StepIP, "deny")
	reject(w, r, http.StatusForbidden, "client address not allowed")
}
