package gateway

import (
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestCapFor(t *testing.T) {
	for _, tc := range []struct {
		want, soft, inUse, got int64
	}{
		{10000, 1 << 20, 40, 10000},       // a raised limit: as configured
		{10000, 20000, 100, 9822},         // (20000-100-256)/2
		{10000, 1024, 30, 369},            // a default soft limit of 1024
		{10000, 300, 100, 1},              // nothing left: one still
		{4, 1 << 20, 40, 4},               // a small cap stays
		{10000, 20256 + 40, 40, 10000},    // just enough
		{10000, 20256 + 40 - 2, 40, 9999}, // one short (two descriptors)
	} {
		if got := capFor(tc.want, tc.soft, tc.inUse); got != tc.got {
			t.Errorf("capFor(%d, soft %d, in use %d) = %d, want %d", tc.want, tc.soft, tc.inUse, got, tc.got)
		}
	}
}

// evictOldest closes the connection idle longest past the grace, never a
// busy one nor one idle for less than the grace, and one at a time: the
// next waits until the one closed for room is released.
func TestEvictOldest(t *testing.T) {
	k := newConnCap(4, slog.New(slog.DiscardHandler))
	k.grace = time.Hour // nothing is old enough yet
	var closed []int
	slots := make([]*connSlot, 4)
	for i := range slots {
		if !k.take() {
			t.Fatalf("slot %d not taken under the cap", i)
		}
		slots[i] = k.add(func() { closed = append(closed, i) })
	}
	if k.take() {
		t.Fatal("a fifth slot taken at a cap of 4")
	}
	now := time.Now().UnixNano()
	slots[0].idleSince.Store(now - 4e9) // oldest, but busy below
	slots[1].idleSince.Store(now - 3e9)
	slots[2].idleSince.Store(now - 2e9)
	slots[3].idleSince.Store(now - 1e9)
	slots[0].busy()
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
	slots[1].release()
	if !k.take() {
		t.Fatal("the released slot not taken")
	}
	slots[1] = k.add(func() {})
	k.evictOldest()
	if len(closed) != 2 || closed[1] != 2 {
		t.Fatalf("closed %v, want [1 2]", closed)
	}
	slots[2].idle() // a request came and went: idle anew, within the grace
	slots[2].spared()
	k.evictOldest()
	if len(closed) != 2 {
		t.Fatalf("closed %v: the slot idle anew is within the grace", closed)
	}
	if got := testutil.ToFloat64(k.evicted); got != 2 {
		t.Fatalf("evicted counter %v, want 2", got)
	}
	for _, s := range slots {
		s.release()
		s.release() // once only
	}
	if n := k.open.Load(); n != 0 {
		t.Fatalf("%d slots open after every release", n)
	}
}
