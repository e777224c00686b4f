package concurrency

import (
	"context"
	"sync"
	"testing"
	"time"
)

func TestAcquireWaitsForARelease(t *testing.T) {
	l := New(Options{Initial: 1, Max: 1, QueueDelay: time.Minute})
	held, ok := l.Acquire(context.Background(), Request{})
	if !ok {
		t.Fatal("first flow not admitted under a limit of 1")
	}
	got := make(chan bool)
	go func() {
		_, ok := l.Acquire(context.Background(), Request{})
		got <- ok
	}()
	for l.State().Queued == 0 {
		time.Sleep(time.Millisecond)
	}
	l.Release(time.Now(), held, false)
	if !<-got {
		t.Fatal("queued flow not admitted when the slot was released")
	}
	if s := l.State(); s.InFlight != 1 || s.Queued != 0 {
		t.Fatalf("state %+v, want 1 in flight and none queued", s)
	}
}

func TestAcquireGivesUpAfterItsDelay(t *testing.T) {
	l := New(Options{Initial: 1, Max: 1, QueueDelay: 5 * time.Millisecond})
	if _, ok := l.Acquire(context.Background(), Request{}); !ok {
		t.Fatal("first flow not admitted")
	}
	if _, ok := l.Acquire(context.Background(), Request{}); ok {
		t.Fatal("second flow admitted while the only slot is held")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, ok := New(Options{Initial: 1, Max: 1}).Acquire(ctx, Request{}); !ok {
		t.Fatal("a flow with room is admitted even when its context is done")
	}
	if s := l.State(); s.Queued != 0 || s.InFlight != 1 {
		t.Fatalf("state %+v after a timeout, want the waiter gone", s)
	}
}

// TestFairQueueServesByWeight queues flows of two workloads behind a full
// limiter and releases one slot at a time: the heavier workload is served
// ten times as often.
func TestFairQueueServesByWeight(t *testing.T) {
	l := New(Options{Initial: 1, Max: 1})
	now := time.Unix(0, 0)
	l.mu.Lock()
	first, _ := l.tryLocked(now)
	var order []string
	for i := 0; i < 22; i++ {
		wl, w := "low", 1.0
		if i%2 == 0 {
			wl, w = "high", 10
		}
		l.enqueueLocked(Request{Workload: wl, Weight: w}, func(Ticket) { order = append(order, wl) })
	}
	l.mu.Unlock()
	t0 := first
	for i := 0; i < 11; i++ {
		l.Release(now, t0, false)
		t0 = Ticket{Admitted: now}
	}
	high := 0
	for _, wl := range order {
		if wl == "high" {
			high++
		}
	}
	if len(order) != 11 || high < 9 {
		t.Fatalf("served %v, want 11 with at least 9 high", order)
	}
}

func TestObjectiveAndBounds(t *testing.T) {
	l := New(Options{Initial: 8})
	l.SetBounds(2, 4)
	if s := l.State(); s.Limit != 4 {
		t.Fatalf("limit %v after SetBounds(2, 4), want 4", s.Limit)
	}
	l.SetObjective(20 * time.Millisecond)
	if s := l.State(); s.Target != 20*time.Millisecond {
		t.Fatalf("target %v, want the 20ms objective", s.Target)
	}
	// Flows far slower than the objective shrink the limit to its bound.
	now := time.Unix(0, 0)
	for i := 0; i < 200; i++ {
		l.mu.Lock()
		tk, ok := l.tryLocked(now)
		l.mu.Unlock()
		if !ok {
			tk = Ticket{Admitted: now}
		}
		now = now.Add(10 * time.Millisecond)
		l.Release(now.Add(90*time.Millisecond), tk, false)
	}
	if s := l.State(); s.Limit != 2 {
		t.Fatalf("limit %v after flows 5× the objective, want the lower bound 2", s.Limit)
	}
}

func TestConcurrentUseKeepsCount(t *testing.T) {
	l := New(Options{Initial: 4, Max: 4, QueueDelay: time.Second})
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 200; j++ {
				if tk, ok := l.Acquire(context.Background(), Request{Workload: "w"}); ok {
					l.Release(time.Now(), tk, j%7 == 0)
				}
			}
		}()
	}
	wg.Wait()
	if s := l.State(); s.InFlight != 0 || s.Queued != 0 {
		t.Fatalf("state %+v after every flow ended, want empty", s)
	}
}

// TestLightWorkloadsWaitLess: the heaviest workload seen waits the whole
// queue delay, lighter ones down to half of it in proportion to weight.
func TestLightWorkloadsWaitLess(t *testing.T) {
	l := New(Options{QueueDelay: 100 * time.Millisecond})
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, step := range []struct {
		weight float64
		want   time.Duration
	}{
		{1, 100 * time.Millisecond},  // alone: the whole delay
		{11, 100 * time.Millisecond}, // the heaviest so far
		{1, 54545454 * time.Nanosecond},
		{0, 54545454 * time.Nanosecond}, // below 1 counts as 1
		{101, 100 * time.Millisecond},
		{11, 55445544 * time.Nanosecond},
	} {
		if got := l.waitLocked(step.weight); got != step.want {
			t.Errorf("weight %g: waits %v, want %v", step.weight, got, step.want)
		}
	}
}

// TryAcquire takes the time from its caller and reads no clock: the flow
// it admits at t0 is admitted at t0 (its latency counts from there), one
// that would queue is left undecided, and one whose caller has no time
// left to wait is rejected.
func TestTryAcquireAtTheGivenTime(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 5, 0, 0, 0, time.UTC)
	l := New(Options{Initial: 1, Max: 1, QueueDelay: time.Minute, Clock: func() time.Time {
		t.Fatal("TryAcquire read the limiter's clock")
		return time.Time{}
	}})
	ctx := context.Background()
	held, ok, decided := l.TryAcquire(ctx, t0, Request{})
	if !ok || !decided || !held.Admitted.Equal(t0) {
		t.Fatalf("first flow: admitted %v decided %v at %v; want admitted at t0", ok, decided, held.Admitted)
	}
	if _, ok, decided := l.TryAcquire(ctx, t0.Add(time.Millisecond), Request{}); ok || decided {
		t.Fatalf("second flow behind the held slot: admitted %v decided %v; want left to Acquire", ok, decided)
	}
	late, cancel := context.WithDeadline(ctx, time.Now())
	defer cancel()
	if _, ok, decided := l.TryAcquire(late, t0.Add(2*time.Millisecond), Request{}); ok || !decided {
		t.Fatalf("a flow whose caller has no time left: admitted %v decided %v; want rejected", ok, decided)
	}
	l.Release(t0.Add(3*time.Millisecond), held, false)
	if s := l.State(); s.InFlight != 0 || s.Queued != 0 {
		t.Fatalf("state %+v after the release, want nothing held or queued", s)
	}
}
