package redis

import (
	"context"
	"flag"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	pathsPaired = flag.Duration("paths.paired", 0, "BenchmarkRedisPaths: pace floor and exact at 5,000/s in turns of -paths.slice for this long each, the order alternating each round, quantiles over all slices pooled (0: one 2 s run per mode instead)")
	pathsSlice  = flag.Duration("paths.slice", 250*time.Millisecond, "BenchmarkRedisPaths: length of one turn of -paths.paired")

	pathsPairedPipelines = flag.String("paths.paired.pipelines", "", "BenchmarkRedisPaths: with -paths.paired, more exact contenders with these fixed numbers of pipelines (RedisOptions.Pipelines and WidePipelines; comma-separated, e.g. 2,8)")
	pathsPairedStreams   = flag.String("paths.paired.streams", "", "BenchmarkRedisPaths: with -paths.paired, more exact contenders written on these numbers of streams (RedisOptions.Streams; comma-separated, e.g. 1,2)")
)

// The paced p99 of one 2 s run per mode is mostly the machine's: on two
// shared cores a scheduler stall or a neighbour's burst lands in one
// mode's run and not in the other's, and the exact/floor p99 ratio came
// out anywhere from 0.16 to 2.12 over six runs. The paired run lets the
// contenders take turns in short slices instead, the order alternating
// each round, and pools each one's latencies over all its slices before
// taking quantiles, so that whatever the machine does over more than a
// slice falls on both alike. It also counts, round by round, whose slice
// had the higher p99: a paired comparison that does not hang on the few
// worst stalls of the whole run.

// pairedResult is one contender's figures from a paired run.
type pairedResult struct {
	p50, p99, p999 float64 // µs from the intended start, over all slices pooled
	ownP50, ownP99 float64 // µs from the actual start (the call's own time)
	errors         int64
	cpu, redis     float64   // µs per call over its slices: this process's, redis-server's
	calls          int       // recorded, warm-up left out
	sliceP99       []float64 // µs, round by round
}

// pairedPaced offers each of modes rate calls/s for each in all, in turns
// of slice, after one unrecorded warm-up slice each; redisCPU reads the
// CPU seconds of the Redis side.
func pairedPaced(redisCPU func() float64, modes []pathMode, rate int, each, slice time.Duration) []pairedResult {
	rounds := max(1, int(each/slice))
	lat, own := make([][]time.Duration, len(modes)), make([][]time.Duration, len(modes))
	out := make([]pairedResult, len(modes))
	next := make([]int, len(modes)) // the next call's number, so keys go on turning
	order := make([]int, len(modes))
	for i := range order {
		order[i] = i
	}
	for i, m := range modes {
		l, _, _ := paced(m.op, rate, slice, next[i])
		next[i] += len(l)
	}
	for range rounds {
		for _, i := range order {
			cpu0, rcpu0 := processCPUSeconds(), redisCPU()
			l, o, errs := paced(modes[i].op, rate, slice, next[i])
			out[i].cpu += processCPUSeconds() - cpu0
			out[i].redis += redisCPU() - rcpu0
			out[i].calls += len(l)
			next[i] += len(l)
			out[i].errors += errs
			lat[i] = append(lat[i], l...)
			own[i] = append(own[i], o...)
			slices.Sort(l)
			out[i].sliceP99 = append(out[i].sliceP99, quantileUs(l, 0.99))
		}
		slices.Reverse(order)
	}
	for i := range out {
		slices.Sort(lat[i])
		slices.Sort(own[i])
		out[i].ownP50, out[i].ownP99 = quantileUs(own[i], 0.5), quantileUs(own[i], 0.99)
		n := float64(len(lat[i]))
		out[i].p50, out[i].p99, out[i].p999 = quantileUs(lat[i], 0.5), quantileUs(lat[i], 0.99), quantileUs(lat[i], 0.999)
		out[i].cpu, out[i].redis = out[i].cpu/n*1e6, out[i].redis/n*1e6
	}
	return out
}

// writePaired prints every repetition's paired figures, modes[0] being
// the floor, and the ratio of each other mode's p99 to the floor's.
func writePaired(out *strings.Builder, modes []pathMode, reps [][]pairedResult, rate int) {
	fmt.Fprintf(out, "\nPaired at %d/s: turns of %v, %v each, order alternating each round; quantiles over all slices pooled,\n", rate, *pathsSlice, *pathsPaired)
	fmt.Fprintf(out, "from each call's intended start (own: from its actual start, without the pacer's lag)\n\n")
	fmt.Fprintln(out, "| rep | mode | p50 µs | p99 µs | p99.9 µs | p99 / floor's | rounds its slice p99 > floor's | own p50 µs | own p99 µs | agent µs CPU/check | redis µs CPU/check | errors |")
	fmt.Fprintln(out, "|---|---|---|---|---|---|---|---|---|---|---|---|")
	ratios := make([][]float64, len(modes))
	for r, res := range reps {
		floor := res[0]
		for i, m := range modes {
			x := res[i]
			worse := 0
			for k, p := range x.sliceP99 {
				if p > floor.sliceP99[k] {
					worse++
				}
			}
			fmt.Fprintf(out, "| %d | %s | %.0f | %.0f | %.0f | %.2f | %d/%d | %.0f | %.0f | %.1f | %.1f | %d |\n", r+1, m.name, x.p50, x.p99, x.p999,
				x.p99/floor.p99, worse, len(x.sliceP99), x.ownP50, x.ownP99, x.cpu, x.redis, x.errors)
			ratios[i] = append(ratios[i], x.p99/floor.p99)
		}
	}
	fmt.Fprintln(out)
	for i, m := range modes[1:] {
		fmt.Fprintf(out, "%s p99 / %s p99 at %d/s, paired, each repetition: %.3f\n", m.name, modes[0].name, rate, ratios[i+1])
	}
}

// TestPathsPairedTakesTurns checks the paired run's bookkeeping with two
// modes that record their calls: each gets one warm-up slice and then
// the same number of slices, the order alternating each round, its calls
// numbered on from one slice to the next, and a latency from the
// intended start that is never below the call's own duration.
func TestPathsPairedTakesTurns(t *testing.T) {
	var mu sync.Mutex
	var seq []int       // the mode of each call, in order
	calls := [2][]int{} // each mode's call numbers
	mode := func(i int, d time.Duration) pathMode {
		return pathMode{fmt.Sprint("m", i), func(_ context.Context, _, n int) error {
			mu.Lock()
			seq = append(seq, i)
			calls[i] = append(calls[i], n)
			mu.Unlock()
			time.Sleep(d)
			return nil
		}}
	}
	const rate, slice, each = 1000, 20 * time.Millisecond, 100 * time.Millisecond
	res := pairedPaced(func() float64 { return 0 }, []pathMode{mode(0, 0), mode(1, 3*time.Millisecond)}, rate, each, slice)

	perSlice := rate * int(slice/time.Millisecond) / 1000
	rounds := int(each / slice)
	// Slices run one after another, so the calls come in runs of one
	// mode: warm-up 0, 1, then 0 1, 1 0, 0 1, … (adjacent equal turns merge).
	turns := []int{0, 1}
	order := []int{0, 1}
	for range rounds {
		turns = append(turns, order...)
		slices.Reverse(order)
	}
	want := slices.Compact(turns)
	if got := slices.Compact(slices.Clone(seq)); !slices.Equal(got, want) {
		t.Errorf("turns: got %v, want %v", got, want)
	}
	for i, r := range res {
		if r.calls != rounds*perSlice || len(r.sliceP99) != rounds {
			t.Errorf("mode %d: %d calls over %d slices, want %d over %d", i, r.calls, len(r.sliceP99), rounds*perSlice, rounds)
		}
		got := slices.Sorted(slices.Values(calls[i]))
		for k, n := range got {
			if n != k {
				t.Fatalf("mode %d: call numbers %v…, want 0, 1, 2, … without repeats", i, got[:k+1])
			}
		}
		if len(got) != (rounds+1)*perSlice {
			t.Errorf("mode %d: %d calls with the warm-up, want %d", i, len(got), (rounds+1)*perSlice)
		}
	}
	if res[1].p50 < 3000 || res[1].sliceP99[0] < 3000 || res[1].ownP50 < 3000 {
		t.Errorf("a 3 ms call measured below 3 ms: p50 %.0f µs, first slice's p99 %.0f µs from the intended start, p50 %.0f µs from its own", res[1].p50, res[1].sliceP99[0], res[1].ownP50)
	}
	if res[1].p50 < res[1].ownP50 {
		t.Errorf("latency from the intended start (p50 %.0f µs) below that from the actual start (%.0f µs)", res[1].p50, res[1].ownP50)
	}
}
