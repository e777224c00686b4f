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
// Memory is bounded whatever the flows carry. A Limiter keeps a bucket
// under a 64-bit hash of its key (maphash, with a seed made at random for
// each Limiter), not the key, so a bucket costs BucketBytes (96) whatever
// the key's length, and its table holds no pointers: the garbage
// collector does not scan it, and once the budget is full a new key takes
// the slot of the one it evicts without allocating. Two keys share a
// bucket only if their hashes are equal: a new key finds one of n held
// keys' bucket with probability n/2⁶⁴ (2·10⁻¹⁴ at the default budget),
// and a client cannot aim for it without the seed. The buckets are held within Options.MaxMemory (default 32
// MiB, the agent's limits.rate_limiter_memory_mib: about 350,000
// buckets); making a bucket past it evicts the least recently used one
// of its shard (the buckets are spread over up to 64 shards by the hash,
// each with its part of the budget). Evictions counts them. A flood of
// new keys therefore costs CPU, not memory; it evicts the keys unused for
// longest, and a key used again before the flood has gone through the
// budget keeps its bucket. A sweep that empties most of a shard gives its
// memory back.
//
// Keys also reach decisions, logs and Redis: there, a key longer than
// MaxKeyBytes (256) becomes its first 64 bytes and the SHA-256 of the
// whole key (BoundKey, which the rate_limiter component applies; see
// there for the collision semantics).
//
// Overshoot bound of eviction. An evicted bucket, like a swept one, is
// made again full on the key's next use, but unlike a swept one it may
// not have been full: a key gets at most Capacity tokens more than an
// unbounded limiter would give it, once per eviction of its bucket
// (TestEvictionOvershootBound). With DelayInitialFill a bucket comes back
// empty and eviction only ever admits less. Keep the budget above the
// keys that are busy within an interval (about 350,000 per 32 MiB) and
// evictions take only keys that would have refilled.
//
// A cost (n) is a number of tokens ≥ 0. A negative or NaN cost is refused
// without touching the bucket; waits are clamped to math.MaxInt64
// ("never"), so no cost makes them overflow.
//
// A Limiter is safe for concurrent use. Buckets are spread over shards, each
// with its own mutex; Take does not allocate on an existing bucket, nor on
// a new one once the budget is full.
//
// A RedisLimiter keeps the buckets in Redis, shared by every agent. In
// exact mode each decision is one Lua script call; concurrent calls share
// round trips, each caller still bounded by its own deadline: on a
// standalone Redis each call is written the moment it comes on a
// connection of the backend's own, replies read in order (stream.go); on
// Redis Cluster the calls that queued while the previous ones were in
// flight go as one pipeline (pipe.go). With lazy sync
// (RedisLimiterOptions.NumSync, the policy's lazy_sync) each agent
// decides from a local share and never waits on Redis. A sync is one
// script call that charges the tokens this agent took since its last
// sync and grants its new share: 1/N of the tokens that no other agent
// may be spending, N being the agents that synced the bucket within the
// last interval + 3 sync periods. A key syncs at most once a sync period
// (interval/num_sync), and only with something to say: when its
// unreported takes reach one period's share, fill_amount/(N·num_sync)
// (bucket_capacity/N if smaller, and at least one token), or a decision
// was refused, it syncs as soon as
// the period allows, so a busy key syncs once a period; a cold key, whose
// takes stay below that, syncs when its oldest unreported take is one
// interval old, and no later than one interval after its sync
// was due. One interval, because that is the time scale of the limit
// itself: Redis's picture of the bucket lags no more than the window the
// limit is stated over, a departed agent's share stays held back for
// about that long (the activity window grows with it), and a key checked
// at least once an interval costs at most about one sync per interval
// instead of one per check. Between syncs a share refills at
// fill_amount/N, capped at bucket_capacity/N, so a failed sync (counted
// in fluxgate_redis_lazy_syncs_total, and tried again as soon as the
// period allows) leaves the agent deciding with its share of the limit;
// what it takes meanwhile is charged at the next sync that succeeds. A
// limiter's due syncs leave together, one pipeline each batch window (a
// tenth of the sync period, at most 5ms; lazybatch.go), so a key's sync
// costs a share of a round trip, not a goroutine and a round trip of its
// own. The script takes running totals, so a sync whose reply was lost
// is never charged twice, and the global bucket may go into debt (down
// to -bucket_capacity) for tokens agents took before they learnt it was
// empty.
//
// Overshoot bound of lazy sync. Redis holds back, for each other agent
// it counts, the share it granted that agent at its last sync and that
// agent's local refill since, up to one sync period's
// (fill_amount/(N·num_sync)). That covers everything the agent may have
// taken without Redis knowing: within a period of its last sync, its
// grant and its refill since; past it, less than one period's share,
// since reaching that makes it sync. Redis keeps counting an agent that
// holds unreported takes: it syncs them no later than an interval and a
// period after its previous sync (at once when the key was idle longer),
// inside the activity window (interval + 3 periods) with two periods to
// spare. So, with N agents syncing on schedule, in any window of one
// interval the agents admit at most what exact mode admits plus the local refill that can run ahead of Redis: one sync
// period's refill, fill_amount/num_sync, summed over the agents. Under
// steady overload that is at most L·(1 + 1/num_sync) per window for a
// limit of L tokens per interval, 1.25 L with the default num_sync 4;
// a busy key syncs once a period as before, and a cold key's unreported
// takes stay below a period's share, so waiting up to an interval to
// sync does not widen the bound. On top of it, when a key is new on an
// agent, the agent decides before its first sync with a starting share
// of fill_amount/(num_sync·N'), N' the agent count this limiter last saw
// (1 on a fresh agent): at most N·fill_amount/num_sync more, once; and
// an agent that last saw fewer agents (N' < N) runs ahead of Redis by up
// to fill_amount/(N'·num_sync) (a period's refill if busy, its
// unreported takes if cold) instead of fill_amount/(N·num_sync) until
// its next sync: (1/N' − 1/N)·fill_amount/num_sync more for each such
// agent, once per change in N (0.83·fill_amount/num_sync in all for
// three agents that first sync one after the other). The bound
// assumes the syncs succeed: an agent cut off from Redis keeps admitting
// fill_amount/N per interval, and once the others stop counting it (an
// interval and three sync periods) they share the whole limit, so each
// such agent can add fill_amount/N per interval. An agent whose key was
// idle for longer than the activity window is no longer counted, and its
// local share may meanwhile have refilled to bucket_capacity/N: up to
// that much more when the key is next busy there, once. Measured
// (test/redis, three agents, 12 clients, L = 1,000/s, num_sync 4, 20
// runs at load 2.5–7.5): 890–992 per window under steady overload,
// 2,439–2,872 in the first. The test asserts at most 2,750 there
// (exact mode's 2,000 and 750 of starting shares); the agent count
// rising from 1 to 3 as the agents first sync can add about 208 more,
// and the one run above 2,750 was at load 7.
//
// Lazy sync's local shares keep the same memory budget, counted as
// ShareBytes plus the key each (a share keeps its key, for its syncs:
// about 120,000 shares under 32-byte keys per 32 MiB). An evicted share
// still sends what it took: its pending sync leaves with the next batch,
// even a cold key's that would have waited; only if that sync fails
// is it not retried, and those tokens (at most one share) are lost to
// Redis. The key then starts again as new on this agent: at most
// fill_amount/(num_sync·N') more, once per eviction. Redis keys are
// bounded by BoundKey and expire (see RedisLimiterOptions.MaxIdle).
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
	// MaxMemory bounds the buckets, as the limiter counts them
	// (BucketBytes each): making a bucket past it evicts the least
	// recently used one. Default DefaultMaxMemory.
	MaxMemory int64
}

// Result is the outcome of Take or Peek.
type Result struct {
	Allowed   bool
	Remaining float64       // tokens left after the call
	Limit     float64       // the bucket capacity
	Wait      time.Duration // until the requested tokens are available; 0 when allowed
	Reset     time.Duration // until the bucket is full again
}

// maxShards is the most shards a limiter spreads its buckets over.
const maxShards = 64

// Limiter is a set of token buckets sharing one set of limits.
type Limiter struct {
	limits    atomic.Pointer[Limits]
	maxIdle   time.Duration
	delay     bool
	maxMemory int64
	seed      maphash.Seed
	shards    []shard // a power of two of them
	evictions atomic.Uint64
}

type shard struct {
	mu      sync.Mutex
	buckets slab // guarded by mu
}

type bucket struct {
	tokens float64
	last   int64 // unix nanoseconds of the last refill
	used   int64 // unix nanoseconds of the last Take or Return
}

// New returns a Limiter with no buckets.
func New(opts Options) *Limiter {
	l := &Limiter{maxIdle: opts.MaxIdle, delay: opts.DelayInitialFill, maxMemory: opts.MaxMemory, seed: maphash.MakeSeed()}
	if l.maxIdle <= 0 {
		l.maxIdle = 2 * time.Hour
	}
	if l.maxMemory <= 0 {
		l.maxMemory = DefaultMaxMemory
	}
	lim := opts.Limits
	l.limits.Store(&lim)
	l.shards = make([]shard, shardsFor(l.maxMemory))
	for i := range l.shards {
		l.shards[i].buckets = newSlab(int(l.maxMemory / int64(len(l.shards)) / BucketBytes))
	}
	return l
}

// shard returns the shard of key and the key's hash, which stands for the
// key in it.
func (l *Limiter) shard(key string) (*shard, uint64) {
	h := maphash.String(l.seed, key)
	return &l.shards[h&uint64(len(l.shards)-1)], h
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
	sh, h := l.shard(key)
	sh.mu.Lock()
	if b := sh.buckets.peek(h); b != nil && n > 0 {
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
	sh, h := l.shard(key)
	sh.mu.Lock()
	stored := sh.buckets.get(h)
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
			var evicted bool
			if stored, evicted = sh.buckets.add(h, b); evicted {
				l.evictions.Add(1)
			}
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
		sh.buckets.each(func(i uint32) {
			if b := sh.buckets.slots[i].bucket; b.used < cutoff && refillsToFull(b, lim, t) {
				sh.buckets.remove(i)
				dropped++
			}
		})
		sh.buckets.compact()
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
		n += sh.buckets.n
		sh.mu.Unlock()
	}
	return n
}

// Bytes is the memory the buckets hold, as the limiter counts it
// (BucketBytes each); at most MaxMemory, or one bucket per shard when
// MaxMemory is smaller than that.
func (l *Limiter) Bytes() int64 { return int64(l.Len()) * BucketBytes }

// Evictions is the number of buckets evicted to keep within MaxMemory.
func (l *Limiter) Evictions() uint64 { return l.evictions.Load() }
