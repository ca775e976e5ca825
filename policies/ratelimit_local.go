package policies

import (
	"hash/maphash"
	"io"

	"golang.org/x/time/rate"
)

// localBuckets are the token buckets of one local limit, one per key,
// bounded (a shardedLRU of max_keys; a dropped key comes back with a full
// bucket). They outlive reloads that keep the limit as it is.
type localBuckets struct {
	lru *shardedLRU[rlKey, *rate.Limiter]
	// fresh makes a full bucket; made once, so get does not allocate a
	// closure.
	fresh func() *rate.Limiter
}

var _ io.Closer = (*localBuckets)(nil)

// newLocalBuckets returns empty buckets of burst tokens refilled at r per
// second, at most maxKeys of them.
func newLocalBuckets(r rlRate, burst, maxKeys int) *localBuckets {
	return &localBuckets{
		lru:   newShardedLRU[rlKey, *rate.Limiter](maxKeys, hashRLKey),
		fresh: func() *rate.Limiter { return rate.NewLimiter(rate.Limit(r), burst) },
	}
}

// get returns the bucket of key k, creating a full one when there is
// none.
func (b *localBuckets) get(k rlKey) *rate.Limiter {
	return b.lru.getOrAdd(k, b.fresh)
}

// hashRLKey spreads keys over the shards.
func hashRLKey(seed maphash.Seed, k rlKey) uint64 {
	if k.addr.IsValid() {
		a := k.addr.As16()
		return maphash.Bytes(seed, a[:])
	}
	return maphash.String(seed, k.s)
}

// len returns how many buckets are kept.
func (b *localBuckets) len() int { return b.lru.len() }

// Close drops every bucket; the manager calls it when no policy in force
// uses the limit any more.
func (b *localBuckets) Close() error {
	b.lru.purge()
	return nil
}
