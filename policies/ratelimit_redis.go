package policies

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Global limits keep their buckets in Redis.
const (
	// redisTimeout bounds one round trip to Redis: a slow store must not
	// hold requests up longer than its failure mode would.
	redisTimeout = 100 * time.Millisecond
	// redisBackoff is how long a global limit leaves Redis alone after an
	// error, applying its failure mode directly, so that a dead store is
	// not hammered by every request (and requests do not each wait for
	// it).
	redisBackoff = time.Second
	// redisWarnEvery bounds the warnings about an unreachable store.
	redisWarnEvery = 5 * time.Second
	// redisKeyPrefix starts every key meshgate writes.
	redisKeyPrefix = "meshgate:ratelimit:"
)

// gcraScript is the generic cell rate algorithm (GCRA): the bucket is one
// number, the theoretical arrival time (TAT) of the next request in
// microseconds, which advances by the emission interval per request and
// may run at most burst intervals ahead of now. It is one atomic script so
// that every meshgate instance sees the same count, and it reads the
// clock of Redis (TIME), not of the instances, so that their clocks need
// not agree. Reading TIME before a write is allowed because Redis 7
// replicates a script's effects rather than the script (Redis 5 and 6 need
// redis.replicate_commands, which Redis 7 keeps as a no-op).
//
// KEYS[1]: the bucket. ARGV[1]: burst. ARGV[2]: emission interval, µs.
// Returns {allowed (0/1), remaining, retry_after µs, reset_after µs}.
const gcraScript = `
if redis.replicate_commands then redis.replicate_commands() end
local burst = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now) or now
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
if now < allow_at then
  return {0, 0, allow_at - now, tat - now}
end
local reset = new_tat - now
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.max(1, math.ceil(reset / 1000)))
return {1, math.floor((now - allow_at) / interval), 0, reset}
`

// globalLimit is the Redis side of one global limit.
type globalLimit struct {
	client     redis.UniversalClient // nil: every call fails
	script     *redis.Script
	prefix     string // of the limit's keys: policy and limit name
	burst      int
	intervalUS int64
	closed     bool // failure_mode closed
	policy     string
	name       string
	logger     *slog.Logger
	// downUntil (Unix ns of the clock given to take) skips Redis after an
	// error; lastWarn (Unix ns) rate-limits the warning.
	downUntil atomic.Int64
	lastWarn  atomic.Int64
}

// errNoRedis is the store error of a global limit without a client.
var errNoRedis = errors.New("no Redis client")

// errRedisBackoff is the store error while a global limit leaves Redis
// alone after an error.
var errRedisBackoff = errors.New("Redis failed recently; not asked")

func newGlobalLimit(client redis.UniversalClient, logger *slog.Logger, policy string, l *rlLimit, closed bool) *globalLimit {
	iv := int64(l.per/time.Microsecond) / int64(l.requests)
	if iv < 1 {
		iv = 1
	}
	return &globalLimit{
		client:     client,
		script:     redis.NewScript(gcraScript),
		prefix:     redisKeyPrefix + policy + "/" + l.name + ":",
		burst:      l.burst,
		intervalUS: iv,
		closed:     closed,
		policy:     policy,
		name:       l.name,
		logger:     logger,
	}
}

// globalResult is Redis's answer for one request.
type globalResult struct {
	allowed    bool
	remaining  int64
	retryAfter time.Duration // when refused: until the next token
	resetAfter time.Duration // until the bucket is full again
	next       time.Duration // when allowed with none left: until the next token
}

// take asks Redis for a token of the bucket k. An error means the store
// did not answer (or is being left alone after failing); the caller
// applies the failure mode.
func (g *globalLimit) take(r *http.Request, k rlKey, now time.Time) (globalResult, error) {
	if g.client == nil {
		return globalResult{}, g.failed(errNoRedis, now)
	}
	if now.UnixNano() < g.downUntil.Load() {
		return globalResult{}, errRedisBackoff
	}
	// Not the request's own cancellation: a client that goes away must
	// not look like a failing store and trip the backoff for everyone.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), redisTimeout)
	defer cancel()
	vals, err := g.script.Run(ctx, g.client, []string{g.prefix + k.String()}, g.burst, g.intervalUS).Int64Slice()
	if err == nil && len(vals) != 4 {
		err = errors.New("rate-limit script returned " + strconv.Itoa(len(vals)) + " values, want 4")
	}
	if err != nil {
		return globalResult{}, g.failed(err, now)
	}
	res := globalResult{
		allowed:    vals[0] == 1,
		remaining:  vals[1],
		retryAfter: time.Duration(vals[2]) * time.Microsecond,
		resetAfter: time.Duration(vals[3]) * time.Microsecond,
	}
	if res.allowed && res.remaining == 0 {
		// The next token comes burst-1 intervals before the bucket is
		// full.
		res.next = res.resetAfter - time.Duration(int64(g.burst-1)*g.intervalUS)*time.Microsecond
	}
	return res, nil
}

// failed starts the backoff after a store error and warns, at most once
// every redisWarnEvery.
func (g *globalLimit) failed(err error, now time.Time) error {
	ns := now.UnixNano()
	g.downUntil.Store(ns + int64(redisBackoff))
	last := g.lastWarn.Load()
	if ns-last >= int64(redisWarnEvery) && g.lastWarn.CompareAndSwap(last, ns) {
		mode := failOpen
		if g.closed {
			mode = failClosed
		}
		g.logger.Warn("rate limit store unavailable; applying the failure mode", "policy", g.policy, "limit", g.name, "failure_mode", mode, "error", err)
	}
	return err
}
