package scheduler

import (
	"context"
	"testing"
	"time"
)

// slots is a Resource of max units per key, given back by the test.
type slots struct {
	max  float64
	used map[string]float64
}

func (s *slots) TryTake(_ time.Time, key string, n float64) (bool, time.Duration) {
	if s.used[key]+n > s.max {
		return false, 0
	}
	s.used[key] += n
	return true, 0
}

var t0 = time.Unix(1_700_000_000, 0)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

// TestGateInVirtualTime replays a schedule on a Gate over two slots per
// key: a flow that may not wait is rejected at once when its key is full;
// one that may wait is queued and admitted when a slot is given back; its
// deadline takes it out; keys never wait behind each other.
func TestGateInVirtualTime(t *testing.T) {
	res := &slots{max: 2, used: map[string]float64{}}
	g := NewGate(res, nil)
	for i, want := range []bool{true, true, false} {
		if ok, tk := g.Arrive(at(0), GateRequest{Key: "a", Tokens: 1}); ok != want || tk != nil {
			t.Fatalf("t0 flow %d of a: admitted %v ticket %v, want %v and no ticket", i, ok, tk, want)
		}
	}
	if ok, _ := g.Arrive(at(0), GateRequest{Key: "b", Tokens: 1}); !ok {
		t.Fatal("key b waited behind key a")
	}
	_, w1 := g.Arrive(at(10), GateRequest{Key: "a", Tokens: 1, Timeout: 100 * time.Millisecond})
	_, w2 := g.Arrive(at(20), GateRequest{Key: "a", Tokens: 1, Timeout: 100 * time.Millisecond})
	if w1 == nil || w2 == nil || g.Waiting() != 2 {
		t.Fatalf("t10, t20: tickets %v %v, waiting %d; want both queued", w1, w2, g.Waiting())
	}
	// A flow that may not wait does not jump the queue, even with room.
	res.used["a"]--
	if ok, tk := g.Arrive(at(30), GateRequest{Key: "a", Tokens: 1}); ok || tk != nil {
		t.Fatal("t30: a flow jumped the queue")
	}
	if got := g.Release(at(30), "a"); len(got) != 1 || got[0] != w1 {
		t.Fatalf("t30 release: admitted %v, want the first waiter", got)
	}
	if adm, exp := g.Advance(at(119)); len(adm)+len(exp) != 0 {
		t.Fatalf("t119: admitted %d expired %d, want nothing yet", len(adm), len(exp))
	}
	if adm, exp := g.Advance(at(120)); len(adm) != 0 || len(exp) != 1 || exp[0] != w2 {
		t.Fatalf("t120: admitted %d expired %v, want the second waiter expired", len(adm), exp)
	}
	if g.Waiting() != 0 || len(g.keys) != 0 || g.Withdraw(w2) || g.Withdraw(w1) {
		t.Fatal("the gate kept a key or a ticket nobody waits for")
	}
}

// TestGateWeightedShare: while two workloads of one key wait, a slot
// freed every tick goes to them in proportion to their weights (4:1).
func TestGateWeightedShare(t *testing.T) {
	res := &slots{max: 1, used: map[string]float64{"k": 1}}
	g := NewGate(res, nil)
	for i := 0; i < 200; i++ {
		g.Arrive(at(0), GateRequest{Key: "k", Workload: "high", Weight: 4, Tokens: 1, Timeout: time.Hour})
		g.Arrive(at(0), GateRequest{Key: "k", Workload: "low", Weight: 1, Tokens: 1, Timeout: time.Hour})
	}
	got := map[string]int{}
	for i := 1; i <= 100; i++ {
		res.used["k"] = 0
		for _, tk := range g.Release(at(i), "k") {
			got[tk.Request.Workload]++
		}
	}
	if got["high"] != 80 || got["low"] != 20 {
		t.Fatalf("100 slots went %v, want high 80, low 20", got)
	}
}

// TestGateAcquireRealTime: Acquire waits for a slot given back with
// ReleaseNow, and gives up at its timeout.
func TestGateAcquireRealTime(t *testing.T) {
	res := &slots{max: 1, used: map[string]float64{}}
	g := NewGate(res, nil)
	if ok, _ := g.Acquire(context.Background(), GateRequest{Tokens: 1}); !ok {
		t.Fatal("first flow rejected")
	}
	if ok, waited := g.Acquire(context.Background(), GateRequest{Tokens: 1, Timeout: 20 * time.Millisecond}); ok || waited < 15*time.Millisecond {
		t.Fatalf("flow with a full key: admitted %v after %v, want rejected after its timeout", ok, waited)
	}
	done := make(chan bool)
	go func() {
		ok, _ := g.Acquire(context.Background(), GateRequest{Tokens: 1, Timeout: 5 * time.Second})
		done <- ok
	}()
	for g.Waiting() == 0 {
		time.Sleep(time.Millisecond)
	}
	g.mu.Lock()
	res.used[""] = 0
	g.mu.Unlock()
	g.ReleaseNow("")
	if !<-done {
		t.Fatal("waiting flow rejected after a slot was given back")
	}
}
