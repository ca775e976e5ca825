package balancer

import (
	"cmp"
	"net/http"
	"slices"
	"strings"

	"github.com/meshgate/meshgate/config"
)

const (
	// VirtualNodesPerWeight is how many points on the hash ring an endpoint
	// gets per unit of weight, as long as the ring stays within
	// MaxRingSize points.
	VirtualNodesPerWeight = 160
	// MaxRingSize bounds the hash ring (12 bytes a point). Larger rings are
	// scaled down: every endpoint gets weight×MaxRingSize/(sum of weights)
	// points, at least one.
	MaxRingSize = 1 << 17
	// maxRingWalk bounds how many ring points Pick steps over when skip
	// rejects endpoints, before it scans the endpoints instead.
	maxRingWalk = 64
)

// ConsistentHash sends requests with the same key (the value of a header
// or a cookie) to the same endpoint for as long as that endpoint is
// present, and keeps most keys in place when endpoints come and go.
//
// Each endpoint is placed on a ring of 64-bit hashes at
// VirtualNodesPerWeight points per unit of weight, at positions derived
// from its ID alone, with FNV-1a and a fixed mixing step, so every process
// and every rebuild places an endpoint at the same points regardless of the
// endpoints' order. A key goes to the owner of the first point at or after
// the key's hash (binary search). Removing one of N equally weighted
// endpoints therefore moves only the keys it owned, about 1/N of them, to
// the remaining endpoints, and adding one takes about 1/(N+1) of the keys,
// all of them for the new endpoint. This holds while the ring stays within
// MaxRingSize points; beyond that the points per weight depend on the sum
// of the weights and a membership change moves more keys.
//
// Requests without the key, or with an empty value, are spread round
// robin. When skip rejects the key's endpoint Pick walks the ring
// clockwise to the next endpoint skip accepts, so a retried key still
// lands on a stable second choice; after 64 points it scans the endpoints
// in index order instead.
//
// Endpoint IDs should be unique: endpoints with the same ID share their
// ring points and only one of them, the first in the slice, receives the
// keys.
type ConsistentHash struct {
	hashes []uint64 // ring points, ascending
	owners []int32  // owners[k] is the endpoint at hashes[k]
	n      int

	header   string // canonical header name; "" when hashing on a cookie
	cookie   string // cookie name; "" when hashing on a header
	fallback RoundRobin
}

var _ Balancer = (*ConsistentHash)(nil)

// NewConsistentHash returns a consistent hashing balancer over eps keyed
// on the header or cookie that on names. Exactly one of on.Header and
// on.Cookie must be set to a valid name; otherwise the error is a
// *ConfigError. Header "Host" hashes the request's host (Request.Host).
func NewConsistentHash(eps []Endpoint, on config.HashOn) (*ConsistentHash, error) {
	b := &ConsistentHash{n: len(eps)}
	b.fallback.n = uint64(len(eps))
	switch {
	case on.Header != "" && on.Cookie != "":
		return nil, &ConfigError{Field: "load_balancer.hash_on", Msg: "set only one of header and cookie"}
	case on.Header != "":
		if !isToken(on.Header) {
			return nil, &ConfigError{Field: "load_balancer.hash_on.header", Msg: "invalid header name " + quote(on.Header) + "; allowed: letters, digits and !#$%&'*+-.^_`|~"}
		}
		b.header = http.CanonicalHeaderKey(on.Header)
	case on.Cookie != "":
		if !isToken(on.Cookie) {
			return nil, &ConfigError{Field: "load_balancer.hash_on.cookie", Msg: "invalid cookie name " + quote(on.Cookie) + "; allowed: letters, digits and !#$%&'*+-.^_`|~"}
		}
		b.cookie = on.Cookie
	default:
		return nil, &ConfigError{Field: "load_balancer.hash_on", Msg: "set one of header and cookie"}
	}
	b.buildRing(eps)
	return b, nil
}

// buildRing places every endpoint's virtual nodes and sorts them.
func (b *ConsistentHash) buildRing(eps []Endpoint) {
	var sumW, size uint64
	for _, e := range eps {
		sumW += uint64(weightOf(e))
	}
	scaled := sumW*VirtualNodesPerWeight > MaxRingSize
	points := make([]uint64, len(eps))
	for i, e := range eps {
		w := uint64(weightOf(e))
		p := w * VirtualNodesPerWeight
		if scaled {
			p = max(1, w*MaxRingSize/sumW)
		}
		points[i] = p
		size += p
	}

	type vnode struct {
		hash  uint64
		owner int32
	}
	ring := make([]vnode, 0, size)
	for i, e := range eps {
		base := hashString(e.ID)
		for k := range points[i] {
			ring = append(ring, vnode{hash: vnodeHash(base, k), owner: int32(i)})
		}
	}
	// Order equal hashes by ID, then index, so the ring does not depend on
	// the order of the endpoints.
	slices.SortFunc(ring, func(x, y vnode) int {
		if c := cmp.Compare(x.hash, y.hash); c != 0 {
			return c
		}
		if c := strings.Compare(eps[x.owner].ID, eps[y.owner].ID); c != 0 {
			return c
		}
		return cmp.Compare(x.owner, y.owner)
	})
	b.hashes = make([]uint64, len(ring))
	b.owners = make([]int32, len(ring))
	for k, v := range ring {
		b.hashes[k] = v.hash
		b.owners[k] = v.owner
	}
}

// Pick implements Balancer.
func (b *ConsistentHash) Pick(r *http.Request, skip func(i int) bool) int {
	if b.n == 0 {
		return -1
	}
	key := b.key(r)
	if key == "" {
		return b.fallback.Pick(r, skip)
	}
	pos, _ := slices.BinarySearch(b.hashes, hashString(key))
	if pos == len(b.hashes) {
		pos = 0
	}
	owner := int(b.owners[pos])
	if skip == nil || !skip(owner) {
		return owner
	}
	return b.walk(pos, owner, skip)
}

// walk returns the first endpoint after ring position pos that skip
// accepts, or -1 when skip rejects every endpoint. rejected was rejected.
func (b *ConsistentHash) walk(pos, rejected int, skip func(i int) bool) int {
	for range min(len(b.hashes)-1, maxRingWalk) {
		pos++
		if pos == len(b.hashes) {
			pos = 0
		}
		o := int(b.owners[pos])
		if o == rejected {
			continue
		}
		if !skip(o) {
			return o
		}
		rejected = o
	}
	for k := 1; k < b.n; k++ {
		if i := (int(b.owners[pos]) + k) % b.n; !skip(i) {
			return i
		}
	}
	return -1
}

// key returns the request's hash key, "" when it has none.
func (b *ConsistentHash) key(r *http.Request) string {
	switch {
	case r == nil:
		return ""
	case b.cookie != "":
		v, _ := cookieValue(r.Header, b.cookie)
		return v
	case b.header == "Host":
		// Go moves the Host header into Request.Host.
		return r.Host
	}
	if vs := r.Header[b.header]; len(vs) > 0 {
		return vs[0]
	}
	return ""
}

// FNV-1a 64 parameters.
const (
	fnvOffset64 = 14695981039346656037
	fnvPrime64  = 1099511628211
)

// hashString returns a well-mixed 64-bit hash of s that is the same in
// every process: FNV-1a 64 followed by mix64, because FNV alone spreads
// keys that differ only in their last bytes poorly over the high bits the
// ring is ordered by.
func hashString(s string) uint64 {
	h := uint64(fnvOffset64)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime64
	}
	return mix64(h)
}

// vnodeHash returns the ring position of virtual node k of the endpoint
// whose ID hashes to base. mix64 is a bijection, so an endpoint's virtual
// nodes never collide with each other.
func vnodeHash(base, k uint64) uint64 {
	return mix64(base ^ (k+1)*0x9e3779b97f4a7c15)
}

// mix64 is the MurmurHash3 64-bit finaliser.
func mix64(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}
