package main

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	pb "github.com/fluxgate/fluxgate/controlpoint/controlpointpb"
	"github.com/fluxgate/fluxgate/internal/pace"
)

// The open loop's p99 at -rate is mostly the machine's: on two shared
// cores a stall of the scheduler or a neighbour's burst lands in one
// server's run and not in the other's, and whole runs differ by 2×. The
// paired open loop takes turns in short slices instead (-slice, the
// order alternating each round), so that what the machine does to the
// latency over more than a slice falls on every server alike, and pools
// each server's latencies over all its slices before taking quantiles.

// op is one call of a load mode: g the calling goroutine, n the call's
// number.
type op func(ctx context.Context, g, n int) error

// pairedOpenLoop drives every server in procs at -rate for -duration in
// all, in turns of slice each, by grpc-go's client or the lean one, and
// returns each one's p50 and p99 (ms) and failures by name.
func pairedOpenLoop(procs []*proc, slice time.Duration, lean bool) (map[string]map[string]float64, error) {
	ops := make([]op, len(procs))
	for i, p := range procs {
		if lean {
			l, err := newLeanClient(p.grpcAddr, []*pb.CheckRequest{checkRequest()})
			if err != nil {
				return nil, err
			}
			defer l.close()
			ops[i] = l.op
			continue
		}
		client, conn, err := dial(p.grpcAddr)
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		ops[i] = checkOp(client)
	}
	res := pairedOps(ops, *duration, slice)
	floor := res[len(res)-1] // the no-op server, last of procs
	out := map[string]map[string]float64{}
	for i, p := range procs {
		out[p.name] = map[string]float64{"p50 ms": res[i].p50, "p99 ms": res[i].p99, "failures": float64(res[i].failures),
			"rounds worse": float64(res[i].roundsAbove(floor)), "rounds": float64(len(res[i].sliceP99))}
	}
	return out, nil
}

// pairedResult is one contender's figures from pairedOps.
type pairedResult struct {
	p50, p99 float64         // ms from the intended send time, over all slices pooled
	failures int64           // calls that failed
	sliceP99 []time.Duration // each round's slice p99
}

// roundsAbove counts the rounds in which p's slice p99 was above o's.
func (p pairedResult) roundsAbove(o pairedResult) int {
	n := 0
	for r, x := range p.sliceP99 {
		if r < len(o.sliceP99) && x > o.sliceP99[r] {
			n++
		}
	}
	return n
}

// pairedOps offers each of ops -rate calls a second for each in all, in
// turns of slice, the order alternating each round, and returns each
// one's figures.
func pairedOps(ops []op, each, slice time.Duration) []pairedResult {
	rounds := max(1, int(each/slice))
	lat := make([][]time.Duration, len(ops))
	out := make([]pairedResult, len(ops))
	next := make([]int, len(ops)) // call numbers go on from slice to slice
	order := make([]int, len(ops))
	for i := range order {
		order[i] = i
	}
	for range rounds {
		for _, i := range order {
			l, f := pacedSlice(ops[i], slice, next[i])
			next[i] += len(l)
			lat[i] = append(lat[i], l...)
			out[i].failures += f
			slices.Sort(l)
			out[i].sliceP99 = append(out[i].sliceP99, l[int(0.99*float64(len(l)-1))])
		}
		slices.Reverse(order)
	}
	for i := range ops {
		slices.Sort(lat[i])
		out[i].p50, out[i].p99 = quantileMs(lat[i], 0.50), quantileMs(lat[i], 0.99)
	}
	return out
}

// pacedSlice offers -rate calls of o a second for d, numbered from first,
// each measured from its intended send time, and waits for the last
// answer.
func pacedSlice(o op, d time.Duration, first int) ([]time.Duration, int64) {
	total := max(1, int(float64(*rate)*d.Seconds()))
	lat := make([]time.Duration, total)
	intended := make(chan int, total)
	var failures atomic.Int64
	var wg sync.WaitGroup
	start := time.Now().Add(2 * time.Millisecond)
	interval := time.Second / time.Duration(*rate)
	for g := range min(total, 256) { // as many in flight as a stall of 50 ms holds at 5,000/s
		wg.Go(func() {
			for i := range intended {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				err := o(ctx, g, first+i)
				cancel()
				lat[i] = time.Since(start.Add(time.Duration(i) * interval))
				if err != nil {
					failures.Add(1)
				}
			}
		})
	}
	runtime.LockOSThread() // pace.Until sleeps the thread
	for i := range total {
		pace.Until(start.Add(time.Duration(i) * interval))
		intended <- i
	}
	runtime.UnlockOSThread()
	close(intended)
	wg.Wait()
	return lat, failures.Load()
}

// quantileMs is the q quantile of sorted latencies, in ms.
func quantileMs(sorted []time.Duration, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	return float64(sorted[int(q*float64(len(sorted)-1))]) / 1e6
}

// writePaired prints the paired open loop's figures and the ratio of each
// agent's p99 to the no-op floor's.
func writePaired(res map[string]map[string]float64, agents []string, slice time.Duration, client string) string {
	s := fmt.Sprintf("\nPaired open loop at %d/s by %s: the servers take turns in %v slices over %v each (p99 over all slices):\n\n", *rate, client, slice, *duration)
	s += "| server | p50 ms | p99 ms | p99 / no-op | rounds its slice p99 > the no-op's | failures |\n|---|---|---|---|---|---|\n"
	floor := res["no-op"]["p99 ms"]
	for _, name := range append(slices.Clone(agents), "no-op") {
		r := res[name]
		s += fmt.Sprintf("| %s | %.3f | %.3f | %.2f | %.0f/%.0f | %.0f |\n", name, r["p50 ms"], r["p99 ms"], r["p99 ms"]/floor, r["rounds worse"], r["rounds"], r["failures"])
	}
	return s
}
