// Package ratelimit implements the local token-bucket rate limiter behind
// the flow_control.rate_limiter policy component.
//
// A Limiter holds one bucket per key (the value of the component's
// limit_by_label_key, or "" when every flow shares a bucket). A bucket
// starts full, holds at most Capacity tokens, and gains FillAmount tokens
// per Interval, continuously or in whole intervals. Time is a parameter of
// every call, so tests replay exact step tables.
//
// Limits can change at any time (SetLimits), for example every circuit
// tick: a changed limit applies to existing buckets at once, clamped to the
// new capacity on their next use. Sweep drops the buckets unused for
// MaxIdle that are full again (a full bucket and a missing one decide the
// same), which keeps memory bounded without ever handing out tokens: a
// bucket still inside its interval, or still refilling, is kept however
// long it is idle. Only a limiter without a fill rate, whose buckets never
// fill again, drops them MaxIdle after their last use.
//
// A cost (n) is a number of tokens ≥ 0. A negative or NaN cost is refused
// without touching the bucket; waits are clamped to math.MaxInt64
// ("never"), so no cost makes them overflow.
//
// A Limiter is safe for concurrent use. Buckets are spread over shards, each
// with its own mutex; Take on an existing bucket does not allocate.
//
// A RedisLimiter keeps the buckets in Redis, shared by every agent. In
// exact mode each decision is one Lua script call. With lazy sync
// (RedisLimiterOptions.NumSync, the policy's lazy_sync) each agent
// decides from a local share and never waits on Redis; every busy bucket
// is reconciled NumSync times per interval (one script call that charges
// the tokens this agent took since its last sync and grants its new
// share: 1/N of the tokens that no other agent may be spending, N being
// the agents that synced the bucket in the last three sync periods).
// Between syncs a share refills at fill_amount/N, capped at
// bucket_capacity/N, so a failed sync (counted in
// fluxgate_redis_lazy_syncs_total) leaves the agent deciding with its
// share of the limit; what it takes meanwhile is charged at the next sync
// that succeeds. The script takes running totals, so a sync whose reply
// was lost is never charged twice, and the global bucket may go into
// debt (down to -bucket_capacity) for tokens agents took before they
// learnt it was empty.
//
// Overshoot bound of lazy sync. With N agents syncing on schedule, in any
// window of one interval the agents admit at most what exact mode admits
// plus the local refill that can run ahead of Redis: one sync period's
// refill, fill_amount/num_sync (each agent's share refills at most
// fill_amount/(N·num_sync) before Redis hears of it; the shares Redis
// grants hold back what the other agents were granted and have refilled
// since). Under steady overload that is at most L·(1 + 1/num_sync) per
// window for a limit of L tokens per interval, 1.25 L with the default
// num_sync 4. On top of it, when a key is new on an agent, the agent
// decides before its first sync with a starting share of
// fill_amount/(num_sync·N'), N' the agent count this limiter last saw (1
// on a fresh agent): at most N·fill_amount/num_sync more, once. The
// bound assumes the syncs succeed: an agent cut off from Redis keeps
// admitting fill_amount/N per interval, and once the others stop
// counting it (three sync periods) they share the whole limit, so each
// such agent can add fill_amount/N per interval. Measured (test/redis,
// three agents, 12 clients, L = 1,000/s, num_sync 4): 961–989 per window
// under steady overload, 2,487–2,534 in the first (bound 2,750).
package ratelimit

import (
	"hash/maphash"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Limits are the parameters of every bucket of a Limiter.
type Limits struct {
	// Capacity is the most tokens a bucket holds. 0 rejects every flow.
	Capacity float64
	// FillAmount tokens are added per Interval.
	FillAmount float64
	Interval   time.Duration
	// Continuous spreads the fill evenly over the interval; otherwise the
	// whole FillAmount arrives at each interval boundary.
	Continuous bool
}

// rate is the fill rate in tokens per nanosecond.
func (l *Limits) rate() float64 {
	if l.Interval <= 0 {
		return 0
	}
	return l.FillAmount / float64(l.Interval)
}

// Options configures a Limiter.
type Options struct {
	Limits Limits
	// MaxIdle is how long an untouched bucket is kept. Default 2h.
	MaxIdle time.Duration
	// DelayInitialFill starts new buckets empty instead of full.
	DelayInitialFill bool
}

// Result is the outcome of Take or Peek.
type Result struct {
	Allowed   bool
	Remaining float64       // tokens left after the call
	Limit     float64       // the bucket capacity
	Wait      time.Duration // until the requested tokens are available; 0 when allowed
	Reset     time.Duration // until the bucket is full again
}

const numShards = 64

// Limiter is a set of token buckets sharing one set of limits.
type Limiter struct {
	limits  atomic.Pointer[Limits]
	maxIdle time.Duration
	delay   bool
	seed    maphash.Seed
	shards  [numShards]shard
}

type shard struct {
	mu      sync.Mutex
	buckets map[string]*bucket // guarded by mu
}

type bucket struct {
	tokens float64
	last   int64 // unix nanoseconds of the last refill
	used   int64 // unix nanoseconds of the last Take or Return
}

// New returns a Limiter with no buckets.
func New(opts Options) *Limiter {
	l := &Limiter{maxIdle: opts.MaxIdle, delay: opts.DelayInitialFill, seed: maphash.MakeSeed()}
	if l.maxIdle <= 0 {
		l.maxIdle = 2 * time.Hour
	}
	lim := opts.Limits
	l.limits.Store(&lim)
	for i := range l.shards {
		l.shards[i].buckets = make(map[string]*bucket)
	}
	return l
}

// Limits returns the current limits.
func (l *Limiter) Limits() Limits { return *l.limits.Load() }

// SetLimits replaces the limits of every bucket. Existing buckets keep
// their tokens, clamped to the new capacity when next used.
func (l *Limiter) SetLimits(lim Limits) {
	if cur := l.limits.Load(); *cur == lim {
		return
	}
	l.limits.Store(&lim)
}

// Take removes n tokens from key's bucket if it holds them.
func (l *Limiter) Take(now time.Time, key string, n float64) Result {
	return l.do(now, key, n, true)
}

// Peek reports what Take would answer without changing the bucket.
func (l *Limiter) Peek(now time.Time, key string, n float64) Result {
	return l.do(now, key, n, false)
}

// Return puts n tokens back into key's bucket, for a flow that a later
// component rejected after this one had admitted it.
func (l *Limiter) Return(now time.Time, key string, n float64) {
	lim := l.limits.Load()
	sh := &l.shards[maphash.String(l.seed, key)%numShards]
	sh.mu.Lock()
	if b := sh.buckets[key]; b != nil && n > 0 {
		refill(b, lim, now.UnixNano())
		b.tokens = math.Min(b.tokens+n, lim.Capacity)
		b.used = now.UnixNano()
	}
	sh.mu.Unlock()
}

func (l *Limiter) do(now time.Time, key string, n float64, take bool) Result {
	lim := l.limits.Load()
	bad := !(n >= 0) // negative or NaN: refused, the bucket untouched
	take = take && !bad
	t := now.UnixNano()
	sh := &l.shards[maphash.String(l.seed, key)%numShards]
	sh.mu.Lock()
	stored := sh.buckets[key]
	var b bucket // worked on by value; written back when taking
	if stored != nil {
		b = *stored
	} else {
		b = bucket{tokens: lim.Capacity, last: t}
		if l.delay {
			b.tokens = 0
		}
	}
	refill(&b, lim, t)
	res := Result{Limit: lim.Capacity}
	switch {
	case bad:
		res.Wait = waitNever
	case b.tokens >= n:
		res.Allowed = true
		b.tokens -= n
	default:
		res.Wait = waitFor(n-b.tokens, lim)
	}
	res.Remaining = b.tokens
	res.Reset = waitFor(lim.Capacity-b.tokens, lim)
	if take {
		if stored == nil {
			stored = new(bucket)
			sh.buckets[key] = stored
		}
		b.used = t
		*stored = b
	}
	sh.mu.Unlock()
	return res
}

// refill adds the tokens earned since b.last and clamps to the capacity.
func refill(b *bucket, lim *Limits, now int64) {
	elapsed := now - b.last
	if elapsed > 0 {
		if lim.Continuous {
			b.tokens += float64(elapsed) * lim.rate()
			b.last = now
		} else if lim.Interval > 0 {
			k := elapsed / int64(lim.Interval)
			b.tokens += float64(k) * lim.FillAmount
			b.last += k * int64(lim.Interval)
		}
	}
	if b.tokens > lim.Capacity {
		b.tokens = lim.Capacity
	}
}

// waitNever is the wait for tokens that never come.
const waitNever = time.Duration(math.MaxInt64)

// waitFor is how long it takes to earn missing tokens; waitNever (math.MaxInt64)
// when they never come or the wait does not fit a time.Duration.
func waitFor(missing float64, lim *Limits) time.Duration {
	if missing <= 0 {
		return 0
	}
	r := lim.rate()
	if r <= 0 || !(missing < math.Inf(1)) { // NaN too
		return waitNever
	}
	var ns float64
	if lim.Continuous {
		ns = math.Ceil(missing / r)
	} else {
		ns = math.Ceil(missing/lim.FillAmount) * float64(lim.Interval)
	}
	return clampDuration(ns)
}

// clampDuration converts ns nanoseconds to a Duration, waitNever (math.MaxInt64)
// when it does not fit (float64(math.MaxInt64) rounds up to 2^63).
func clampDuration(ns float64) time.Duration {
	if !(ns < float64(math.MaxInt64)) {
		return waitNever
	}
	return time.Duration(ns)
}

// Sweep drops the buckets unused for MaxIdle that are full again at now
// (or, without a fill rate, every bucket unused for MaxIdle) and returns
// how many it dropped. The agent calls it periodically.
func (l *Limiter) Sweep(now time.Time) int {
	lim := l.limits.Load()
	t := now.UnixNano()
	cutoff := now.Add(-l.maxIdle).UnixNano()
	dropped := 0
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		for k, b := range sh.buckets {
			if b.used < cutoff && refillsToFull(*b, lim, t) {
				delete(sh.buckets, k)
				dropped++
			}
		}
		sh.mu.Unlock()
	}
	return dropped
}

// refillsToFull reports whether b, refilled to now, is full, so that
// dropping it (and starting a full bucket on the next use) hands out no
// token. Without a fill rate a bucket never fills again: it counts as full
// (dropped MaxIdle after its last use) so that a limiter set to 0 does not
// keep every key forever.
func refillsToFull(b bucket, lim *Limits, now int64) bool {
	if lim.rate() <= 0 {
		return true
	}
	refill(&b, lim, now)
	return b.tokens >= lim.Capacity
}

// Len is the number of buckets held.
func (l *Limiter) Len() int {
	n := 0
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		n += len(sh.buckets)
		sh.mu.Unlock()
	}
	return n
}
