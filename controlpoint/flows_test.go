package controlpoint

import (
	"slices"
	"testing"
	"time"
)

// keyHolder is a slotHolder that records the keys it was asked to
// release, and whether each was an end.
type keyHolder struct {
	flowComponent // only release and maxFlowDuration are called
	released      []string
}

func (k *keyHolder) release(_ time.Time, h *hold, ended, _ bool) {
	k.released = append(k.released, h.key+map[bool]string{true: " ended", false: " expired"}[ended])
}

func (k *keyHolder) maxFlowDuration() time.Duration { return time.Minute }

// The table's entries are recycled: an ended flow's entry, reused by the
// next flow, releases that flow's holds and none of the earlier flow's
// (three holds go past the entry's inline room), and an ended id stays
// ended.
func TestFlowTableRecyclesEntries(t *testing.T) {
	c := &keyHolder{}
	ft := newFlowTable()
	t0 := time.Unix(1000, 0)
	a := ft.add(t0, []hold{{c: c, key: "a1"}, {c: c, key: "a2"}, {c: c, key: "a3"}})
	if !ft.end(t0, a, false) || ft.end(t0, a, false) {
		t.Fatal("flow a: ended once, then not held")
	}
	b := ft.add(t0, []hold{{c: c, key: "b"}})
	x := ft.add(t0, []hold{{c: c, key: "x1"}, {c: c, key: "x2"}})
	if !ft.end(t0, b, true) {
		t.Fatal("flow b was not held")
	}
	if n := ft.expire(t0.Add(2 * time.Minute)); n != 1 {
		t.Fatalf("expired %d flows, want x alone", n)
	}
	want := []string{"a1 ended", "a2 ended", "a3 ended", "b ended", "x1 expired", "x2 expired"}
	if !slices.Equal(c.released, want) {
		t.Errorf("released %q, want %q", c.released, want)
	}
	if ft.end(t0, x, false) {
		t.Error("an expired flow ended")
	}
}
