package ratelimit

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	goredis "github.com/redis/go-redis/v9"

	redistest "github.com/fluxgate/fluxgate/test/redis"
)

// eventually polls cond for up to 2 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	eventuallyWithin(t, what, 2*time.Second, cond)
}

// eventuallyWithin polls cond for up to d.
func eventuallyWithin(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Lazy decisions are local; syncs charge Redis with what was taken and
// grant the share; a second agent on the same bucket is counted and
// shares it.
func TestLazySyncChargesAndShares(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	b := newBackend(t, c)
	// 100 tokens, 1 per 400ms: the refill is negligible in this test;
	// num_sync 4 syncs every 100ms.
	opts := RedisLimiterOptions{Scope: "ns/lazy:0", Limits: Limits{Capacity: 100, FillAmount: 0.001, Interval: 400 * time.Millisecond, Continuous: true}, Timeout: testTimeout, NumSync: 4}
	a := b.NewLimiter(opts)
	if !a.Lazy() || a.Key("k") != "{fluxgate:ns/lazy:0:k}:lz" {
		t.Fatalf("lazy %v, key %q", a.Lazy(), a.Key("k"))
	}
	ctx := context.Background()
	// A new key starts with one period's refill (nothing here) and asks
	// Redis at once; then the whole bucket is this agent's share.
	if r := a.Take(ctx, time.Now(), "k", 1); r.Allowed {
		t.Fatalf("first take allowed with an empty starting share: %+v", r)
	}
	eventually(t, "the first sync", func() bool { return a.Peek(ctx, time.Now(), "k", 99).Allowed })
	for i := range 30 {
		if r := a.Take(ctx, time.Now(), "k", 1); !r.Allowed {
			t.Fatalf("take %d rejected: %+v", i, r)
		}
	}
	tokens := func() float64 {
		v, err := c.HGet(ctx, a.Key("k"), "t").Float64()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	eventually(t, "the takes charged to Redis", func() bool { return near(tokens(), 70, 0.1) })

	// A second agent: counted at its first sync, granted a share of what
	// the first agent is not holding; the first agent's next grant halves.
	taken := 30.0
	count := func(r RedisResult) {
		if r.Allowed {
			taken++
		}
	}
	o := b.NewLimiter(opts)
	count(o.Take(ctx, time.Now(), "k", 1))
	eventually(t, "the second agent's first sync", func() bool { return o.LazyLen() == 1 && o.Peek(ctx, time.Now(), "k", 0).Remaining > 0 })
	time.Sleep(110 * time.Millisecond)
	count(a.Take(ctx, time.Now(), "k", 1)) // due: syncs
	eventually(t, "the first agent's share to shrink", func() bool { return !a.Peek(ctx, time.Now(), "k", 40).Allowed })
	n, err := c.HLen(ctx, a.Key("k")).Result()
	if err != nil || n != 2+4*2 {
		t.Errorf("hash has %d fields (%v), want t, l and c/s/g/e for two agents", n, err)
	}
	// Every token taken is charged exactly once.
	time.Sleep(110 * time.Millisecond)
	count(o.Take(ctx, time.Now(), "k", 1))
	count(a.Take(ctx, time.Now(), "k", 1))
	eventually(t, "every take charged", func() bool { return near(tokens(), 100-taken, 0.1) })
	t.Logf("%v taken, %v left in Redis", taken, tokens())
}

// A lazy limiter whose Redis is gone decides locally, at once, with its
// share's refill, and counts the failed syncs.
func TestLazySyncWithoutRedis(t *testing.T) {
	c := goredis.NewClient(&goredis.Options{Addr: closedAddr(t), ContextTimeoutEnabled: true, MaxRetries: -1, DialerRetries: 1})
	t.Cleanup(func() { _ = c.Close() })
	b := newBackend(t, c)
	l := b.NewLimiter(RedisLimiterOptions{Scope: "ns/lazy:1", Limits: Limits{Capacity: 10, FillAmount: 10, Interval: time.Second, Continuous: true}, Timeout: 5 * time.Millisecond, NumSync: 4})
	now := time.Now()
	admitted := 0
	for i := range 100 {
		r := l.Take(context.Background(), now.Add(time.Duration(i)*10*time.Millisecond), "k", 1)
		if r.Failure != "" {
			t.Errorf("decision %d reports %q with Redis gone; lazy sync decides locally", i, r.Failure)
		}
		if r.Allowed {
			admitted++
		}
	}
	// 1 s of decisions: the starting share (10/4) and 1 s of refill (10).
	if admitted < 11 || admitted > 14 {
		t.Errorf("admitted %d in 1 s without Redis, want about 12", admitted)
	}
	eventually(t, "failed syncs counted", func() bool {
		return testutil.ToFloat64(b.syncs.WithLabelValues("error"))+testutil.ToFloat64(b.syncs.WithLabelValues("timeout")) > 0
	})
}

// A local share swept after MaxIdle and made again starts its running
// total at 0: Redis must not read the drop as tokens given back (issue
// 14, quotas exact across sweeps).
func TestLazySweptShareIsNotRefunded(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	b := newBackend(t, c)
	// 10 tokens, refill negligible while the test runs; syncs every 100ms.
	l := b.NewLimiter(RedisLimiterOptions{Scope: "ns/lazy:2", Limits: Limits{Capacity: 10, FillAmount: 0.001, Interval: 400 * time.Millisecond, Continuous: true}, Timeout: testTimeout, NumSync: 4, MaxIdle: time.Millisecond})
	ctx := context.Background()
	tokens := func() float64 {
		v, err := c.HGet(ctx, l.Key("k"), "t").Float64()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	l.Take(ctx, time.Now(), "k", 1) // refused (no starting share); the first sync grants the whole bucket
	eventually(t, "the first sync", func() bool { return l.Peek(ctx, time.Now(), "k", 10).Allowed })
	for range 10 {
		l.Take(ctx, time.Now(), "k", 1)
	}
	eventually(t, "the takes charged to Redis", func() bool { return near(tokens(), 0, 0.1) })
	time.Sleep(110 * time.Millisecond) // the last sync answered, the share idle
	if n := l.SweepLazy(time.Now()); n != 1 {
		t.Fatalf("swept %d shares, want 1", n)
	}
	l.Take(ctx, time.Now(), "k", 1) // a new share: syncs at once
	eventually(t, "the new share's sync", func() bool { return l.LazyLen() == 1 && l.Peek(ctx, time.Now(), "k", 0).Remaining >= 0 })
	time.Sleep(50 * time.Millisecond)
	if got := tokens(); got > 0.1 {
		t.Fatalf("Redis holds %v tokens after the share was swept and made again, want 0", got)
	}
	if r := l.Peek(ctx, time.Now(), "k", 1); r.Allowed {
		t.Fatalf("a drained bucket admits after a sweep: %+v", r)
	}
}

// Syncs of many keys, each checked once (cold keys), leave together in
// batches: far fewer round trips than syncs, and every take is charged
// to its key in Redis.
func TestLazySyncsOfColdKeysShareRoundTrips(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	b := newBackend(t, c)
	if err := b.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	var rt roundTrips
	c.AddHook(&rt)
	// 1,000 tokens a second per key, num_sync 4: a 5ms batch window.
	l := b.NewLimiter(RedisLimiterOptions{Scope: "ns/lazy:cold", Limits: Limits{Capacity: 1000, FillAmount: 1000, Interval: time.Second, Continuous: true},
		Timeout: testTimeout, NumSync: 4})
	ctx := context.Background()
	const keys = 200
	for i := range keys {
		// One take per key, a key every half millisecond: about ten keys
		// due in each batch window.
		if r := l.Take(ctx, time.Now(), strconv.Itoa(i), 1); !r.Allowed {
			t.Fatalf("take %d refused: %+v", i, r)
		}
		time.Sleep(500 * time.Microsecond)
	}
	eventually(t, "every key synced", func() bool { return testutil.ToFloat64(b.syncs.WithLabelValues("ok")) >= keys })
	trips := rt.single.Load() + rt.pipelines.Load()
	t.Logf("%d syncs: %d round trips (%d single commands, %d pipelines of %d commands)", keys, trips, rt.single.Load(), rt.pipelines.Load(), rt.piped.Load())
	if trips > keys/2 {
		t.Errorf("%d round trips for %d syncs: the syncs do not share round trips", trips, keys)
	}
	for i := range keys {
		left, err := c.HGet(ctx, l.Key(strconv.Itoa(i)), "t").Float64()
		if err != nil {
			t.Fatalf("key %d: %v", i, err)
		}
		if left >= 1000 {
			t.Errorf("key %d: the take was not charged (%v tokens left)", i, left)
		}
	}
}

// A lazy limiter whose sync period rounds to nothing still decides and
// syncs (its batch window has a floor).
func TestLazySyncTinyPeriod(t *testing.T) {
	srv := redistest.Start(t)
	b := newBackend(t, srv.Client(t))
	l := b.NewLimiter(RedisLimiterOptions{Scope: "ns/lazy:tiny", Limits: Limits{Capacity: 10, FillAmount: 10, Interval: 3 * time.Nanosecond, Continuous: true},
		Timeout: testTimeout, NumSync: 4})
	l.Take(context.Background(), time.Now(), "k", 1)
	eventually(t, "a sync", func() bool { return testutil.ToFloat64(b.syncs.WithLabelValues("ok")) >= 1 })
}

// A sync that is not due for a while does not keep the sending goroutine
// waking every batch window until it is: the goroutine sleeps until the
// sync is due (an idle agent with a key taken once a minute wakes once a
// minute, not 200 times a second).
func TestLazySyncQueueSleepsUntilDue(t *testing.T) {
	srv := redistest.Start(t)
	b := newBackend(t, srv.Client(t))
	l := b.NewLimiter(RedisLimiterOptions{Scope: "ns/lazy:sleep", Limits: Limits{Capacity: 100, FillAmount: 100, Interval: time.Minute, Continuous: true},
		Timeout: testTimeout, NumSync: 1})
	ctx := context.Background()
	l.Take(ctx, time.Now(), "k", 1) // a fresh share syncs at once
	eventually(t, "the first sync", func() bool { return testutil.ToFloat64(b.syncs.WithLabelValues("ok")) >= 1 })
	l.Take(ctx, time.Now(), "k", 1) // its sync is due in a minute
	q := &l.lazy.syncs
	q.mu.Lock()
	pending, from := len(q.pending), q.wakes
	q.mu.Unlock()
	if pending != 1 {
		t.Fatalf("%d syncs pending, want 1", pending)
	}
	// 40 batch windows (5ms each) of waiting.
	time.Sleep(40 * q.window)
	q.mu.Lock()
	woke := q.wakes - from
	q.mu.Unlock()
	if woke > 2 {
		t.Errorf("the sending goroutine woke %d times in %v with one sync due in a minute, want at most 2", woke, 40*q.window)
	}
}

// waitCharged polls until Redis holds total as this agent's running
// total for every key (each key's takes were all synced), for up to
// within.
func waitCharged(t *testing.T, c *goredis.Client, l *RedisLimiter, keys int, total float64, within time.Duration) {
	t.Helper()
	ctx := context.Background()
	for deadline := time.Now().Add(within); ; time.Sleep(20 * time.Millisecond) {
		missing := 0
		for i := range keys {
			if v, err := c.HGet(ctx, l.Key(strconv.Itoa(i)), "c:"+l.lazy.id).Float64(); err != nil || v != total {
				missing++
			}
		}
		if missing == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d keys do not have %v takes charged in Redis after %v", missing, keys, total, within)
		}
	}
}

// Many cold keys, each checked less often than it may sync and taking
// far less than one sync period's share: their takes wait for company
// (up to one interval) instead of syncing at every check, so Redis runs
// far fewer scripts than there are checks; and every take still reaches
// Redis. (Before, each check past the sync period was one sync: one
// script per check, as many as exact mode.)
func TestLazySyncColdKeysSyncLessThanOncePerCheck(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	b := newBackend(t, c)
	// Interval 2 s, num_sync 8: a 250ms sync period; a limit far above
	// the load, so that no key's takes come near one period's share.
	l := b.NewLimiter(RedisLimiterOptions{Scope: "ns/lazy:coldcalls", Limits: Limits{Capacity: 1e6, FillAmount: 1e6, Interval: 2 * time.Second, Continuous: true},
		Timeout: testTimeout, NumSync: 8})
	ctx := context.Background()
	const keys, rounds = 500, 6
	take := func() {
		for i := range keys {
			if r := l.Take(ctx, time.Now(), strconv.Itoa(i), 1); !r.Allowed {
				t.Fatalf("key %d refused: %+v", i, r)
			}
		}
	}
	take() // a new share syncs at once
	waitCharged(t, c, l, keys, 1, 5*time.Second)
	if err := c.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	for range rounds {
		time.Sleep(300 * time.Millisecond) // past each key's sync period
		take()
	}
	// The oldest unreported take is synced one interval after the sync
	// was due: allow twice that.
	waitCharged(t, c, l, keys, 1+rounds, 2*(2*time.Second+250*time.Millisecond))
	calls := redistest.ScriptCalls(t, c)
	perCheck := float64(calls) / (keys * rounds)
	t.Logf("%d checks of %d cold keys: %d script calls, %.2f per check", keys*rounds, keys, calls, perCheck)
	if perCheck > 0.5 {
		t.Errorf("%.2f script calls per check of a cold key, want at most 0.5 (one sync per key every interval)", perCheck)
	}
}

// A busy key, whose takes reach one sync period's share between its
// syncs, still syncs once a period: it does not wait like a cold key.
func TestLazySyncBusyKeySyncsEveryPeriod(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	b := newBackend(t, c)
	// 80 tokens per 400ms, num_sync 4: a 100ms period whose share is 20
	// tokens; 25 tokens taken every 150ms.
	l := b.NewLimiter(RedisLimiterOptions{Scope: "ns/lazy:busy", Limits: Limits{Capacity: 100, FillAmount: 80, Interval: 400 * time.Millisecond, Continuous: true},
		Timeout: testTimeout, NumSync: 4})
	ctx := context.Background()
	l.Take(ctx, time.Now(), "0", 0) // a new share: its first sync
	eventually(t, "the first sync", func() bool { return l.Peek(ctx, time.Now(), "0", 50).Allowed })
	if err := c.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	const rounds = 6
	for range rounds {
		time.Sleep(150 * time.Millisecond)
		for range 25 {
			l.Take(ctx, time.Now(), "0", 1)
		}
	}
	time.Sleep(150 * time.Millisecond) // the last round's sync
	calls := redistest.ScriptCalls(t, c)
	t.Logf("%d rounds of 25 takes: %d script calls", rounds, calls)
	if calls < rounds {
		t.Errorf("%d script calls for %d rounds of a busy key, want one sync a round at least", calls, rounds)
	}
}

// agentsSeen is the agent count key's local share last heard from Redis.
func agentsSeen(l *RedisLimiter, key string) float64 {
	sh := l.lazy.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if nd := sh.buckets.peek(key); nd != nil && !nd.val.fresh {
		return nd.val.agents
	}
	return 0
}

// An agent whose cold key's takes wait for their sync (up to an
// interval) is still counted by Redis meanwhile: another agent syncing
// the key then shares the bucket with it, and Redis keeps its fields.
// (With Redis's activity window at three sync periods, the waiting
// agent was dropped and its share given to the others.)
func TestLazySyncCountsAgentWaitingToSync(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	b := newBackend(t, c)
	// Interval 2 s, num_sync 8: a 250ms sync period.
	opts := RedisLimiterOptions{Scope: "ns/lazy:waiting", Limits: Limits{Capacity: 1e6, FillAmount: 1e6, Interval: 2 * time.Second, Continuous: true},
		Timeout: testTimeout, NumSync: 8}
	a, o := b.NewLimiter(opts), b.NewLimiter(opts)
	ctx := context.Background()
	a.Take(ctx, time.Now(), "k", 1) // a new share syncs at once
	eventually(t, "the first agent's first sync", func() bool { return agentsSeen(a, "k") == 1 })
	time.Sleep(300 * time.Millisecond)
	a.Take(ctx, time.Now(), "k", 1) // cold: waits for company
	time.Sleep(time.Second)         // four sync periods without a sync from a
	o.Take(ctx, time.Now(), "k", 1)
	eventually(t, "the second agent's first sync", func() bool { return agentsSeen(o, "k") != 0 })
	if n := agentsSeen(o, "k"); n != 2 {
		t.Errorf("the second agent shares the bucket with %v agents, want 2: the first, waiting to sync, was dropped", n)
	}
	if _, err := c.HGet(ctx, a.Key("k"), "c:"+a.lazy.id).Result(); err != nil {
		t.Errorf("the first agent's running total is gone from Redis: %v", err)
	}
	// It syncs one interval after its sync was due.
	eventuallyWithin(t, "the waiting take charged", 4*time.Second, func() bool {
		v, err := c.HGet(ctx, a.Key("k"), "c:"+a.lazy.id).Float64()
		return err == nil && v == 2
	})
}

// A cold key's sync waits up to an interval; when its share is evicted
// meanwhile, the sync leaves with the next batch instead: its takes
// reach Redis, and the queue does not hold the evicted share for an
// interval.
func TestLazyEvictedShareSyncsAtOnce(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	b := newBackend(t, c)
	// Interval 10 s: a cold key's takes would wait 10 s. 64 KiB: one
	// shard of about 250 shares.
	l := b.NewLimiter(RedisLimiterOptions{Scope: "ns/lazy:evict", Limits: Limits{Capacity: 1e6, FillAmount: 1e6, Interval: 10 * time.Second, Continuous: true},
		Timeout: testTimeout, NumSync: 4, MaxMemory: 64 << 10})
	ctx := context.Background()
	l.Take(ctx, time.Now(), "0", 1) // a new share syncs at once
	waitCharged(t, c, l, 1, 1, 5*time.Second)
	l.Take(ctx, time.Now(), "0", 1) // cold: queued for 10 s
	for i := 1; l.LazyEvictions() == 0; i++ {
		if i > 10_000 {
			t.Fatal("no share evicted")
		}
		l.Take(ctx, time.Now(), strconv.Itoa(i), 1)
	}
	sh := l.lazy.shard("0")
	sh.mu.Lock()
	held := sh.buckets.peek("0") != nil
	sh.mu.Unlock()
	if held {
		t.Fatal("the cold key's share was not the one evicted")
	}
	// Well before the interval is over.
	waitCharged(t, c, l, 1, 2, 3*time.Second)
}

// BenchmarkLazyTakeWithoutRedis is what a lazy decision costs while its
// Redis is unreachable: it must stay a local decision (no round trip, no
// wait for a sync), as TestLazySyncWithoutRedis checks by its result.
func BenchmarkLazyTakeWithoutRedis(b *testing.B) {
	c := goredis.NewClient(&goredis.Options{Addr: closedAddr(b), ContextTimeoutEnabled: true, MaxRetries: -1, DialerRetries: 1})
	b.Cleanup(func() { _ = c.Close() })
	l := newBackend(b, c).NewLimiter(RedisLimiterOptions{Scope: "ns/lazy:bench", Limits: Limits{Capacity: 1e9, FillAmount: 1e9, Interval: time.Second, Continuous: true}, Timeout: 5 * time.Millisecond, NumSync: 4})
	now := time.Now()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		l.Take(context.Background(), now.Add(time.Duration(i)*time.Microsecond), "k", 1)
	}
}
