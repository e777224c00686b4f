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
	b := newBackend(t, c)
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
	b, err := NewRedisBackend(RedisOptions{Client: c, Pipelines: 2, BreakerErrors: 1000})
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
