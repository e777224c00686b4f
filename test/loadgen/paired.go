package main

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fluxgate/fluxgate/internal/pace"

	pb "github.com/fluxgate/fluxgate/controlpoint/controlpointpb"
)

// The open loop's p99 at -rate is mostly the machine's: on two shared
// cores a stall of the scheduler or a neighbour's burst lands in one
// server's run and not in the other's, and whole runs differ by 2×. The
// paired open loop takes turns in short slices instead (-slice, the
// order alternating each round), so that what the machine does to the
// latency over more than a slice falls on every server alike, and pools
// each server's latencies over all its slices before taking quantiles.

// pairedOpenLoop drives every server in procs at -rate for -duration in
// all, in turns of slice each, and returns each one's p50 and p99 (ms)
// and failures by name.
func pairedOpenLoop(procs []*proc, slice time.Duration) (map[string]map[string]float64, error) {
	clients := make([]pb.FlowControlServiceClient, len(procs))
	for i, p := range procs {
		client, conn, err := dial(p.grpcAddr)
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		clients[i] = client
	}
	rounds := max(1, int(*duration/slice))
	lat := make([][]time.Duration, len(procs))
	fails := make([]int64, len(procs))
	order := make([]int, len(procs))
	for i := range order {
		order[i] = i
	}
	for range rounds {
		for _, i := range order {
			l, f := pacedSlice(clients[i], slice)
			lat[i] = append(lat[i], l...)
			fails[i] += f
		}
		slices.Reverse(order)
	}
	out := map[string]map[string]float64{}
	for i, p := range procs {
		slices.Sort(lat[i])
		out[p.name] = map[string]float64{"p50 ms": quantileMs(lat[i], 0.50), "p99 ms": quantileMs(lat[i], 0.99), "failures": float64(fails[i])}
	}
	return out, nil
}

// pacedSlice sends -rate checks a second for d, each measured from its
// intended send time, and waits for the last answer.
func pacedSlice(client pb.FlowControlServiceClient, d time.Duration) ([]time.Duration, int64) {
	req := checkRequest()
	total := max(1, int(float64(*rate)*d.Seconds()))
	lat := make([]time.Duration, total)
	intended := make(chan int, total)
	var failures atomic.Int64
	var wg sync.WaitGroup
	start := time.Now().Add(2 * time.Millisecond)
	interval := time.Second / time.Duration(*rate)
	for range min(total, 256) { // as many in flight as a stall of 50 ms holds at 5,000/s
		wg.Go(func() {
			for i := range intended {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				_, err := client.Check(ctx, req)
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
func writePaired(res map[string]map[string]float64, agents []string, slice time.Duration) string {
	s := fmt.Sprintf("\nPaired open loop at %d/s: the servers take turns in %v slices over %v each (p99 over all slices):\n\n", *rate, slice, *duration)
	s += "| server | p50 ms | p99 ms | p99 / no-op | failures |\n|---|---|---|---|---|\n"
	floor := res["no-op"]["p99 ms"]
	for _, name := range append(slices.Clone(agents), "no-op") {
		r := res[name]
		s += fmt.Sprintf("| %s | %.3f | %.3f | %.2f | %.0f |\n", name, r["p50 ms"], r["p99 ms"], r["p99 ms"]/floor, r["failures"])
	}
	return s
}
