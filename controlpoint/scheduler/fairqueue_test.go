package scheduler

import (
	"strings"
	"testing"
)

// TestFairQueueOrder: while two workloads wait, the one with ten times
// the weight is served ten times as often; a removed item gives its place
// back to its workload.
func TestFairQueueOrder(t *testing.T) {
	var q FairQueue[string]
	for i := 0; i < 11; i++ {
		q.Push("high", 10, 1, "h")
		q.Push("low", 1, 1, "l")
	}
	got := ""
	for i := 0; i < 11; i++ {
		got += q.Pop().Value
	}
	if got != "hhhhhhhhhlh" && got != "hhhhhhhhhhl" {
		t.Fatalf("served %q, want ten high for one low", got)
	}
	var empty FairQueue[int]
	if empty.Pop() != nil || empty.Peek() != nil || empty.Len() != 0 {
		t.Fatal("an empty queue returned an item")
	}
	// An item that gives up hands its place back to its workload's later
	// items, and can be removed once only.
	var r FairQueue[int]
	a, b := r.Push("w", 1, 1, 1), r.Push("w", 1, 1, 2)
	before := b.finish
	if !r.Remove(a) || r.Remove(a) {
		t.Fatal("Remove: want true once, then false")
	}
	if b.finish != before-1 || r.Len() != 1 || r.Pop().Value != 2 {
		t.Fatalf("after removing the first item the second's finish tag is %v (was %v)", b.finish, before)
	}
}

// TestFairQueueFlows: within a workload, flows (fairness keys) share the
// workload's turns: a flow that arrives behind another's backlog is served
// every other turn instead of after the backlog, while the workload keeps
// its share against another workload; plain Push keeps arrival order.
func TestFairQueueFlows(t *testing.T) {
	order := func(flows bool) string {
		var q FairQueue[string]
		push := func(flow, v string) {
			if flows {
				q.PushFlow("w", flow, 1, 1, v)
			} else {
				q.Push("w", 1, 1, v)
			}
		}
		for i := 0; i < 6; i++ {
			push("heavy", "h")
		}
		push("light", "l")
		push("light", "l")
		got := ""
		for q.Len() > 0 {
			got += q.Pop().Value
		}
		return got
	}
	if got := order(false); got != "hhhhhhll" {
		t.Fatalf("without flows served %q, want arrival order", got)
	}
	if got := order(true); got != "hlhlhhhh" {
		t.Fatalf("with flows served %q, want the light flow every other turn", got)
	}

	// Against another workload of equal weight, a workload's share is
	// the same however its flows split it.
	var q FairQueue[string]
	for i := 0; i < 4; i++ {
		q.PushFlow("a", "x", 1, 1, "a")
		q.PushFlow("a", "y", 1, 1, "a")
		q.Push("b", 1, 1, "b")
		q.Push("b", 1, 1, "b")
	}
	got := ""
	for i := 0; i < 8; i++ {
		got += q.Pop().Value
	}
	if n := strings.Count(got, "a"); n != 4 {
		t.Fatalf("served %q: workload a got %d of 8 turns, want 4", got, n)
	}
	// Removing a waiting item keeps the flows' order, and the clocks of a
	// workload go with its last item.
	var r FairQueue[int]
	a := r.PushFlow("w", "x", 1, 1, 1)
	r.PushFlow("w", "x", 1, 1, 2)
	r.PushFlow("w", "y", 1, 1, 3)
	if !r.Remove(a) {
		t.Fatal("Remove: want true")
	}
	if v := r.Pop().Value; v != 2 && v != 3 {
		t.Fatalf("popped %d", v)
	}
	r.Pop()
	if r.Len() != 0 || len(r.flows) != 0 {
		t.Fatalf("after the last item: %d queued, clocks of %d workloads kept", r.Len(), len(r.flows))
	}
}
