//go:build linux

package eventloop

import (
	"container/heap"
	"time"
)

// Timer runs a function on its loop once a deadline passes. It is the
// loop's: make, reset and stop it on the loop only. The zero Timer is not
// usable: make one with NewTimer.
type Timer struct {
	l    *Loop
	f    func()
	when int64 // nanoseconds after l.base
	i    int   // index in the heap; -1 when not set
}

// NewTimer returns a timer, not set, that runs f on l.
func (l *Loop) NewTimer(f func()) *Timer { return &Timer{l: l, f: f, i: -1} }

// Reset sets t to run d after the loop's Now, whether or not it was set.
func (t *Timer) Reset(d time.Duration) {
	t.when = t.l.since() + int64(d)
	if t.i >= 0 {
		heap.Fix(&t.l.timers, t.i)
		return
	}
	heap.Push(&t.l.timers, t)
}

// Stop unsets t; it reports whether t was set.
func (t *Timer) Stop() bool {
	if t.i < 0 {
		return false
	}
	heap.Remove(&t.l.timers, t.i)
	return true
}

// Set reports whether t is set.
func (t *Timer) Set() bool { return t.i >= 0 }

// Timers is the number of timers set on l (on the loop only): a count
// to check that an owner stops its timers when it ends.
func (l *Loop) Timers() int { return len(l.timers) }

// runTimers runs the timers that are due.
func (l *Loop) runTimers() {
	if len(l.timers) == 0 {
		return
	}
	now := l.since()
	for len(l.timers) > 0 && l.timers[0].when <= now {
		t := heap.Pop(&l.timers).(*Timer)
		l.callFunc(t.f)
	}
}

// timerHeap is a min-heap of timers by deadline.
type timerHeap []*Timer

func (h timerHeap) next() (int64, bool) {
	if len(h) == 0 {
		return 0, false
	}
	return h[0].when, true
}

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].when < h[j].when }
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].i, h[j].i = i, j
}

func (h *timerHeap) Push(x any) {
	t := x.(*Timer)
	t.i = len(*h)
	*h = append(*h, t)
}

func (h *timerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	t.i = -1
	return t
}
