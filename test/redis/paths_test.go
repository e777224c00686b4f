package redis

import (
	"context"
	"flag"
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/fluxgate/fluxgate/controlpoint"
	"github.com/fluxgate/fluxgate/controlpoint/ratelimit"
	"github.com/fluxgate/fluxgate/internal/pace"
)

var (
	pathsReps      = flag.Int("paths.reps", 3, "BenchmarkRedisPaths: interleaved repetitions (medians are reported)")
	pathsDuration  = flag.Duration("paths.duration", 3*time.Second, "BenchmarkRedisPaths: length of one closed-loop measurement")
	pathsCallers   = flag.Int("paths.callers", 50, "BenchmarkRedisPaths: concurrent callers in the closed loop")
	pathsPipelines = flag.Int("paths.pipelines", 0, "BenchmarkRedisPaths: RedisOptions.Pipelines of the engines (0: the default)")
	pathsWide      = flag.Int("paths.wide", 0, "BenchmarkRedisPaths: RedisOptions.WidePipelines of the engines (0: the default)")
	pathsStreams   = flag.Int("paths.streams", 0, "BenchmarkRedisPaths: RedisOptions.Streams of the engines (0: the default; -1: pipelines); the -pipe modes always use pipelines")
	pathsOnly      = flag.String("paths.only", "", "BenchmarkRedisPaths: run only this closed-loop mode (for a CPU profile of one path; the × floor column is then empty), or \"paced\" for floor, exact and exact-pipe at 5,000/s only")
)

// BenchmarkRedisPaths measures the Redis paths of global rate limits
// against the one-round-trip-per-decision floor, in one interleaved run,
// and prints a table of medians:
//
//   - floor: a bare EVALSHA loop of tokenbucket.lua with an exact
//     decision's arguments, -paths.callers goroutines on one go-redis
//     client, 64 keys (where envoy ratelimit and FluxGate before shared
//     round trips sit: one round trip per decision);
//   - exact: whole Engine.Check decisions with a backend: redis token
//     bucket (deadline, breaker, metrics included), same callers, 64 keys;
//   - exact-10k and lazy-10k: the same with 10,000 keys, exact and with
//     lazy_sync (num_sync 4);
//   - exact-pipe and exact-10k-pipe: exact and exact-10k with
//     RedisOptions.Streams -1, calls on go-redis pipelines (pipe.go)
//     rather than written as they come (stream.go);
//   - paced: floor, exact and exact-pipe at a steady 5,000 decisions/s for 2 s,
//     latency from each call's intended start; with -paths.paired, the
//     two take turns in short slices instead (see paired_test.go) and
//     every repetition's p99 ratio is printed; -paths.paired.pipelines
//     and -paths.paired.streams add exact contenders on pipelines and
//     on streams to the turns.
//
// CPU is this process's (the agent's side: engine, client, lazy syncs)
// and redis-server's, per decision.
//
//	go test ./test/redis -run '^$' -bench RedisPaths -benchtime 1x
//	go test ./test/redis -run '^$' -bench RedisPaths -benchtime 1x -paths.only paced -paths.reps 1 -paths.paired 10s
func BenchmarkRedisPaths(b *testing.B) {
	srv := Start(b)
	src, err := os.ReadFile("../../controlpoint/ratelimit/tokenbucket.lua")
	if err != nil {
		b.Fatal(err)
	}
	c := srv.Client(b)
	script := goredis.NewScript(string(src))
	if err := script.Load(context.Background(), c).Err(); err != nil {
		b.Fatal(err)
	}
	floor := func(_ context.Context, g, n int) error {
		key := "{fluxgate:bench/floor:0:" + strconv.Itoa((n*7+g)%64) + "}:tb"
		return script.EvalSha(context.Background(), c, []string{key}, 1e9, 1e9, 1e6, "0", 1.0, "t", 7_200_000, "0").Err()
	}
	run := strconv.FormatInt(benchRuns.Add(1), 10)
	checkWith := func(o ratelimit.RedisOptions, name, params string, keys int) func(context.Context, int, int) error {
		o.Client = srv.Client(b)
		e := newEngineWith(b, o,
			limiterPolicy(b, "paths-"+name+"-"+run, limiter("ingress", 1e9, params)))
		return func(ctx context.Context, g, n int) error {
			var d controlpoint.Decision
			client := strconv.Itoa((n*(*pathsCallers) + g) % keys)
			e.Check(ctx, time.Now(), &controlpoint.Request{ControlPoint: "ingress", Labels: map[string]string{"client": client}}, &d)
			if !d.Accepted || d.Limiters[0].Failure != "" {
				return fmt.Errorf("decision not made by Redis: %+v", d.Limiters)
			}
			return nil
		}
	}
	defaults := ratelimit.RedisOptions{Pipelines: *pathsPipelines, WidePipelines: *pathsWide, Streams: *pathsStreams}
	piped := defaults
	piped.Streams = -1
	check := func(name, params string, keys int) func(context.Context, int, int) error {
		return checkWith(defaults, name, params, keys)
	}
	const exactParams = "failure_mode: fail_closed, redis_timeout: 1s"
	modes := []pathMode{
		{"floor", floor},
		{"exact", check("exact", exactParams, 64)},
		{"exact-10k", check("exact10k", exactParams, 10_000)},
		{"lazy-10k", check("lazy10k", "lazy_sync: {enabled: true, num_sync: 4}, redis_timeout: 1s", 10_000)},
		{"exact-pipe", checkWith(piped, "exactpipe", exactParams, 64)},
		{"exact-10k-pipe", checkWith(piped, "exact10kpipe", exactParams, 10_000)},
	}
	// Paced: the floor, exact, and exact on the pipe (the default before
	// streams), interleaved.
	paced := []pathMode{modes[0], modes[1], modes[4]}
	if *pathsPaired > 0 {
		for _, f := range strings.FieldsFunc(*pathsPairedPipelines, func(r rune) bool { return r == ',' }) {
			n, err := strconv.Atoi(f)
			if err != nil || n < 1 {
				b.Fatalf("-paths.paired.pipelines %q: want numbers of pipelines ≥ 1, comma-separated", *pathsPairedPipelines)
			}
			o := ratelimit.RedisOptions{Pipelines: n, WidePipelines: n, Streams: -1}
			paced = append(paced, pathMode{"exact, " + f + " pipelines", checkWith(o, "exact-p"+f, exactParams, 64)})
		}
		for _, f := range strings.FieldsFunc(*pathsPairedStreams, func(r rune) bool { return r == ',' }) {
			n, err := strconv.Atoi(f)
			if err != nil || n < 1 {
				b.Fatalf("-paths.paired.streams %q: want numbers of streams ≥ 1, comma-separated", *pathsPairedStreams)
			}
			o := ratelimit.RedisOptions{Streams: n}
			paced = append(paced, pathMode{"exact, " + f + " streams", checkWith(o, "exact-s"+f, exactParams, 64)})
		}
	}
	// Cold keys: 10,000 keys offered 16,000 checks/s in all (1.6 a key
	// a second, below lazy sync's 4 syncs a key a second).
	cold := []pathMode{modes[2], modes[3]}
	switch *pathsOnly {
	case "":
	case "paced": // only floor, exact and exact-pipe at 5,000/s
		modes, cold = nil, nil
	default:
		modes = slices.DeleteFunc(modes, func(m pathMode) bool { return m.name != *pathsOnly })
		paced, cold = nil, nil
	}

	res := map[string][]map[string]float64{}
	var pairedReps [][]pairedResult
	for b.Loop() {
		for rep := range *pathsReps {
			for _, m := range modes {
				res[m.name] = append(res[m.name], closedLoop(b, srv, m.op))
			}
			if *pathsPaired > 0 && len(paced) > 0 {
				pairedReps = append(pairedReps, pairedPaced(srv.CPUSeconds, paced, 5000, *pathsPaired, *pathsSlice))
			}
			for _, m := range paced {
				if *pathsPaired > 0 {
					break
				}
				res["paced "+m.name] = append(res["paced "+m.name], openLoop(b, srv, c, m.op, 5000))
			}
			for _, m := range cold {
				res["cold "+m.name] = append(res["cold "+m.name], openLoop(b, srv, c, m.op, 16000))
			}
			b.Logf("repetition %d/%d done", rep+1, *pathsReps)
		}
	}
	med := func(key, metric string) float64 {
		var xs []float64
		for _, m := range res[key] {
			xs = append(xs, m[metric])
		}
		if len(xs) == 0 {
			return math.NaN()
		}
		slices.Sort(xs)
		return xs[len(xs)/2]
	}
	var out strings.Builder
	fmt.Fprintf(&out, "%d interleaved repetitions of %v, %d callers; medians; GOMAXPROCS %d\n\n", *pathsReps, *pathsDuration, *pathsCallers, runtime.GOMAXPROCS(0))
	fmt.Fprintln(&out, "| mode | checks/s | × floor | agent µs CPU/check | redis µs CPU/check | errors |")
	fmt.Fprintln(&out, "|---|---|---|---|---|---|")
	for _, m := range modes {
		fmt.Fprintf(&out, "| %s | %.0f | %.2f | %.1f | %.1f | %.0f |\n", m.name, med(m.name, "checks/s"), med(m.name, "checks/s")/med("floor", "checks/s"),
			med(m.name, "cpu"), med(m.name, "redis"), med(m.name, "errors"))
	}
	fmt.Fprintf(&out, "\nlazy-10k / exact-10k throughput: %.2f; CPU per check: %.2f\n",
		med("lazy-10k", "checks/s")/med("exact-10k", "checks/s"), med("lazy-10k", "cpu")/med("exact-10k", "cpu"))
	if len(pairedReps) > 0 {
		writePaired(&out, paced, pairedReps, 5000)
	} else {
		fmt.Fprintf(&out, "\n| paced 5,000/s | p50 µs | p99 µs | p99.9 µs | errors |\n|---|---|---|---|---|\n")
		for _, m := range paced {
			k := "paced " + m.name
			fmt.Fprintf(&out, "| %s | %.0f | %.0f | %.0f | %.0f |\n", m.name, med(k, "p50"), med(k, "p99"), med(k, "p99.9"), med(k, "errors"))
		}
		fmt.Fprintf(&out, "\nexact p99 / floor p99 at 5,000/s: %.2f\n", med("paced exact", "p99")/med("paced floor", "p99"))
	}
	fmt.Fprintf(&out, "\n| 10,000 cold keys, 16,000/s | p50 µs | p99 µs | agent µs CPU/check | redis µs CPU/check | scripts/check | errors |\n|---|---|---|---|---|---|---|\n")
	for _, m := range cold {
		k := "cold " + m.name
		fmt.Fprintf(&out, "| %s | %.0f | %.0f | %.1f | %.1f | %.2f | %.0f |\n", m.name, med(k, "p50"), med(k, "p99"), med(k, "cpu"), med(k, "redis"), med(k, "scripts"), med(k, "errors"))
	}
	fmt.Fprintf(&out, "\ncold lazy-10k / exact-10k agent CPU per check: %.2f\n", med("cold lazy-10k", "cpu")/med("cold exact-10k", "cpu"))
	fmt.Fprintf(&out, "process peak RSS %.0f MiB (the benchmark process: agent side of every mode, and its load)\n", peakRSSMiB())
	fmt.Print(out.String())
}

type pathMode struct {
	name string
	op   func(ctx context.Context, caller, n int) error
}

// closedLoop runs op from -paths.callers goroutines back to back for
// -paths.duration.
func closedLoop(b *testing.B, srv *Server, op func(context.Context, int, int) error) map[string]float64 {
	return closedLoopCPU(b, srv.CPUSeconds, op)
}

// closedLoopCPU is closedLoop with redisCPU reading the CPU seconds of
// the Redis side.
func closedLoopCPU(b *testing.B, redisCPU func() float64, op func(context.Context, int, int) error) map[string]float64 {
	ctx, cancel := context.WithTimeout(context.Background(), *pathsDuration)
	defer cancel()
	var calls, errs atomic.Int64
	var first sync.Once
	cpu0, rcpu0, t0 := processCPUSeconds(), redisCPU(), time.Now()
	var wg sync.WaitGroup
	for g := range *pathsCallers {
		wg.Go(func() {
			n := 0
			for ctx.Err() == nil {
				if err := op(context.Background(), g, n); err != nil {
					errs.Add(1)
					first.Do(func() { b.Logf("first error: %v", err) })
				}
				n++
			}
			calls.Add(int64(n))
		})
	}
	wg.Wait()
	elapsed := time.Since(t0).Seconds()
	n := float64(calls.Load())
	return map[string]float64{
		"checks/s": n / elapsed,
		"cpu":      (processCPUSeconds() - cpu0) / n * 1e6,
		"redis":    (redisCPU() - rcpu0) / n * 1e6,
		"errors":   float64(errs.Load()),
	}
}

// openLoop offers op at rate calls/s for 2 s and measures each call from
// its intended start, so a stall is not hidden.
func openLoop(b *testing.B, srv *Server, rc *goredis.Client, op func(context.Context, int, int) error, rate int) map[string]float64 {
	const dur = 2 * time.Second
	cpu0, rcpu0, calls0 := processCPUSeconds(), srv.CPUSeconds(), ScriptCalls(b, rc)
	lat, _, errs := paced(op, rate, dur, 0)
	total := float64(len(lat))
	cpu, rcpu := (processCPUSeconds()-cpu0)/total*1e6, (srv.CPUSeconds()-rcpu0)/total*1e6
	scripts := float64(ScriptCalls(b, rc)-calls0) / total
	slices.Sort(lat)
	return map[string]float64{"p50": quantileUs(lat, 0.5), "p99": quantileUs(lat, 0.99), "p99.9": quantileUs(lat, 0.999),
		"errors": float64(errs), "cpu": cpu, "redis": rcpu, "scripts": scripts}
}

// paced offers op at rate calls/s for d from 64 goroutines, the calls
// numbered from first, and returns each call's latency from its intended
// start (so a stall is not hidden), from its actual start (the call's
// own time, without the pacer's and the scheduler's lag), and how many
// failed.
//
// The pacer sleeps until each call's intended start with a nanosleep on
// a thread of its own (internal/pace): time.Sleep would last a whole
// millisecond whenever the process idles (the netpoller's timeout is in
// ms), the calls would leave in bursts of about five, and the latency
// from the intended start would carry up to a millisecond of the
// pacer's own lateness — as it did in the figures recorded before
// 2026-12-06's second session.
func paced(op func(context.Context, int, int) error, rate int, d time.Duration, first int) (lat, own []time.Duration, failed int64) {
	total := max(1, int(float64(rate)*d.Seconds()))
	lat, own = make([]time.Duration, total), make([]time.Duration, total)
	todo := make(chan int, total)
	var errs atomic.Int64
	start := time.Now().Add(5 * time.Millisecond)
	interval := time.Second / time.Duration(rate)
	var wg sync.WaitGroup
	for g := range 64 {
		wg.Go(func() {
			for i := range todo {
				t0 := time.Now()
				if err := op(context.Background(), g, first+i); err != nil {
					errs.Add(1)
				}
				own[i] = time.Since(t0)
				lat[i] = time.Since(start.Add(time.Duration(i) * interval))
			}
		})
	}
	runtime.LockOSThread() // pace.Until sleeps the thread
	for i := range total {
		pace.Until(start.Add(time.Duration(i) * interval))
		todo <- i
	}
	runtime.UnlockOSThread()
	close(todo)
	wg.Wait()
	return lat, own, errs.Load()
}

// quantileUs is the q quantile of sorted latencies, in µs.
func quantileUs(sorted []time.Duration, q float64) float64 {
	return float64(sorted[int(q*float64(len(sorted)-1))].Microseconds())
}

func processCPUSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

func peakRSSMiB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			kb, _ := strconv.ParseFloat(strings.Fields(line)[1], 64)
			return kb / 1024
		}
	}
	return 0
}
