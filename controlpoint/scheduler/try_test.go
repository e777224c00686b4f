package scheduler

import (
	"context"
	"testing"
	"time"
)

// TryAdmit admits from the bucket, rejects what may not wait, and leaves
// a flow that would queue without taking or queueing anything; Refund
// gives tokens back.
func TestSchedulerTryAdmit(t *testing.T) {
	s := New(func() time.Time { return t0 }) // the clock stands still: no refill
	ctx := context.Background()
	r := Request{Workload: "w", Weight: 1, Tokens: 1, Timeout: time.Second}
	if ok, decided := s.TryAdmit(ctx, r); !ok || !decided {
		t.Fatalf("unlimited: admitted %v decided %v", ok, decided)
	}
	s.SetRate(10) // a bucket of 1 token, full
	if ok, decided := s.TryAdmit(ctx, r); !ok || !decided {
		t.Fatalf("a token there: admitted %v decided %v", ok, decided)
	}
	if ok, decided := s.TryAdmit(ctx, r); ok || decided || s.QueueLen() != 0 {
		t.Fatalf("no token: admitted %v decided %v queued %d; want left undecided, nothing queued", ok, decided, s.QueueLen())
	}
	if ok, decided := s.TryAdmit(ctx, Request{Workload: "w", Weight: 1, Tokens: 1}); ok || !decided {
		t.Fatalf("no token and no timeout: admitted %v decided %v; want rejected", ok, decided)
	}
	s.Refund(1)
	if ok, decided := s.TryAdmit(ctx, r); !ok || !decided {
		t.Fatalf("after a refund: admitted %v decided %v", ok, decided)
	}
}

// TryAcquire takes free units at once, rejects what may not wait, and
// leaves a flow that would queue (its key's units taken, or flows of its
// key waiting: it does not jump their queue) without queueing it.
func TestGateTryAcquire(t *testing.T) {
	res := &slots{max: 1, used: map[string]float64{}}
	g := NewGate(res, func() time.Time { return t0 })
	ctx := context.Background()
	r := GateRequest{Key: "a", Workload: "w", Weight: 1, Tokens: 1, Timeout: time.Second}
	if ok, decided := g.TryAcquire(ctx, r); !ok || !decided {
		t.Fatalf("a free slot: admitted %v decided %v", ok, decided)
	}
	if ok, decided := g.TryAcquire(ctx, r); ok || decided || g.Waiting() != 0 {
		t.Fatalf("the slot taken: admitted %v decided %v waiting %d; want left undecided, nothing queued", ok, decided, g.Waiting())
	}
	noWait := r
	noWait.Timeout = 0
	if ok, decided := g.TryAcquire(ctx, noWait); ok || !decided {
		t.Fatalf("the slot taken, no timeout: admitted %v decided %v; want rejected", ok, decided)
	}
	if _, tk := g.Arrive(t0, r); tk == nil {
		t.Fatal("a flow that may wait was not queued")
	}
	res.used["a"] = 0 // the slot given back, not yet reported: the queued flow is next
	if ok, decided := g.TryAcquire(ctx, r); ok || decided || res.used["a"] != 0 {
		t.Fatalf("behind a waiting flow: admitted %v decided %v used %v; want left undecided, nothing taken", ok, decided, res.used["a"])
	}
	if ok, decided := g.TryAcquire(ctx, GateRequest{Key: "b", Workload: "w", Weight: 1, Tokens: 1, Timeout: time.Second}); !ok || !decided {
		t.Fatalf("another key: admitted %v decided %v", ok, decided)
	}
}
