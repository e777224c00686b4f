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
// look. While it allocates at least as much as it holds free, the load
// reuses that memory (the releaser is armed); once it holds more free
// memory than it allocated (the load stopped, or fell by more than half)
// and at least releaseMin, it calls debug.FreeOSMemory — once, until the
// next busy period arms it again, so an idle agent is not collected over
// and over.

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

// releaser decides when to return free heap memory to the OS; see above.
// Its zero value is disarmed.
type releaser struct{ armed bool }

// step takes the bytes allocated since the last look and the heap bytes
// held free, and says whether to release now.
func (r *releaser) step(allocated, free uint64) bool {
	if allocated >= free {
		r.armed = true
		return false
	}
	if r.armed && free >= releaseMin {
		r.armed = false
		return true
	}
	return false
}

// releaseIdleMemory runs until ctx ends, returning free heap memory to the
// operating system when the agent goes quiet after load. Start-up counts
// as load.
func releaseIdleMemory(ctx context.Context, every time.Duration) {
	samples := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}, {Name: "/memory/classes/heap/free:bytes"}}
	metrics.Read(samples)
	last := samples[0].Value.Uint64()
	r := releaser{armed: true}
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
		if r.step(allocs-last, free) {
			debug.FreeOSMemory()
		}
		last = allocs
	}
}
