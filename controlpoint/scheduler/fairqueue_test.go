package scheduler

import "testing"

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
