package agent

import (
	"log/slog"
	"runtime/debug"
	"testing"
)

func TestShouldRelease(t *testing.T) {
	for _, tc := range []struct {
		name            string
		allocated, free uint64
		want            bool
	}{
		{"idle after load: much free, little allocated", 1 << 20, 12 << 20, true},
		{"under load: allocations reuse the free memory", 400 << 20, 12 << 20, false},
		{"load fell by more than half", 10 << 20, 12 << 20, true},
		{"little free memory", 0, releaseMin - 1, false},
		{"just enough free memory", 0, releaseMin, true},
		{"as much allocated as free", 8 << 20, 8 << 20, false},
	} {
		if got := shouldRelease(tc.allocated, tc.free); got != tc.want {
			t.Errorf("%s: shouldRelease(%d, %d) = %v, want %v", tc.name, tc.allocated, tc.free, got, tc.want)
		}
	}
}

// TestMemoryLimit: limits.memory_mib sets the runtime's soft limit to 90 %
// of the budget, and a GOMEMLIMIT in the environment wins.
func TestMemoryLimit(t *testing.T) {
	old := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(old) })
	cfg := DefaultConfig()
	cfg.Limits.MemoryMiB = 200
	a := &Agent{cfg: cfg, logger: slog.New(slog.DiscardHandler)}
	t.Setenv("GOMEMLIMIT", "")
	if got, want := a.applyMemoryLimit(), int64(180<<20); got != want || debug.SetMemoryLimit(-1) != want {
		t.Fatalf("limit %d (runtime %d), want %d", got, debug.SetMemoryLimit(-1), want)
	}
	debug.SetMemoryLimit(300 << 20) // as the runtime does at start from GOMEMLIMIT=300MiB
	t.Setenv("GOMEMLIMIT", "300MiB")
	if got := a.applyMemoryLimit(); got != 300<<20 || debug.SetMemoryLimit(-1) != 300<<20 {
		t.Fatalf("with GOMEMLIMIT: limit %d (runtime %d), want it left at %d", got, debug.SetMemoryLimit(-1), 300<<20)
	}
}
