package ratelimit

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	redistest "github.com/fluxgate/fluxgate/test/redis"
)

// newPipeBackend is a backend whose exact decisions go on pipelines
// even on a standalone Redis: these tests are the pipe's.
func newPipeBackend(t testing.TB, c RedisClient) *RedisBackend {
	t.Helper()
	b, err := NewRedisBackend(RedisOptions{Client: c, Streams: -1})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// roundTrips counts what a go-redis client sends: single commands and
// pipelines (each one round trip), and the commands inside pipelines.
type roundTrips struct {
	single, pipelines, piped atomic.Int64
}

func (r *roundTrips) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (r *roundTrips) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		r.single.Add(1)
		return next(ctx, cmd)
	}
}

func (r *roundTrips) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		r.pipelines.Add(1)
		r.piped.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

// Concurrent decisions share round trips: 50 callers taking from 10
// buckets need far fewer round trips than decisions, every decision is
// made by Redis, and Redis charged exactly the tokens the decisions
// admitted. The scripts are flushed first, so the pipelines also find
// them missing and reload them.
func TestConcurrentDecisionsShareRoundTrips(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	var rt roundTrips
	c.AddHook(&rt)
	b := newPipeBackend(t, c)
	ctx := context.Background()
	if err := c.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	const callers, each, keys, capacity = 50, 100, 10, 400.0
	l := b.NewLimiter(RedisLimiterOptions{Scope: "ns/share:0", Timeout: 5 * time.Second,
		Limits: Limits{Capacity: capacity, FillAmount: 1, Interval: time.Hour, Continuous: true}})
	var admitted [keys]atomic.Int64
	var failures atomic.Int64
	var wg sync.WaitGroup
	for g := range callers {
		wg.Go(func() {
			for i := range each {
				k := (g + i) % keys
				r := l.Take(ctx, time.Now(), strconv.Itoa(k), 1)
				if r.Failure != "" {
					failures.Add(1)
				}
				if r.Allowed {
					admitted[k].Add(1)
				}
			}
		})
	}
	wg.Wait()
	if n := failures.Load(); n > 0 {
		t.Fatalf("%d decisions were not made by Redis", n)
	}
	evals := rt.single.Load() + rt.piped.Load()
	trips := rt.single.Load() + rt.pipelines.Load()
	t.Logf("%d decisions: %d round trips (%d single commands, %d pipelines of %d commands)",
		callers*each, trips, rt.single.Load(), rt.pipelines.Load(), rt.piped.Load())
	if evals < callers*each {
		t.Fatalf("%d commands sent for %d decisions", evals, callers*each)
	}
	if trips > callers*each*3/4 {
		t.Errorf("%d round trips for %d concurrent decisions: they do not share round trips", trips, callers*each)
	}
	if rt.pipelines.Load() == 0 {
		t.Errorf("no pipeline was sent")
	}
	for k := range keys {
		// Each key got 500 takes of 1 against 400 tokens: 400 admitted,
		// and the bucket holds what was not taken (refill is 1 an hour).
		got := admitted[k].Load()
		if got != capacity {
			t.Errorf("key %d: %d admitted, want %v", k, got, capacity)
		}
		left, err := c.HGet(ctx, l.Key(strconv.Itoa(k)), "t").Float64()
		if err != nil {
			t.Fatal(err)
		}
		if left > 1 || left < 0 {
			t.Errorf("key %d: %v tokens left in Redis, want 0 (plus at most the hour's refill)", k, left)
		}
	}
}

// A decision whose deadline passes while it waits for a lane returns at
// its deadline by its failure mode, and is never sent: Redis does not
// charge a take the caller already decided without it.
func TestQueuedCallPastDeadlineIsNotSent(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	b, err := NewRedisBackend(RedisOptions{Client: c, Streams: -1, Pipelines: 2, WidePipelines: 2, BreakerErrors: 1000})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := b.Load(ctx); err != nil {
		t.Fatal(err)
	}
	lim := Limits{Capacity: 10, FillAmount: 10, Interval: time.Hour, Continuous: true}
	slow := b.NewLimiter(RedisLimiterOptions{Scope: "ns/slow:0", Limits: lim, Timeout: 2 * time.Second})
	fast := b.NewLimiter(RedisLimiterOptions{Scope: "ns/fast:0", Limits: lim, Timeout: 50 * time.Millisecond, FailureMode: FailClosed})

	srv.Signal(t, "STOP") // Redis stalls with its connections open
	stopped := true
	defer func() {
		if stopped {
			srv.Signal(t, "CONT")
		}
	}()
	// Two slow calls take both lanes and wait on the stalled Redis.
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() { slow.Take(ctx, time.Now(), "lane"+strconv.Itoa(i), 1) })
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		b.pipe.mu.Lock()
		running := b.pipe.running
		b.pipe.mu.Unlock()
		if running == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the slow calls did not take both lanes")
		}
	}
	// These queue behind them and give up at their 50ms deadline.
	for i := range 5 {
		r := fast.Take(ctx, time.Now(), "queued"+strconv.Itoa(i), 1)
		if r.Failure != "timeout" || r.Allowed {
			t.Errorf("queued take %d = %+v, want fail_closed by timeout", i, r)
		}
	}
	srv.Signal(t, "CONT")
	stopped = false
	wg.Wait()
	for i := range 5 {
		n, err := c.Exists(ctx, fast.Key("queued"+strconv.Itoa(i))).Result()
		if err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("the queued take %d reached Redis after its caller gave up", i)
		}
	}
	// The pipe works on: a decision made by Redis.
	if r := fast.Take(ctx, time.Now(), "after", 1); r.Failure != "" || !r.Allowed {
		t.Errorf("take after the stall = %+v", r)
	}
}

// takeCall is one take of 1 from key's bucket, as a pipe call.
func takeCall(ctx context.Context, l *RedisLimiter, key string) *pipeCall {
	lim := *l.limits.Load()
	return &pipeCall{ctx: ctx, script: l.script, keys: []string{l.Key(key)},
		args: []any{lim.Capacity, lim.FillAmount, lim.Interval.Microseconds(), "1", 1.0, "t", l.ttl(&lim).Milliseconds(), "0"}}
}

// A pipeline of takes whose replies the network lost is not sent again
// on a Redis Cluster: each take ran once, so the bucket is charged once
// for each, and each call fails (its decision falls back to the failure
// mode). go-redis's Cluster client resends such a pipeline unless its
// commands say NoRetry.
func TestLostPipelineIsNotResent(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	link := &redistest.LossyLink{MinScripts: 2}
	b := newPipeBackend(t, cl.ClientVia(t, link.Dial))
	ctx := context.Background()
	if err := b.Load(ctx); err != nil {
		t.Fatal(err)
	}
	l := b.NewLimiter(RedisLimiterOptions{Scope: "ns/lost:0", Timeout: 5 * time.Second,
		Limits: Limits{Capacity: 1000, FillAmount: 1, Interval: time.Hour, Continuous: true}})
	if r := l.Take(ctx, time.Now(), "k", 1); r.Failure != "" {
		t.Fatalf("first take: %+v", r)
	}
	var calls []*pipeCall
	for range 5 {
		calls = append(calls, takeCall(ctx, l, "k"))
	}
	link.Arm()
	b.pipe.exec(ctx, calls, true)
	if link.Hits() != 1 || link.Lost() != 5 {
		t.Fatalf("the link lost %d replies in %d faults, want 5 in 1", link.Lost(), link.Hits())
	}
	for i, c := range calls {
		if c.err == nil {
			t.Errorf("take %d whose reply was lost succeeded (%v): it was sent again", i, c.reply)
		}
	}
	left, err := cl.Client(t).HGet(ctx, l.Key("k"), "t").Float64()
	if err != nil {
		t.Fatal(err)
	}
	if got := 1000 - int(left); got != 6 {
		t.Errorf("6 takes charged %d tokens: takes whose replies were lost were sent again", got)
	}
}

// A take sent with an outdated slot map is still followed to the master
// that now owns its slot: MOVED means Redis did not run the script, and
// the take is sent once more, to the right node, within its call. Alone
// and in a pipeline.
func TestMovedTakeIsFollowed(t *testing.T) {
	for _, piped := range []bool{false, true} {
		t.Run(map[bool]string{false: "single", true: "pipeline"}[piped], func(t *testing.T) { testMovedTakeIsFollowed(t, piped) })
	}
}

// waitSlotOn waits until every master says slot is served by want (by
// address; ids maps addresses to node IDs), or fails after 10 s (a hang
// guard: gossip settles in milliseconds).
func waitSlotOn(t *testing.T, masters []string, ids map[string]string, slot int64, want string) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(10 * time.Second)
	for _, m := range masters {
		c := goredis.NewClient(&goredis.Options{Addr: m, MaxRetries: -1})
		for {
			owner := ""
			shards, err := c.ClusterShards(ctx).Result()
			for _, sh := range shards {
				for _, r := range sh.Slots {
					if r.Start <= slot && slot <= r.End {
						for _, n := range sh.Nodes {
							if n.Role == "master" {
								owner = n.ID
							}
						}
					}
				}
			}
			if err == nil && owner == ids[want] {
				break
			}
			if time.Now().After(deadline) {
				_ = c.Close()
				t.Fatalf("%s still has slot %d on node %q (%v), want %s", m, slot, owner, err, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
		_ = c.Close()
	}
}

func testMovedTakeIsFollowed(t *testing.T, piped bool) {
	cl := redistest.StartCluster(t, 3)
	cc := cl.Client(t)
	b := newPipeBackend(t, cc)
	ctx := context.Background()
	l := b.NewLimiter(RedisLimiterOptions{Scope: "ns/moved:0", Timeout: 5 * time.Second,
		Limits: Limits{Capacity: 10, FillAmount: 1, Interval: time.Hour, Continuous: true}})
	if r := l.Take(ctx, time.Now(), "k", 1); r.Failure != "" { // the client reads the slot map
		t.Fatalf("first take: %+v", r)
	}
	// Move the empty slot of "m"'s bucket to another master behind the
	// client's back.
	slot, err := cc.ClusterKeySlot(ctx, l.Key("m")).Result()
	if err != nil {
		t.Fatal(err)
	}
	if k, _ := cc.ClusterKeySlot(ctx, l.Key("k")).Result(); k == slot {
		t.Fatalf("k and m share slot %d", slot)
	}
	masters, err := cl.Masters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	var owner string
	for _, m := range masters {
		c := goredis.NewClient(&goredis.Options{Addr: m, MaxRetries: -1})
		id, err := c.ClusterMyID(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		ids[m] = id
		if n, err := c.ClusterCountKeysInSlot(ctx, int(slot)).Result(); err != nil || n != 0 {
			t.Fatalf("slot %d on %s holds %d keys (%v), want none", slot, m, n, err)
		}
		_ = c.Close()
	}
	shards, err := cc.ClusterShards(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, sh := range shards {
		for _, r := range sh.Slots {
			if r.Start <= slot && slot <= r.End {
				for _, n := range sh.Nodes {
					for m, id := range ids {
						if n.Role == "master" && n.ID == id {
							owner = m
						}
					}
				}
			}
		}
	}
	var target string
	for _, m := range masters {
		if m != owner {
			target = m
			break
		}
	}
	if owner == "" || target == "" {
		t.Fatalf("slot %d: owner %q, masters %v", slot, owner, masters)
	}
	order := []string{target, owner}
	for _, m := range masters {
		if m != target && m != owner {
			order = append(order, m)
		}
	}
	// As a resharding moves a slot: importing on the target, migrating on
	// the owner, then assigned everywhere. The target's assignment while
	// importing bumps its config epoch; without it the owner's gossip
	// could take the slot back on some nodes (a flaky MOVED to the owner).
	setslot := func(m string, args ...any) {
		c := goredis.NewClient(&goredis.Options{Addr: m, MaxRetries: -1})
		defer func() { _ = c.Close() }()
		if err := c.Do(ctx, append([]any{"cluster", "setslot", slot}, args...)...).Err(); err != nil {
			t.Fatalf("CLUSTER SETSLOT %d %v on %s: %v", slot, args, m, err)
		}
	}
	setslot(target, "importing", ids[owner])
	setslot(owner, "migrating", ids[target])
	for _, m := range order {
		setslot(m, "node", ids[target])
	}
	waitSlotOn(t, masters, ids, int64(slot), target)
	takes := 1
	if piped {
		takes = 2
		calls := []*pipeCall{takeCall(ctx, l, "m"), takeCall(ctx, l, "m")}
		b.pipe.exec(ctx, calls, true)
		for i, c := range calls {
			if c.err != nil {
				t.Fatalf("piped take %d sent to %s, the slot now on %s: %v, want it followed", i, owner, target, c.err)
			}
		}
	} else if r := l.Take(ctx, time.Now(), "m", 1); r.Failure != "" || !r.Allowed {
		t.Fatalf("take sent to %s, the slot now on %s: %+v, want it followed and decided by Redis", owner, target, r)
	}
	tc := goredis.NewClient(&goredis.Options{Addr: target, MaxRetries: -1})
	defer func() { _ = tc.Close() }()
	left, err := tc.HGet(ctx, l.Key("m"), "t").Float64()
	if err != nil {
		t.Fatalf("the bucket is not on %s, the slot's new owner: %v", target, err)
	}
	if want := float64(10 - takes); left < want || left > want+0.01 {
		t.Errorf("the bucket holds %v tokens after %d takes of 1 from 10, want %v", left, takes, want)
	}
}

// The pipe's width follows the calls its round trips carry: wide while
// they carry about one (light load), narrow once they carry many, and
// steady in between (no flapping between the two widths).
func TestPipeWidthFollowsBatches(t *testing.T) {
	feed := func(p *pipe, n, times int) {
		for range times {
			p.sizeBatchLocked(n)
		}
	}
	p := &pipe{lanes: 2, wideLanes: 8}
	if w := p.widthLocked(); w != 8 {
		t.Fatalf("a new pipe's width = %d, want the wide 8", w)
	}
	feed(p, 1, 100)
	if w := p.widthLocked(); w != 8 {
		t.Errorf("after calls sent alone: width %d, want 8", w)
	}
	// A busy Redis: batches of 6 at the wide width.
	feed(p, 6, 20)
	if w := p.widthLocked(); w != 2 {
		t.Errorf("after batches of 6: width %d, want the narrow 2", w)
	}
	// Batches of 3 sit between the thresholds: the width stays as it is.
	feed(p, 3, 100)
	if w := p.widthLocked(); w != 2 {
		t.Errorf("narrow, then batches of 3: width %d, want 2", w)
	}
	feed(p, 1, 20)
	if w := p.widthLocked(); w != 8 {
		t.Errorf("after the load fell: width %d, want 8", w)
	}
	feed(p, 3, 100)
	if w := p.widthLocked(); w != 8 {
		t.Errorf("wide, then batches of 3: width %d, want 8", w)
	}
}

// At light load a burst of calls goes out at once, each alone, as bare
// EVALSHAs on their own connections would; once the pipe has narrowed
// (Redis busy) the same burst fills the narrow lanes and the rest queue
// for a shared round trip. Redis is stopped so that the calls stay in
// flight while the test looks.
func TestBurstWidth(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	b, err := NewRedisBackend(RedisOptions{Client: c, Streams: -1, Pipelines: 2, WidePipelines: 8, BreakerErrors: 1000})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := b.Load(ctx); err != nil {
		t.Fatal(err)
	}
	l := b.NewLimiter(RedisLimiterOptions{Scope: "ns/burst:0", Timeout: 10 * time.Second,
		Limits: Limits{Capacity: 100, FillAmount: 100, Interval: time.Hour, Continuous: true}})
	burst := func(narrow bool) (running, queued int) {
		t.Helper()
		b.pipe.mu.Lock()
		b.pipe.narrow = narrow
		b.pipe.batchAvg = 1
		if narrow {
			b.pipe.batchAvg = pipeNarrowAbove + 1
		}
		b.pipe.mu.Unlock()
		srv.Signal(t, "STOP")
		var wg sync.WaitGroup
		var failed atomic.Int64
		for i := range 5 {
			wg.Go(func() {
				if r := l.Take(ctx, time.Now(), "k"+strconv.Itoa(i), 1); r.Failure != "" || !r.Allowed {
					failed.Add(1)
				}
			})
		}
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
			b.pipe.mu.Lock()
			running, queued = b.pipe.running, len(b.pipe.queue)
			b.pipe.mu.Unlock()
			if running+queued == 5 || time.Now().After(deadline) {
				break
			}
		}
		srv.Signal(t, "CONT")
		wg.Wait()
		if n := failed.Load(); n != 0 {
			t.Errorf("%d of the burst's takes were not admitted by Redis", n)
		}
		return running, queued
	}
	if running, queued := burst(false); running != 5 || queued != 0 {
		t.Errorf("light load: %d in flight and %d queued, want all 5 in flight at once", running, queued)
	}
	if running, queued := burst(true); running != 2 || queued != 3 {
		t.Errorf("narrowed: %d in flight and %d queued, want 2 and 3", running, queued)
	}
}

// Under a closed loop of 50 callers Redis is busy: the pipe narrows, and
// its round trips carry many calls each.
func TestBusyPipeNarrows(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	var rt roundTrips
	c.AddHook(&rt)
	b := newPipeBackend(t, c)
	ctx := context.Background()
	if err := b.Load(ctx); err != nil {
		t.Fatal(err)
	}
	l := b.NewLimiter(RedisLimiterOptions{Scope: "ns/busy:0", Timeout: 5 * time.Second,
		Limits: Limits{Capacity: 1e9, FillAmount: 1e9, Interval: time.Hour, Continuous: true}})
	const callers, each = 50, 200
	var wg sync.WaitGroup
	var narrow, samples atomic.Int64
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(time.Millisecond):
			}
			b.pipe.mu.Lock()
			if b.pipe.narrow {
				narrow.Add(1)
			}
			b.pipe.mu.Unlock()
			samples.Add(1)
		}
	}()
	for g := range callers {
		wg.Go(func() {
			for i := range each {
				l.Take(ctx, time.Now(), strconv.Itoa((g*each+i)%64), 1)
			}
		})
	}
	wg.Wait()
	close(done)
	trips := rt.single.Load() + rt.pipelines.Load()
	t.Logf("%d takes in %d round trips; narrow in %d of %d samples", callers*each, trips, narrow.Load(), samples.Load())
	if n, s := narrow.Load(), samples.Load(); s > 0 && n*2 < s {
		t.Errorf("narrow in %d of %d samples under 50 callers, want most", n, s)
	}
	if per := float64(callers*each) / float64(trips); per < pipeNarrowAbove {
		t.Errorf("%.1f takes a round trip under 50 callers, want more than %d", per, pipeNarrowAbove)
	}
}
