package conncap

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// evictOldest closes the connection idle longest past the grace, never a
// busy one nor one idle for less than the grace, and one at a time: the
// next waits until the one closed for room is released.
func TestEvictOldest(t *testing.T) {
	evicted := prometheus.NewCounter(prometheus.CounterOpts{Name: "evicted"})
	k := New(Options{Max: 4, Evict: true, Evicted: evicted})
	k.grace = time.Hour // nothing is old enough yet
	var closed []int
	slots := make([]*Slot, 4)
	for i := range slots {
		if !k.Take() {
			t.Fatalf("slot %d not taken under the cap", i)
		}
		slots[i] = k.Add(func() { closed = append(closed, i) })
	}
	if k.Take() {
		t.Fatal("a fifth slot taken at a cap of 4")
	}
	now := time.Now().UnixNano()
	slots[0].idleSince.Store(now - 4e9) // oldest, but busy below
	slots[1].idleSince.Store(now - 3e9)
	slots[2].idleSince.Store(now - 2e9)
	slots[3].idleSince.Store(now - 1e9)
	slots[0].Busy()
	if n := k.Busy(); n != 1 {
		t.Fatalf("Busy() = %d, want 1", n)
	}
	k.evictOldest()
	if len(closed) != 0 {
		t.Fatalf("closed %v within the grace", closed)
	}
	k.grace = 1500 * time.Millisecond // slots 1 and 2 are past it
	k.evictOldest()
	k.evictOldest() // the first is still closing: no second
	if len(closed) != 1 || closed[0] != 1 {
		t.Fatalf("closed %v, want [1]: idle longest, not busy", closed)
	}
	slots[1].Release()
	if !k.Take() {
		t.Fatal("the released slot not taken")
	}
	slots[1] = k.Add(func() {})
	k.evictOldest()
	if len(closed) != 2 || closed[1] != 2 {
		t.Fatalf("closed %v, want [1 2]", closed)
	}
	slots[2].Idle() // a request came and went: idle anew, within the grace
	slots[2].Spared()
	k.evictOldest()
	if len(closed) != 2 {
		t.Fatalf("closed %v: the slot idle anew is within the grace", closed)
	}
	if got := testutil.ToFloat64(evicted); got != 2 {
		t.Fatalf("evicted counter %v, want 2", got)
	}
	for _, s := range slots {
		s.Release()
		s.Release() // once only
	}
	if n := k.Open(); n != 0 {
		t.Fatalf("%d slots open after every release", n)
	}
}

// IdleAt counts a connection's idleness from the time its caller read:
// one marked idle at a time past the grace is evicted, one marked idle
// at the time read now is not.
func TestIdleAtCountsFromTheCallersTime(t *testing.T) {
	k := New(Options{Max: 2, Evict: true})
	k.grace = time.Second
	var closed []int
	slots := make([]*Slot, 2)
	for i := range slots {
		if !k.Take() {
			t.Fatalf("slot %d not taken under the cap", i)
		}
		slots[i] = k.Add(func() { closed = append(closed, i) })
		slots[i].Busy()
	}
	now := time.Now()
	slots[0].IdleAt(now)
	slots[1].IdleAt(now.Add(-2 * time.Second))
	k.evictOldest()
	if len(closed) != 1 || closed[0] != 1 {
		t.Fatalf("closed %v, want [1]: idle since 2 s by its caller's clock", closed)
	}
	slots[1].Release()
	k.evictOldest()
	if len(closed) != 1 {
		t.Fatalf("closed %v: the other is idle since now", closed)
	}
	var nilSlot *Slot
	nilSlot.IdleAt(now) // does nothing
}

// Without Evict a full Cap counts the wait and warns, and closes nothing.
func TestFullWithoutEvict(t *testing.T) {
	var log bytes.Buffer
	waits := prometheus.NewCounter(prometheus.CounterOpts{Name: "waits"})
	k := New(Options{
		Max: 1, Waits: waits,
		Logger:      slog.New(slog.NewTextHandler(&log, nil)),
		FullWarning: "listener full", LogAttrs: []any{"listener", "grpc"},
	})
	k.grace = 0
	if !k.Take() {
		t.Fatal("no slot under the cap")
	}
	closed := false
	s := k.Add(func() { closed = true })
	s.idleSince.Store(1) // idle since long ago
	k.Full()
	k.Full()
	if closed {
		t.Fatal("a Cap without Evict closed a connection")
	}
	if got := testutil.ToFloat64(waits); got != 2 {
		t.Fatalf("waits counter %v, want 2", got)
	}
	out := log.String()
	if strings.Count(out, "listener full") != 1 || !strings.Contains(out, "max_connections=1") || !strings.Contains(out, "listener=grpc") {
		t.Fatalf("want one warning with max_connections and the listener, got:\n%s", out)
	}
}

// SetMax keeps the cap at 1 at least; Take stops at it and Give frees it.
func TestTakeGive(t *testing.T) {
	k := New(Options{Max: 0})
	if k.Max() != 1 {
		t.Fatalf("Max() = %d, want 1 for a cap of 0", k.Max())
	}
	k.SetMax(2)
	taken := 0
	for range 3 {
		if k.Take() {
			taken++
		}
	}
	if taken != 2 || k.Open() != 2 {
		t.Fatalf("at a cap of 2: %d taken, %d open", taken, k.Open())
	}
	k.Give()
	if k.Open() != 1 || !k.Take() {
		t.Fatalf("a slot given back is not free: %d open", k.Open())
	}
}

// Admit takes slots up to the cap; past it, a slot given back calls the
// resume function, and so does the Poll timer when none is.
func TestAdmit(t *testing.T) {
	k := New(Options{Max: 1})
	resumed := make(chan struct{}, 4)
	k.SetResume(func() { resumed <- struct{}{} })
	if !k.Admit() {
		t.Fatal("not admitted under the cap")
	}
	if k.Admit() {
		t.Fatal("admitted past the cap")
	}
	k.Give()
	receive(t, resumed, "resume after Give") // a loop waiting
	if !k.Admit() {
		t.Fatal("not admitted after a slot was given back")
	}
	receive(t, resumed, "resume by the Poll timer")
	if k.Admit() {
		t.Fatal("admitted past the cap")
	}
	receive(t, resumed, "resume by the Poll timer armed again")
	if k.Open() != 1 {
		t.Fatalf("%d open, want 1", k.Open())
	}
}

// receive receives from ch, failing the test after 10 s (a hang, not a
// speed bound).
func receive[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s within 10s", what)
		panic("unreachable")
	}
}
