package redis

import (
	"context"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/fluxgate/fluxgate/controlpoint"
)

// BenchmarkRedisDecision compares a full engine decision with a redis
// token bucket (engine) against the floor: a bare EVALSHA loop of the same
// script with the same arguments on the same Redis (evalsha). Both run
// with b.RunParallel, so concurrent decisions share the client's pool,
// in three interleaved rounds. p99-µs is the 99th percentile of one call.
//
//	go test ./test/redis -run '^$' -bench RedisDecision -benchtime 2s
func BenchmarkRedisDecision(b *testing.B) {
	srv := Start(b)
	for range 3 {
		benchFloor(b, srv)
		benchEngine(b, srv)
	}
}

func benchFloor(b *testing.B, srv *Server) {
	src, err := os.ReadFile("../../controlpoint/ratelimit/tokenbucket.lua")
	if err != nil {
		b.Fatal(err)
	}
	b.Run("evalsha", func(b *testing.B) {
		c := srv.Client(b)
		script := goredis.NewScript(string(src))
		if err := script.Load(context.Background(), c).Err(); err != nil {
			b.Fatal(err)
		}
		var n int64
		var mu sync.Mutex
		parallel(b, func(lat *[]time.Duration) {
			mu.Lock()
			n++
			key := "{fluxgate:bench/floor:0:" + strconv.FormatInt(n%64, 10) + "}:tb"
			mu.Unlock()
			start := time.Now()
			if err := script.EvalSha(context.Background(), c, []string{key}, 1e9, 1e9, 1e6, "1", 1.0, "t", 7_200_000, "0").Err(); err != nil {
				b.Error(err)
			}
			*lat = append(*lat, time.Since(start))
		})
	})
}

// BenchmarkRedisLazyVsExact compares whole engine decisions of a redis
// token bucket in exact mode (one EVALSHA per decision) and with
// lazy_sync (num_sync 4: local decisions, syncs off the decision path),
// in three interleaved rounds of one run, 64 keys.
//
//	go test ./test/redis -run '^$' -bench RedisLazyVsExact -benchtime 2s
func BenchmarkRedisLazyVsExact(b *testing.B) {
	srv := Start(b)
	for range 3 {
		benchEngine(b, srv)
		benchLazy(b, srv)
	}
}

func benchLazy(b *testing.B, srv *Server) {
	benchMode(b, srv, "lazy", "lazy_sync: {enabled: true, num_sync: 4}, redis_timeout: 1s")
}

func benchEngine(b *testing.B, srv *Server) {
	benchMode(b, srv, "engine", "failure_mode: fail_closed, redis_timeout: 1s")
}

// benchRuns numbers the policies of benchMode: each run of a benchmark
// function gets fresh buckets (a lazy agent that just stopped would
// otherwise hold a share for a few sync periods).
var benchRuns atomic.Int64

func benchMode(b *testing.B, srv *Server, name, params string) {
	b.Run(name, func(b *testing.B) {
		ps := limiterPolicy(b, "bench-"+name+"-"+strconv.FormatInt(benchRuns.Add(1), 10), limiter("ingress", 1e9, params))
		e := newEngine(b, srv, ps)
		var n int64
		var mu sync.Mutex
		parallel(b, func(lat *[]time.Duration) {
			mu.Lock()
			n++
			client := strconv.FormatInt(n%64, 10)
			mu.Unlock()
			var d controlpoint.Decision
			start := time.Now()
			e.Check(context.Background(), start, &controlpoint.Request{ControlPoint: "ingress", Labels: map[string]string{"client": client}}, &d)
			*lat = append(*lat, time.Since(start))
			if !d.Accepted {
				b.Errorf("rejected: %+v", d.Limiters)
			}
		})
	})
}

// parallel runs op b.N times over RunParallel goroutines and reports the
// p99 latency op recorded.
func parallel(b *testing.B, op func(lat *[]time.Duration)) {
	var mu sync.Mutex
	var all []time.Duration
	b.SetParallelism(4) // 4 × GOMAXPROCS concurrent callers
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		lat := make([]time.Duration, 0, 1024)
		for pb.Next() {
			op(&lat)
		}
		mu.Lock()
		all = append(all, lat...)
		mu.Unlock()
	})
	b.StopTimer()
	if len(all) > 0 {
		slices.Sort(all)
		b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
	}
}

// BenchmarkPacedDecisionLatency offers a steady 5,000 decisions/s for 2 s
// per mode against local Redis and reports the decision latency
// percentiles and how many decisions missed the 5ms Redis deadline; the
// results are in BENCHMARKS.md. Run it once:
//
//	go test ./test/redis -run '^$' -bench PacedDecisionLatency -benchtime 1x
func BenchmarkPacedDecisionLatency(b *testing.B) {
	srv := Start(b)
	for _, mode := range []struct{ name, params string }{
		{"exact", "failure_mode: fail_closed, redis_timeout: 5ms"},
		{"lazy", "lazy_sync: {enabled: true, num_sync: 4}, redis_timeout: 5ms"},
	} {
		b.Run(mode.name, func(b *testing.B) {
			e := newEngine(b, srv, limiterPolicy(b, "paced-"+mode.name, limiter("ingress", 1e9, mode.params)))
			for b.Loop() {
				pacedLatency(b, e)
			}
		})
	}
}

func pacedLatency(b *testing.B, e *controlpoint.Engine) {
	const rate, dur, workers = 5000, 2 * time.Second, 8
	var mu sync.Mutex
	var all []time.Duration
	failed := 0
	var wg sync.WaitGroup
	start := time.Now()
	for w := range workers {
		wg.Go(func() {
			var lat []time.Duration
			f := 0
			interval := time.Second * workers / rate
			next := start.Add(time.Duration(w) * interval / workers)
			for next.Before(start.Add(dur)) {
				time.Sleep(time.Until(next))
				next = next.Add(interval)
				var d controlpoint.Decision
				t0 := time.Now()
				e.Check(context.Background(), t0, &controlpoint.Request{ControlPoint: "ingress", Labels: map[string]string{"client": "c" + strconv.Itoa(w)}}, &d)
				lat = append(lat, time.Since(t0))
				if d.Limiters[0].Failure != "" {
					f++
				}
			}
			mu.Lock()
			all, failed = append(all, lat...), failed+f
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(all) == 0 {
		b.Fatal("no decisions")
	}
	slices.Sort(all)
	p50, p99, p999 := all[len(all)/2], all[len(all)*99/100], all[len(all)*999/1000]
	b.Logf("%d decisions in %v (%.0f/s): p50 %v, p99 %v, p99.9 %v, max %v; %d missed the 5ms deadline",
		len(all), time.Since(start).Round(time.Millisecond), float64(len(all))/time.Since(start).Seconds(), p50, p99, p999, all[len(all)-1], failed)
	b.ReportMetric(float64(p50.Microseconds()), "p50-µs")
	b.ReportMetric(float64(p99.Microseconds()), "p99-µs")
	b.ReportMetric(float64(p999.Microseconds()), "p99.9-µs")
	b.ReportMetric(float64(failed), "missed-deadline")
}
