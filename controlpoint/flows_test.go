package controlpoint

import (
	"slices"
	"strconv"
	"sync"
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

// countingHolder counts, under its lock, the releases of each key.
type countingHolder struct {
	flowComponent // only release and maxFlowDuration are called
	mu            sync.Mutex
	released      map[string]int // guarded by mu
}

func (k *countingHolder) release(_ time.Time, h *hold, _, _ bool) {
	k.mu.Lock()
	k.released[h.key]++
	k.mu.Unlock()
}

func (k *countingHolder) maxFlowDuration() time.Duration { return time.Millisecond }

// Recycled entries under concurrency (review): flows added and ended
// twice on several goroutines while another expires them all releases
// every hold exactly once, whichever of end and expire gets the entry,
// and an entry back in the pool is not seen again (run with -race).
func TestFlowTableRecycledEntriesConcurrently(t *testing.T) {
	const workers, flowsEach = 4, 2000
	c := &countingHolder{released: map[string]int{}}
	ft := newFlowTable()
	t0 := time.Unix(1000, 0)
	stop := make(chan struct{})
	expired := make(chan struct{})
	go func() {
		defer close(expired)
		for {
			select {
			case <-stop:
				return
			default:
				ft.expire(t0.Add(time.Minute)) // past every flow's deadline
			}
		}
	}()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range flowsEach {
				key := strconv.Itoa(w*flowsEach + i)
				holds := []hold{{c: c, key: key}}
				if i%3 == 0 { // past the entry's inline room
					holds = append(holds, hold{c: c, key: key + "b"})
				}
				id := ft.add(t0, holds)
				ft.end(t0, id, false)
				ft.end(t0, id, false)
			}
		})
	}
	wg.Wait()
	close(stop)
	<-expired
	ft.expire(t0.Add(time.Minute))
	want := workers * (flowsEach + (flowsEach+2)/3)
	if len(c.released) != want {
		t.Errorf("%d holds released, want %d", len(c.released), want)
	}
	for k, n := range c.released {
		if n != 1 {
			t.Errorf("hold %s released %d times, want once", k, n)
		}
	}
}
