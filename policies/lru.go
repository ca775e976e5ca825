package policies

import (
	"hash/maphash"
	"sync"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// maxLRUShards is how many independently locked parts a shardedLRU is
// split into, so that concurrent requests for different keys rarely wait
// for one another; no lock is global.
const maxLRUShards = 64

// shardedLRU is a bounded map from keys to values for the request path
// (rate-limit buckets, verified tokens): each shard keeps at most its share
// of the bound and drops its least recently used entry to make room.
type shardedLRU[K comparable, V any] struct {
	seed   maphash.Seed
	hash   func(maphash.Seed, K) uint64
	mask   uint64
	shards []lruShard[K, V]
}

// lruShard is one part of the key space, with its own lock.
type lruShard[K comparable, V any] struct {
	mu  sync.Mutex
	lru *simplelru.LRU[K, V]
	_   [48]byte // keep neighbouring shards' locks off one cache line
}

// newShardedLRU returns an empty map of at most maxKeys entries; hash
// spreads keys over the shards.
func newShardedLRU[K comparable, V any](maxKeys int, hash func(maphash.Seed, K) uint64) *shardedLRU[K, V] {
	// A power of two no larger than maxKeys, so that every shard holds at
	// least one entry and the shards together at most maxKeys.
	n := maxLRUShards
	for n > 1 && n > maxKeys {
		n /= 2
	}
	c := &shardedLRU[K, V]{seed: maphash.MakeSeed(), hash: hash, mask: uint64(n - 1), shards: make([]lruShard[K, V], n)}
	per := maxKeys / n
	for i := range c.shards {
		// NewLRU fails only for a size below 1, which per never is.
		c.shards[i].lru, _ = simplelru.NewLRU[K, V](per, nil)
	}
	return c
}

func (c *shardedLRU[K, V]) shard(k K) *lruShard[K, V] {
	return &c.shards[c.hash(c.seed, k)&c.mask]
}

// getOrAdd returns the value of k, adding mk() when there is none.
func (c *shardedLRU[K, V]) getOrAdd(k K, mk func() V) V {
	sh := c.shard(k)
	sh.mu.Lock()
	v, ok := sh.lru.Get(k)
	if !ok {
		v = mk()
		sh.lru.Add(k, v)
	}
	sh.mu.Unlock()
	return v
}

// get returns the value of k.
func (c *shardedLRU[K, V]) get(k K) (V, bool) {
	sh := c.shard(k)
	sh.mu.Lock()
	v, ok := sh.lru.Get(k)
	sh.mu.Unlock()
	return v, ok
}

// add sets the value of k.
func (c *shardedLRU[K, V]) add(k K, v V) {
	sh := c.shard(k)
	sh.mu.Lock()
	sh.lru.Add(k, v)
	sh.mu.Unlock()
}

// remove drops k.
func (c *shardedLRU[K, V]) remove(k K) {
	sh := c.shard(k)
	sh.mu.Lock()
	sh.lru.Remove(k)
	sh.mu.Unlock()
}

// len returns how many entries are kept.
func (c *shardedLRU[K, V]) len() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		n += sh.lru.Len()
		sh.mu.Unlock()
	}
	return n
}

// purge drops every entry.
func (c *shardedLRU[K, V]) purge() {
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		sh.lru.Purge()
		sh.mu.Unlock()
	}
}
