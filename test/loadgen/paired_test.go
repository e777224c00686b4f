package main

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestQuantileMs(t *testing.T) {
	lat := make([]time.Duration, 100)
	for i := range lat {
		lat[i] = time.Duration(i+1) * time.Millisecond
	}
	if got := quantileMs(lat, 0.99); got != 99 {
		t.Fatalf("p99 of 1..100 ms = %v, want 99", got)
	}
	if got := quantileMs(lat, 0.5); got != 50 {
		t.Fatalf("p50 of 1..100 ms = %v, want 50", got)
	}
	if got := quantileMs(nil, 0.99); got != 0 {
		t.Fatalf("p99 of nothing = %v", got)
	}
}

func TestWritePairedRatiosToTheFloor(t *testing.T) {
	out := writePaired(map[string]map[string]float64{
		"agent": {"p50 ms": 0.25, "p99 ms": 1.8, "rounds worse": 7, "rounds": 12},
		"no-op": {"p50 ms": 0.25, "p99 ms": 1.5, "rounds": 12},
	}, []string{"agent"}, 250*time.Millisecond, "the lean client")
	for _, want := range []string{"by the lean client", "| agent | 0.250 | 1.800 | 1.20 | 7/12 | 0 |", "| no-op | 0.250 | 1.500 | 1.00 | 0/12 | 0 |"} {
		if !strings.Contains(out, want) {
			t.Fatalf("missing %q in:\n%s", want, out)
		}
	}
}

// pairedOps gives each op its turns: the same number of calls, numbered
// on from one slice to the next, and counts the rounds in which a slow
// op's slice p99 was above a fast one's — every round.
func TestPairedOpsTakesTurns(t *testing.T) {
	defer func(r int) { *rate = r }(*rate)
	*rate = 1000
	var mu sync.Mutex
	nums := [2][]int{}
	mk := func(i int, d time.Duration) op {
		return func(_ context.Context, _, n int) error {
			mu.Lock()
			nums[i] = append(nums[i], n)
			mu.Unlock()
			time.Sleep(d)
			return nil
		}
	}
	const slice, each = 20 * time.Millisecond, 100 * time.Millisecond
	res := pairedOps([]op{mk(0, 0), mk(1, 15*time.Millisecond)}, each, slice)
	rounds := int(each / slice)
	perSlice := *rate * int(slice/time.Millisecond) / 1000
	for i, n := range nums {
		slices.Sort(n)
		if len(n) != rounds*perSlice || n[0] != 0 || n[len(n)-1] != len(n)-1 {
			t.Errorf("op %d: %d calls numbered %d..%d, want %d numbered from 0 on", i, len(n), n[0], n[len(n)-1], rounds*perSlice)
		}
	}
	if got := res[1].roundsAbove(res[0]); got != rounds {
		t.Errorf("the slow op's slice p99 above the fast one's in %d rounds, want %d", got, rounds)
	}
	if got := res[0].roundsAbove(res[1]); got != 0 {
		t.Errorf("the fast op's slice p99 above the slow one's in %d rounds", got)
	}
	if res[1].p50 < 15 {
		t.Errorf("the slow op's p50 is %.3f ms, under its own 15 ms", res[1].p50)
	}
}
