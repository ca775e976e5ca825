package policies

import (
	"hash/maphash"
	"io"
	"sync"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"golang.org/x/time/rate"
)

// maxBucketShards is how many independently locked parts the buckets of
// a local limit are split into, so that concurrent requests for different
// keys rarely wait for one another.
const maxBucketShards = 64

// localBuckets are the token buckets of one local limit, one per key,
// bounded: each shard keeps at most its share of max_keys and drops the
// least recently used bucket to make room (a dropped key comes back with a
// full bucket). They outlive reloads that keep the limit as it is.
type localBuckets struct {
	rate   rate.Limit
	burst  int
	seed   maphash.Seed
	mask   uint64
	shards []bucketShard
}

// bucketShard is one part of the key space, with its own lock.
type bucketShard struct {
	mu  sync.Mutex
	lru *simplelru.LRU[rlKey, *rate.Limiter]
	_   [48]byte // keep neighbouring shards' locks off one cache line
}

var _ io.Closer = (*localBuckets)(nil)

// newLocalBuckets returns empty buckets of burst tokens refilled at r per
// second, at most maxKeys of them.
func newLocalBuckets(r rlRate, burst, maxKeys int) *localBuckets {
	// A power of two no larger than maxKeys, so that every shard holds at
	// least one bucket and the shards together at most maxKeys.
	n := maxBucketShards
	for n > 1 && n > maxKeys {
		n /= 2
	}
	b := &localBuckets{rate: rate.Limit(r), burst: burst, seed: maphash.MakeSeed(), mask: uint64(n - 1), shards: make([]bucketShard, n)}
	per := maxKeys / n
	for i := range b.shards {
		// NewLRU fails only for a size below 1, which per never is.
		b.shards[i].lru, _ = simplelru.NewLRU[rlKey, *rate.Limiter](per, nil)
	}
	return b
}

// get returns the bucket of key k, creating a full one when there is
// none.
func (b *localBuckets) get(k rlKey) *rate.Limiter {
	sh := &b.shards[b.hash(k)&b.mask]
	sh.mu.Lock()
	lim, ok := sh.lru.Get(k)
	if !ok {
		lim = rate.NewLimiter(b.rate, b.burst)
		sh.lru.Add(k, lim)
	}
	sh.mu.Unlock()
	return lim
}

// hash spreads keys over the shards.
func (b *localBuckets) hash(k rlKey) uint64 {
	if k.addr.IsValid() {
		a := k.addr.As16()
		return maphash.Bytes(b.seed, a[:])
	}
	return maphash.String(b.seed, k.s)
}

// len returns how many buckets are kept.
func (b *localBuckets) len() int {
	n := 0
	for i := range b.shards {
		sh := &b.shards[i]
		sh.mu.Lock()
		n += sh.lru.Len()
		sh.mu.Unlock()
	}
	return n
}

// Close drops every bucket; the manager calls it when no policy in force
// uses the limit any more.
func (b *localBuckets) Close() error {
	for i := range b.shards {
		sh := &b.shards[i]
		sh.mu.Lock()
		sh.lru.Purge()
		sh.mu.Unlock()
	}
	return nil
}
