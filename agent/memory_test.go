package agent

import (
	"log/slog"
	"runtime/debug"
	"testing"
)

// TestReleaser: free heap memory goes back to the OS once per quiet
// period after load, not over and over while the agent idles.
func TestReleaser(t *testing.T) {
	const mib = 1 << 20
	steps := []struct {
		name            string
		allocated, free uint64
		want            bool
	}{
		{"start-up, quiet at once: released", 1 * mib, 12 * mib, true},
		{"still idle: not again", 1 * mib, 8 * mib, false},
		{"load reuses its free memory", 400 * mib, 12 * mib, false},
		{"more load", 300 * mib, 20 * mib, false},
		{"load stopped: released", 2 * mib, 20 * mib, true},
		{"idle, free memory grew back: not again", 2 * mib, 9 * mib, false},
		{"load again, as much allocated as free", 8 * mib, 8 * mib, false},
		{"load fell by more than half, little free memory: kept", 1 * mib, releaseMin - 1, false},
		{"then enough free memory: released", 1 * mib, releaseMin, true},
	}
	r := releaser{armed: true}
	for i, s := range steps {
		if got := r.step(s.allocated, s.free); got != s.want {
			t.Fatalf("step %d (%s): step(%d, %d) = %v, want %v", i, s.name, s.allocated, s.free, got, s.want)
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
