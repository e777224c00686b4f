package controlpoint

import (
	"math/rand/v2"
	"sync"
	"time"

	"github.com/fluxgate/fluxgate/controlpoint/concurrency"
)

// flowTable remembers the admitted flows for which a component holds a
// slot, until their end is reported or their max_flow_duration passes.
// Every entry holds a slot of some limiter, so the table is bounded by
// the limits of the slot-holding components (adaptive_concurrency,
// concurrency_limiter, concurrency_scheduler; the limits of keyed ones add
// up over keys, and dry-run ones count flows they did not stop:
// maxHeldFlows bounds those).
type flowTable struct {
	mu sync.Mutex
	m  map[uint64]*heldFlow // guarded by mu
}

// maxHeldFlows bounds the table: past it, flows of dry-run components are
// not tracked (enforcing ones never get that far: their limit binds).
const maxHeldFlows = 1 << 20

type heldFlow struct {
	deadline time.Time
	holds    []hold
	// inline is holds' room for the common flow of one slot-holding
	// component: an entry is then one object of 128 bytes, as large as
	// the entry and its separate holds were.
	inline [1]hold
}

// heldFlows recycles the table's entries: a flow held by the adaptive
// limiter at a gateway is one a request, and end and expire are the only
// ones that see an entry after it left the map.
var heldFlows = sync.Pool{New: func() any { return new(heldFlow) }}

// free clears f (its holds name components and keys) and recycles it.
func (f *heldFlow) free() {
	clear(f.inline[:])
	f.holds = nil
	heldFlows.Put(f)
}

// hold is the slot a slotHolder holds for a flow; its decide returns one.
type hold struct {
	c      slotHolder         // the component; nil when none is held
	t      concurrency.Ticket // adaptive_concurrency
	key    string             // concurrency limiter and scheduler
	tokens float64
}

// slotHolder is a flow-control component that holds a slot for every
// flow it admits until the flow's end is reported or its maximum
// duration passes.
type slotHolder interface {
	flowComponent
	// release frees h's slot at now: ended says the end was reported
	// (failed or not), false that the flow expired or was never tracked.
	release(now time.Time, h *hold, ended, failed bool)
	// maxFlowDuration is how long a flow may hold its slot.
	maxFlowDuration() time.Duration
}

func newFlowTable() *flowTable { return &flowTable{m: map[uint64]*heldFlow{}} }

// add records the slots held for an admitted flow (at least one; add
// copies them) and returns the flow's id, or 0 when the table is full.
func (t *flowTable) add(now time.Time, holds []hold) uint64 {
	f := heldFlows.Get().(*heldFlow)
	f.deadline = now.Add(holds[0].c.maxFlowDuration())
	f.holds = append(f.inline[:0], holds...)
	for _, h := range holds[1:] {
		f.deadline = minTime(f.deadline, now.Add(h.c.maxFlowDuration()))
	}
	t.mu.Lock()
	if len(t.m) >= maxHeldFlows {
		t.mu.Unlock()
		for i := range f.holds {
			f.holds[i].c.release(now, &f.holds[i], false, false)
		}
		f.free()
		return 0
	}
	// Random, so that a client cannot end flows it did not start by
	// counting from its own id.
	id := rand.Uint64()
	for id == 0 || t.m[id] != nil {
		id = rand.Uint64()
	}
	t.m[id] = f
	t.mu.Unlock()
	return id
}

// end releases the slots of flow id and reports whether it was held.
func (t *flowTable) end(now time.Time, id uint64, failed bool) bool {
	t.mu.Lock()
	f, ok := t.m[id]
	delete(t.m, id)
	t.mu.Unlock()
	if !ok {
		return false
	}
	for i := range f.holds {
		f.holds[i].c.release(now, &f.holds[i], true, failed)
	}
	f.free()
	return true
}

// expire frees the slots of flows past their deadline and returns how
// many it freed.
func (t *flowTable) expire(now time.Time) int {
	var gone []*heldFlow
	t.mu.Lock()
	for id, f := range t.m {
		if now.After(f.deadline) {
			gone = append(gone, f)
			delete(t.m, id)
		}
	}
	t.mu.Unlock()
	for _, f := range gone {
		for i := range f.holds {
			f.holds[i].c.release(now, &f.holds[i], false, false)
		}
		f.free()
	}
	return len(gone)
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
