package main

import (
	"strings"
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
		"agent": {"p50 ms": 0.25, "p99 ms": 1.8},
		"no-op": {"p50 ms": 0.25, "p99 ms": 1.5},
	}, []string{"agent"}, 250*time.Millisecond)
	for _, want := range []string{"| agent | 0.250 | 1.800 | 1.20 | 0 |", "| no-op | 0.250 | 1.500 | 1.00 | 0 |"} {
		if !strings.Contains(out, want) {
			t.Fatalf("missing %q in:\n%s", want, out)
		}
	}
}
