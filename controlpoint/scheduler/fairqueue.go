package scheduler

import (
	"container/heap"
	"math"
)

// FairQueue orders waiting items by weighted-fair-queuing finish tags:
// each workload advances its own virtual clock by size/weight, so a
// workload with twice the weight is served twice as often while both
// wait, and none starves. The zero value is an empty queue. A FairQueue is
// not safe for concurrent use: its owner's lock guards it.
type FairQueue[T any] struct {
	vt         float64            // finish tag of the last item popped
	lastFinish map[string]float64 // per workload
	items      entries[T]
}

// Entry is a queued item; Remove takes it out again.
type Entry[T any] struct {
	Value    T
	workload string
	finish   float64
	cost     float64 // size / weight: how far it moved its workload's clock
	index    int     // in the heap; -1 once out of it
}

// Push queues v for workload, of size (tokens) and weight (share; below 1
// counts as 1), behind the workload's earlier items.
func (q *FairQueue[T]) Push(workload string, weight, size float64, v T) *Entry[T] {
	if q.lastFinish == nil {
		q.lastFinish = map[string]float64{}
	}
	cost := size / math.Max(weight, 1)
	start := math.Max(q.vt, q.lastFinish[workload])
	e := &Entry[T]{Value: v, workload: workload, finish: start + cost, cost: cost}
	q.lastFinish[workload] = e.finish
	heap.Push(&q.items, e)
	return e
}

// Len is the number of queued items.
func (q *FairQueue[T]) Len() int { return len(q.items) }

// Peek is the item served next, or nil.
func (q *FairQueue[T]) Peek() *Entry[T] {
	if len(q.items) == 0 {
		return nil
	}
	return q.items[0]
}

// Pop takes the item served next out of the queue, or returns nil.
func (q *FairQueue[T]) Pop() *Entry[T] {
	if len(q.items) == 0 {
		return nil
	}
	e := heap.Pop(&q.items).(*Entry[T])
	q.vt = e.finish
	return e
}

// Remove takes out an item that gave up waiting, and reports whether it
// was still queued. Its share of its workload's virtual clock is given
// back: the workload's later items move up by its cost, so items that
// time out do not push their workload's next ones further back (which
// would starve it under sustained overload).
func (q *FairQueue[T]) Remove(e *Entry[T]) bool {
	if e.index < 0 {
		return false
	}
	heap.Remove(&q.items, e.index)
	for _, x := range q.items {
		if x.workload == e.workload && x.finish > e.finish {
			x.finish -= e.cost
		}
	}
	heap.Init(&q.items)
	if q.lastFinish[e.workload] >= e.finish {
		q.lastFinish[e.workload] -= e.cost
	}
	return true
}

// entries is a min-heap by finish tag.
type entries[T any] []*Entry[T]

func (h entries[T]) Len() int           { return len(h) }
func (h entries[T]) Less(i, j int) bool { return h[i].finish < h[j].finish }
func (h entries[T]) Swap(i, j int)      { h[i], h[j] = h[j], h[i]; h[i].index = i; h[j].index = j }
func (h *entries[T]) Push(x any)        { e := x.(*Entry[T]); e.index = len(*h); *h = append(*h, e) }
func (h *entries[T]) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	e.index = -1
	*h = old[:len(old)-1]
	return e
}
