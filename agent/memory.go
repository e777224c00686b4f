package agent

import (
	"context"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// The agent's memory (issue 20): limits.memory_mib is its budget. The Go
// runtime gets a soft limit of softLimitShare of it (debug.SetMemoryLimit),
// so the collector works harder as the heap nears the budget instead of
// letting it double past it; the rest is room for what the runtime does
// not count against the limit as exactly (thread stacks, the binary's
// pages). A GOMEMLIMIT in the environment wins: the runtime applied it
// before the agent started, and the agent leaves it alone.
//
// After load, the agent gives free heap memory back to the operating
// system instead of waiting for the runtime's background scavenger, which
// keeps about the heap's last goal mapped: every releaseEvery it compares
// the heap memory it holds free with what it allocated since the last
// look, and when it holds more free memory than it allocated (the load
// has stopped, or fell by more than half) and at least releaseMin, it
// calls debug.FreeOSMemory once. Under steady load the free memory is
// reused within the interval and nothing happens.

const (
	softLimitShare = 0.9
	releaseEvery   = 10 * time.Second
	releaseMin     = 4 << 20
)

// softMemoryLimit is the runtime's soft limit for a budget of mib MiB.
func softMemoryLimit(mib int) int64 { return int64(float64(int64(mib)<<20) * softLimitShare) }

// applyMemoryLimit sets the runtime's soft memory limit from
// limits.memory_mib unless GOMEMLIMIT is set, and returns the limit in
// force.
func (a *Agent) applyMemoryLimit() int64 {
	if os.Getenv("GOMEMLIMIT") != "" {
		limit := debug.SetMemoryLimit(-1) // -1 reads it
		a.logger.Info("GOMEMLIMIT set: limits.memory_mib leaves the runtime's soft memory limit alone", "limit_bytes", limit)
		return limit
	}
	limit := softMemoryLimit(a.cfg.Limits.MemoryMiB)
	debug.SetMemoryLimit(limit)
	return limit
}

// shouldRelease says whether to return free heap memory to the OS, given
// the bytes allocated since the last look and the heap bytes held free.
func shouldRelease(allocated, free uint64) bool {
	return free >= releaseMin && allocated < free
}

// releaseIdleMemory runs until ctx ends, returning free heap memory to the
// operating system when the agent goes quiet (see shouldRelease).
func releaseIdleMemory(ctx context.Context, every time.Duration) {
	samples := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}, {Name: "/memory/classes/heap/free:bytes"}}
	metrics.Read(samples)
	last := samples[0].Value.Uint64()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		metrics.Read(samples)
		allocs, free := samples[0].Value.Uint64(), samples[1].Value.Uint64()
		if shouldRelease(allocs-last, free) {
			debug.FreeOSMemory()
			metrics.Read(samples) // FreeOSMemory's own collection allocates nothing worth counting
			allocs = samples[0].Value.Uint64()
		}
		last = allocs
	}
}
