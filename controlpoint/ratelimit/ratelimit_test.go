package ratelimit

import (
	"fmt"
	"math"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

type step struct {
	t         time.Duration
	key       string
	n         float64
	allowed   bool
	remaining float64
	wait      time.Duration
}

func run(t *testing.T, l *Limiter, steps []step) {
	t.Helper()
	for i, s := range steps {
		r := l.Take(at(s.t), s.key, s.n)
		if r.Allowed != s.allowed || math.Abs(r.Remaining-s.remaining) > 1e-9 || r.Wait != s.wait {
			t.Errorf("step %d (t=%v key=%q n=%v): got allowed=%v remaining=%v wait=%v, want %v %v %v",
				i, s.t, s.key, s.n, r.Allowed, r.Remaining, r.Wait, s.allowed, s.remaining, s.wait)
		}
	}
}

func TestContinuousFill(t *testing.T) {
	// 5 tokens, refilled at 5 per second (one every 200ms).
	l := New(Options{Limits: Limits{Capacity: 5, FillAmount: 5, Interval: time.Second, Continuous: true}})
	run(t, l, []step{
		{0, "a", 1, true, 4, 0},
		{0, "a", 3, true, 1, 0},
		{0, "a", 2, false, 1, 200 * time.Millisecond},
		{0, "a", 1, true, 0, 0},
		{100 * time.Millisecond, "a", 1, false, 0.5, 100 * time.Millisecond},
		{200 * time.Millisecond, "a", 1, true, 0, 0},
		{200 * time.Millisecond, "b", 5, true, 0, 0}, // b has its own bucket
		{10 * time.Second, "a", 0, true, 5, 0},       // clamped to capacity
		{10 * time.Second, "a", 6, false, 5, 200 * time.Millisecond},
	})
}

func TestWholeIntervalFill(t *testing.T) {
	l := New(Options{Limits: Limits{Capacity: 10, FillAmount: 4, Interval: time.Second}})
	run(t, l, []step{
		{0, "", 10, true, 0, 0},
		{999 * time.Millisecond, "", 1, false, 0, time.Second},
		{time.Second, "", 4, true, 0, 0},
		{2500 * time.Millisecond, "", 5, false, 4, time.Second},
		{3 * time.Second, "", 8, true, 0, 0},
	})
}

func TestBurstOfTwentyAdmitsExactlyFive(t *testing.T) {
	// The policy of issue 3: 5 per 60s per user.
	l := New(Options{Limits: Limits{Capacity: 5, FillAmount: 5, Interval: time.Minute, Continuous: true}})
	for _, user := range []string{"alice", "bob"} {
		accepted := 0
		for i := 0; i < 20; i++ {
			if l.Take(at(time.Duration(i)*time.Millisecond), user, 1).Allowed {
				accepted++
			}
		}
		if accepted != 5 {
			t.Errorf("%s: %d accepted, want 5", user, accepted)
		}
	}
}

func TestSetLimitsClampsExistingBuckets(t *testing.T) {
	l := New(Options{Limits: Limits{Capacity: 100, FillAmount: 100, Interval: time.Second, Continuous: true}})
	if r := l.Take(t0, "k", 10); !r.Allowed || r.Remaining != 90 {
		t.Fatalf("take = %+v", r)
	}
	l.SetLimits(Limits{Capacity: 20, FillAmount: 1, Interval: time.Second, Continuous: true})
	r := l.Take(t0, "k", 1)
	if !r.Allowed || r.Remaining != 19 || r.Limit != 20 {
		t.Fatalf("after lowering the limit: %+v, want remaining 19 of 20", r)
	}
	// Raising it does not hand out tokens that were never earned.
	l.SetLimits(Limits{Capacity: 1000, FillAmount: 1, Interval: time.Second, Continuous: true})
	if r := l.Take(t0, "k", 0); r.Remaining != 19 {
		t.Fatalf("after raising the limit: remaining %v, want 19", r.Remaining)
	}
}

func TestPeekAndReturn(t *testing.T) {
	l := New(Options{Limits: Limits{Capacity: 2, FillAmount: 2, Interval: time.Second, Continuous: true}})
	if r := l.Peek(t0, "k", 2); !r.Allowed || r.Remaining != 0 {
		t.Fatalf("peek = %+v", r)
	}
	if l.Len() != 0 {
		t.Fatal("Peek created a bucket")
	}
	l.Take(t0, "k", 2)
	if r := l.Peek(t0, "k", 1); r.Allowed {
		t.Fatalf("peek on empty bucket = %+v", r)
	}
	l.Return(t0, "k", 1)
	if r := l.Take(t0, "k", 1); !r.Allowed || r.Remaining != 0 {
		t.Fatalf("take after return = %+v", r)
	}
}

func TestZeroCapacityAndRate(t *testing.T) {
	l := New(Options{Limits: Limits{Capacity: 0, FillAmount: 0, Interval: time.Second, Continuous: true}})
	r := l.Take(t0, "", 1)
	if r.Allowed || r.Wait != time.Duration(math.MaxInt64) {
		t.Fatalf("zero limits = %+v", r)
	}
}

func TestDelayInitialFill(t *testing.T) {
	l := New(Options{Limits: Limits{Capacity: 10, FillAmount: 10, Interval: time.Second, Continuous: true}, DelayInitialFill: true})
	run(t, l, []step{
		{0, "", 1, false, 0, 100 * time.Millisecond},
		{500 * time.Millisecond, "", 5, true, 0, 0},
	})
}

func TestSweepDropsIdleBuckets(t *testing.T) {
	l := New(Options{Limits: Limits{Capacity: 1, FillAmount: 1, Interval: time.Second, Continuous: true}, MaxIdle: time.Minute})
	for i := 0; i < 1000; i++ {
		l.Take(t0, fmt.Sprint("user-", i), 1)
	}
	l.Take(at(50*time.Second), "user-7", 0)
	if n := l.Sweep(at(30 * time.Second)); n != 0 {
		t.Fatalf("swept %d buckets before they were idle", n)
	}
	if n := l.Sweep(at(90 * time.Second)); n != 999 {
		t.Fatalf("swept %d, want 999", n)
	}
	if l.Len() != 1 {
		t.Fatalf("%d buckets left, want 1", l.Len())
	}
}

func TestConcurrentTakesNeverOverAdmit(t *testing.T) {
	l := New(Options{Limits: Limits{Capacity: 1000, FillAmount: 0, Interval: time.Second, Continuous: true}})
	var wg sync.WaitGroup
	var mu sync.Mutex
	admitted := 0
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := 0
			for i := 0; i < 500; i++ {
				if l.Take(t0, "shared", 1).Allowed {
					n++
				}
			}
			mu.Lock()
			admitted += n
			mu.Unlock()
		}()
	}
	wg.Wait()
	if admitted != 1000 {
		t.Fatalf("admitted %d of 4000, want exactly 1000", admitted)
	}
}

func BenchmarkTakeExistingBucket(b *testing.B) {
	l := New(Options{Limits: Limits{Capacity: 1e12, FillAmount: 1e12, Interval: time.Second, Continuous: true}})
	now := time.Now()
	l.Take(now, "alice", 1)
	b.ReportAllocs()
	for b.Loop() {
		l.Take(now, "alice", 1)
	}
}
