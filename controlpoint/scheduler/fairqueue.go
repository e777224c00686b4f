package scheduler

import (
	"cmp"
	"container/heap"
	"math"
	"slices"
)

// FairQueue orders waiting items by weighted-fair-queuing finish tags:
// each workload advances its own virtual clock by size/weight, so a
// workload with twice the weight is served twice as often while both
// wait, and none starves.
//
// Within a workload, items pushed with a flow key (PushFlow: a fairness
// label's value) share the workload's turns fairly: the workload's turns
// go to its flows by their own virtual clocks (advanced by size), so a
// flow with many items waiting does not make the workload's other flows
// wait behind all of them. Items of one flow, and items without one, keep
// their order.
//
// The zero value is an empty queue. A FairQueue is not safe for concurrent
// use: its owner's lock guards it.
type FairQueue[T any] struct {
	vt         float64            // finish tag of the last item popped
	lastFinish map[string]float64 // per workload
	items      entries[T]
	// flows holds, per workload with flow-keyed items queued, the clocks
	// of its flows; an entry goes when the workload has none queued.
	flows map[string]*flowClocks
	seq   uint64 // arrival counter, to break ties in order of arrival
}

// flowClocks are the virtual clocks of one workload's flows.
type flowClocks struct {
	vt     float64            // flow tag of the workload's last item popped
	last   map[string]float64 // flow tag of each flow's last item queued
	queued map[string]int     // items queued per flow
	n      int                // items of the workload queued
}

// Entry is a queued item; Remove takes it out again.
type Entry[T any] struct {
	Value    T
	workload string
	flow     string
	finish   float64
	cost     float64 // size / weight: how far it moved its workload's clock
	size     float64
	inner    float64 // finish tag on its workload's flow clocks
	seq      uint64
	index    int // in the heap; -1 once out of it
}

// Push queues v for workload, of size (tokens) and weight (share; below 1
// counts as 1), behind the workload's earlier items.
func (q *FairQueue[T]) Push(workload string, weight, size float64, v T) *Entry[T] {
	return q.PushFlow(workload, "", weight, size, v)
}

// PushFlow is Push for an item of a flow (a fairness key) in workload: it
// waits behind the flow's earlier items, and the workload's turns are
// shared fairly between its flows. The flow "" is the flow of Push.
func (q *FairQueue[T]) PushFlow(workload, flow string, weight, size float64, v T) *Entry[T] {
	if q.lastFinish == nil {
		q.lastFinish = map[string]float64{}
	}
	cost := size / math.Max(weight, 1)
	start := math.Max(q.vt, q.lastFinish[workload])
	q.seq++
	e := &Entry[T]{Value: v, workload: workload, flow: flow, finish: start + cost, cost: cost, size: size, seq: q.seq}
	q.lastFinish[workload] = e.finish
	fc := q.clocks(workload)
	e.inner = math.Max(fc.vt, fc.last[flow]) + size
	fc.last[flow] = e.inner
	fc.queued[flow]++
	fc.n++
	heap.Push(&q.items, e)
	if len(fc.queued) > 1 {
		q.rebalance(workload)
	}
	return e
}

func (q *FairQueue[T]) clocks(workload string) *flowClocks {
	if q.flows == nil {
		q.flows = map[string]*flowClocks{}
	}
	fc := q.flows[workload]
	if fc == nil {
		fc = &flowClocks{last: map[string]float64{}, queued: map[string]int{}}
		q.flows[workload] = fc
	}
	return fc
}

// left forgets an item that left the queue in its workload's flow clocks.
func (q *FairQueue[T]) left(e *Entry[T]) {
	fc := q.flows[e.workload]
	if fc == nil {
		return
	}
	fc.n--
	if fc.queued[e.flow]--; fc.queued[e.flow] <= 0 {
		delete(fc.queued, e.flow)
		delete(fc.last, e.flow)
	}
	if fc.n <= 0 {
		delete(q.flows, e.workload)
	}
}

// rebalance hands workload's finish tags (its turns) to its items in the
// order of their flow tags, so its flows share its turns fairly. The
// workload's tags, and so its share against other workloads, stay as
// they were.
func (q *FairQueue[T]) rebalance(workload string) {
	var mine []*Entry[T]
	var tags []float64
	for _, x := range q.items {
		if x.workload == workload {
			mine = append(mine, x)
			tags = append(tags, x.finish)
		}
	}
	slices.Sort(tags)
	slices.SortFunc(mine, func(a, b *Entry[T]) int {
		if c := cmp.Compare(a.inner, b.inner); c != 0 {
			return c
		}
		return cmp.Compare(a.seq, b.seq)
	})
	for i, x := range mine {
		x.finish = tags[i]
	}
	heap.Init(&q.items)
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
	if fc := q.flows[e.workload]; fc != nil {
		fc.vt = math.Max(fc.vt, e.inner)
	}
	q.left(e)
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
		if x.workload == e.workload && x.flow == e.flow && x.inner > e.inner {
			x.inner -= e.size
		}
	}
	heap.Init(&q.items)
	if q.lastFinish[e.workload] >= e.finish {
		q.lastFinish[e.workload] -= e.cost
	}
	if fc := q.flows[e.workload]; fc != nil && fc.last[e.flow] >= e.inner {
		fc.last[e.flow] -= e.size
	}
	q.left(e)
	if fc := q.flows[e.workload]; fc != nil && len(fc.queued) > 1 {
		q.rebalance(e.workload)
	}
	return true
}

// entries is a min-heap by finish tag.
type entries[T any] []*Entry[T]

func (h entries[T]) Len() int { return len(h) }
func (h entries[T]) Less(i, j int) bool {
	if h[i].finish != h[j].finish {
		return h[i].finish < h[j].finish
	}
	return h[i].seq < h[j].seq
}
func (h entries[T]) Swap(i, j int) { h[i], h[j] = h[j], h[i]; h[i].index = i; h[j].index = j }
func (h *entries[T]) Push(x any)   { e := x.(*Entry[T]); e.index = len(*h); *h = append(*h, e) }
func (h *entries[T]) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	e.index = -1
	*h = old[:len(old)-1]
	return e
}
