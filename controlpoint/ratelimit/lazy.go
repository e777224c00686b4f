package ratelimit

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"hash/maphash"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// lazy is the local side of a RedisLimiter with lazy sync: one local
// bucket per key holding this agent's share of the global bucket.
// Decisions only touch the local bucket. A sync runs off the decision
// path (queued, and sent with the other due syncs of the limiter in one
// pipeline: lazybatch.go; when it is due: scheduleLocked, once a period
// for a busy key, up to an interval later for a cold one) and is one
// script call: it charges the tokens this agent took since its last
// sync to the global bucket, and answers how many agents share the bucket
// and this agent's new share: 1/agents of the tokens left that no other
// agent may be spending (Redis holds back each other agent's last share
// and its local refill since). The local share becomes that, less what
// was taken while the call was in flight.
//
// Between syncs the local bucket refills at fill_amount/agents, capped at
// bucket_capacity/agents, so an agent that cannot reach Redis keeps
// deciding with its share of the limit (the tokens it takes meanwhile are
// charged at the next sync that succeeds).
type lazy struct {
	l       *RedisLimiter
	numSync int
	period  time.Duration // interval / numSync
	stale   time.Duration // the interval: how long a cold key's takes may wait for their sync
	id      string        // this agent in the bucket hashes

	epochs atomic.Uint64 // numbers the local shares made, for the script

	agentsMu sync.Mutex
	agents   float64 // guarded by agentsMu: the agent count last seen, for new keys

	seed      maphash.Seed
	shards    []lazyShard // a power of two of them
	evictions atomic.Uint64
	syncs     syncQueue
}

type lazyShard struct {
	mu      sync.Mutex
	buckets store[lazyBucket] // guarded by mu, as are the buckets
	swept   int64             // caller clock of the last sweep
}

// Sync states of a lazyBucket.
const (
	syncIdle      = iota
	syncScheduled // queued in lazy.syncs
	syncRunning
)

type lazyBucket struct {
	bucket         // the local share: tokens and last refill (caller's clock)
	wall   int64   // time.Now at last, to carry the refill time across a sync
	agents float64 // agents sharing the bucket, as the last sync said (≥ 1)
	total  float64 // net tokens taken here since the bucket was made
	ack    float64 // total as of the last sync Redis answered
	state  int
	due    int64  // wall clock when the next sync may start
	since  int64  // wall clock of the oldest take no sync has sent yet; 0 when none
	at     int64  // wall clock when the queued sync leaves (state syncScheduled)
	qi     int    // guarded by syncQueue.mu, not the shard's: 1 + the queued sync's place in syncQueue.pending; 0 when not queued
	fresh  bool   // no sync has answered yet
	epoch  string // this share among those made for the key: its total counts from 0
	// bucket.used is the caller clock of the last decision.
}

func newLazy(l *RedisLimiter, numSync int, interval time.Duration, maxMemory int64) *lazy {
	var id [8]byte
	_, _ = rand.Read(id[:])
	z := &lazy{l: l, numSync: numSync, period: interval / time.Duration(numSync), stale: interval, id: hex.EncodeToString(id[:]), agents: 1, seed: maphash.MakeSeed()}
	z.syncs.window = max(min(z.period/10, maxSyncWindow), minSyncWindow)
	z.shards = make([]lazyShard, shardsFor(maxMemory))
	for i := range z.shards {
		z.shards[i].buckets = newStore[lazyBucket](maxMemory / int64(len(z.shards)))
	}
	return z
}

func (z *lazy) shard(key string) *lazyShard {
	return &z.shards[maphash.String(z.seed, key)&uint64(len(z.shards)-1)]
}

// held reports whether b is still key's share in sh (not evicted); the
// caller holds sh.mu.
func (sh *lazyShard) held(key string, b *lazyBucket) bool {
	nd := sh.buckets.peek(key)
	return nd != nil && &nd.val == b
}

// share is the local bucket's limits: 1/agents of the global ones.
func share(lim *Limits, agents float64) Limits {
	s := *lim
	s.Capacity /= agents
	s.FillAmount /= agents
	return s
}

// lazySweepEvery is how often, at most, a shard drops its idle buckets
// (when a new key arrives in it).
const lazySweepEvery = time.Minute

// do takes (or, with take false, peeks) n tokens from key's local share.
// It never waits on Redis.
func (z *lazy) do(now time.Time, key string, n float64, take bool) Result {
	lim := z.l.limits.Load()
	t, wall := now.UnixNano(), time.Now().UnixNano()
	sh := z.shard(key)
	sh.mu.Lock()
	var b *lazyBucket
	if nd := sh.buckets.get(key); nd != nil {
		b = &nd.val
	}
	if b == nil {
		z.agentsMu.Lock()
		agents := z.agents
		z.agentsMu.Unlock()
		// Until the first sync answers, the share is one sync period's
		// refill for the agent count this limiter last saw: the first
		// decisions on a new key do not wait, and cannot take a whole
		// bucket on each agent.
		nb := lazyBucket{bucket: bucket{last: t}, wall: wall, agents: agents, fresh: true}
		if !z.l.delay {
			nb.tokens = math.Min(lim.Capacity, lim.FillAmount/float64(z.numSync)) / agents
		}
		if !take {
			sh.mu.Unlock()
			return z.result(nb.tokens, nb.agents, lim, n, nb.tokens >= n)
		}
		nb.epoch = strconv.FormatUint(z.epochs.Add(1), 10)
		if t-sh.swept > int64(lazySweepEvery) {
			z.sweepLocked(sh, t)
		}
		nd, evicted := sh.buckets.add(key, nb, func(old *node[lazyBucket]) {
			// An evicted share's queued sync (a cold key's may wait up to
			// an interval) leaves with the next batch: what it took
			// reaches Redis, and the queue does not keep evicted shares.
			if ob := &old.val; ob.state == syncScheduled && ob.at > wall {
				ob.at = wall
				z.syncs.add(z, old.key, ob, wall)
			}
		})
		if evicted > 0 {
			z.evictions.Add(uint64(evicted))
		}
		b = &nd.val
	}
	s := share(lim, b.agents)
	// Worked on by value, written back when taking (b.qi is the queue's:
	// b is never copied whole).
	w := b.bucket
	refill(&w, &s, t)
	ok := w.tokens >= n
	if ok && take {
		w.tokens -= n
	}
	res := z.result(w.tokens, b.agents, lim, n, ok)
	if take {
		w.used = t
		b.bucket, b.wall = w, wall
		if ok {
			b.total += n
			if b.since == 0 && n != 0 {
				b.since = wall
			}
		}
		z.scheduleLocked(key, b, lim, wall, !ok)
	}
	sh.mu.Unlock()
	return res
}

// result is a decision on n tokens from a share holding tokens, for
// agents agents.
func (z *lazy) result(tokens, agents float64, lim *Limits, n float64, ok bool) Result {
	s := share(lim, agents)
	res := Result{Allowed: ok, Limit: lim.Capacity, Reset: waitFor(s.Capacity-tokens, &s)}
	if ok {
		// This agent's view of the global bucket.
		res.Remaining = math.Max(0, tokens*agents)
	} else {
		res.Wait = waitFor(n-tokens, &s)
	}
	return res
}

// giveBack returns n tokens to key's local share.
func (z *lazy) giveBack(now time.Time, key string, n float64) {
	lim := z.l.limits.Load()
	t, wall := now.UnixNano(), time.Now().UnixNano()
	sh := z.shard(key)
	sh.mu.Lock()
	if nd := sh.buckets.peek(key); nd != nil {
		b := &nd.val
		s := share(lim, b.agents)
		refill(&b.bucket, &s, t)
		b.wall = wall
		b.tokens = math.Min(b.tokens+n, s.Capacity)
		b.total -= n
		if b.since == 0 && n != 0 {
			b.since = wall
		}
		z.scheduleLocked(key, b, lim, wall, false)
	}
	sh.mu.Unlock()
}

// quantum is one sync period's share for agents agents: what an agent's
// share refills in one sync period, fill_amount/(agents·num_sync)
// (capped at its capacity), and at least one token.
func (z *lazy) quantum(lim *Limits, agents float64) float64 {
	return math.Max(1, math.Min(lim.Capacity, lim.FillAmount/float64(z.numSync))/agents)
}

// scheduleLocked queues key's sync, or brings a queued one forward, for
// when it should leave:
//   - when due (one period after the previous sync started, or at once
//     past that) for a new share, after a rejection (the share needs a
//     new grant), and once the takes not yet reported reach one period's
//     share (quantum): a busy key syncs once a period;
//   - for a cold key, whose unreported takes are fewer, when the oldest of
//     them is stale (one interval old), and no later than one interval
//     after the sync was due, so that Redis, which counts an agent while
//     it synced within stale + 3 periods, never drops an agent that holds
//     unreported takes (syncArgs);
//   - never, when nothing was taken and nothing was refused before the
//     sync is due.
//
// A sync already running is followed by finishSync. The caller holds the
// shard's mutex.
func (z *lazy) scheduleLocked(key string, b *lazyBucket, lim *Limits, wall int64, urgent bool) {
	if b.state == syncRunning {
		return
	}
	at := max(wall, b.due)
	pending := math.Abs(b.total - b.ack)
	switch {
	case urgent || b.fresh:
		if wall < b.due && pending == 0 {
			return // a rejection before the sync is due: nothing to tell Redis yet
		}
	case pending == 0:
		return
	case pending < z.quantum(lim, b.agents):
		since := b.since
		if since == 0 { // not expected: a total changed without a take
			since = wall
		}
		at = max(at, min(since, b.due)+int64(z.stale))
	}
	if b.state == syncScheduled && b.at <= at {
		return
	}
	b.state, b.at = syncScheduled, at
	z.syncs.add(z, key, b, at)
}

// startSync marks b's sync as running and returns what it sends. The
// caller holds the shard's mutex.
func (z *lazy) startSyncLocked(b *lazyBucket, start time.Time) (total, ack float64) {
	b.state = syncRunning
	b.since, b.at = 0, 0
	// The next sync may go one batch window early: it leaves at the
	// first batch after it is due, so syncs stay one period apart at most.
	b.due = start.Add(z.period - z.syncs.window).UnixNano()
	return b.total, b.ack
}

// finishSync applies a sync's answer (or failure) to key's bucket b; the
// sync started at start (wall clock).
func (z *lazy) finishSync(key string, b *lazyBucket, lim *Limits, start int64, total, grant, agents float64, err error) {
	z.l.b.syncs.WithLabelValues(syncResult(err)).Inc()
	sh := z.shard(key)
	wall := time.Now().UnixNano()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	b.state = syncIdle
	if err == nil {
		b.ack = total
		b.fresh = false
		b.agents = agents
		s := share(lim, agents)
		// The tokens taken while the call was in flight came out of the
		// old share and are not in the grant's reckoning yet.
		b.tokens = grant - (b.total - total)
		b.tokens = math.Max(-s.Capacity, math.Min(b.tokens, s.Capacity))
		// The grant includes the global refill up to now: the local
		// refill restarts from here, on the caller's clock. (A caller
		// that read its clock before this just gets no refill.)
		b.last += wall - b.wall
		b.wall = wall
		z.agentsMu.Lock()
		z.agents = agents
		z.agentsMu.Unlock()
	}
	if b.total != b.ack && sh.held(key, b) {
		// Tokens taken meanwhile: scheduled as any take. A failed sync:
		// tried again when due, its takes as old as the sync. An evicted
		// share is not retried: what it took since its last sync is lost
		// (see the package documentation).
		if err != nil && (b.since == 0 || b.since > start) {
			b.since = start
		}
		z.scheduleLocked(key, b, lim, wall, err != nil)
	}
}

func syncResult(err error) string {
	if err == nil {
		return "ok"
	}
	return errorReason(err)
}

// syncArgs are the lazy-sync script's arguments for key's share.
func (z *lazy) syncArgs(lim *Limits, epoch string, total, ack float64) []any {
	l := z.l
	cont, delay := "0", "0"
	if lim.Continuous {
		cont = "1"
	}
	if l.delay {
		delay = "1"
	}
	// An agent is counted while it synced within the last stale + 3
	// periods: an agent holding unreported takes syncs within stale + 1
	// period of its previous sync (scheduleLocked), and one or two missed
	// syncs do not change every other agent's share. Redis holds back at
	// most one period's local refill for each other agent (lazysync.lua).
	active := z.stale + 3*z.period
	return []any{lim.Capacity, lim.FillAmount, lim.Interval.Microseconds(), cont, z.id, total, ack,
		l.ttl(lim).Milliseconds(), delay, active.Microseconds(), epoch, z.period.Microseconds()}
}

// parseSync reads the lazy-sync script's reply: this agent's new share
// and the number of agents sharing the bucket.
func parseSync(reply []any) (grant, agents float64, err error) {
	if len(reply) != 3 {
		return 0, 0, fmt.Errorf("ratelimit: unexpected lazy sync reply %v", reply)
	}
	s, _ := reply[0].(string)
	n, _ := reply[1].(int64)
	grant, perr := strconv.ParseFloat(s, 64)
	if perr != nil || n < 1 {
		return 0, 0, fmt.Errorf("ratelimit: unexpected lazy sync reply %v", reply)
	}
	return grant, float64(n), nil
}

// sweepLocked drops the buckets of sh unused for MaxIdle that owe Redis
// nothing. The caller holds sh.mu.
func (z *lazy) sweepLocked(sh *lazyShard, now int64) int {
	sh.swept = now
	cutoff := now - int64(z.l.maxIdle)
	n := 0
	sh.buckets.each(func(nd *node[lazyBucket]) {
		if b := &nd.val; b.used < cutoff && b.state == syncIdle && b.total == b.ack {
			sh.buckets.remove(nd)
			n++
		}
	})
	return n
}

// sweep drops idle buckets from every shard.
func (z *lazy) sweep(now time.Time) int {
	n := 0
	for i := range z.shards {
		sh := &z.shards[i]
		sh.mu.Lock()
		n += z.sweepLocked(sh, now.UnixNano())
		sh.mu.Unlock()
	}
	return n
}

// len is the number of local buckets.
func (z *lazy) len() int {
	n := 0
	for i := range z.shards {
		sh := &z.shards[i]
		sh.mu.Lock()
		n += sh.buckets.len()
		sh.mu.Unlock()
	}
	return n
}

// bytes is the memory of the local buckets, as counted against the budget.
func (z *lazy) bytes() int64 {
	var n int64
	for i := range z.shards {
		sh := &z.shards[i]
		sh.mu.Lock()
		n += sh.buckets.bytes
		sh.mu.Unlock()
	}
	return n
}
