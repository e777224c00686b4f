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

// Sweeps must never hand out tokens: a bucket still inside its interval,
// or not full again, is kept however long it has been idle (issue 14: a
// daily quota of 10 admitted 120 a day across two-hourly sweeps).
func TestSweepKeepsQuotasExact(t *testing.T) {
	daily := Limits{Capacity: 10, FillAmount: 10, Interval: 24 * time.Hour}
	for _, tc := range []struct {
		name  string
		lim   Limits
		drain float64       // taken at t0, before the replay
		every time.Duration // one ask of cost tokens this often, for a day
		cost  float64
		sweep time.Duration // Sweep this often
		want  int           // asks admitted in the day
	}{
		{"daily quota, asks every 10m, hourly sweeps", daily, 0, 10 * time.Minute, 1, time.Hour, 10},
		{"daily quota, asks every 5m, sweeps every 5m", daily, 0, 5 * time.Minute, 1, 5 * time.Minute, 10},
		{"daily quota, asks every 3h, sweeps every minute", daily, 0, 3 * time.Hour, 2, time.Minute, 5},
		// 100 tokens, 10 a day: a drained bucket idle for 3h holds 1.25.
		{"slow continuous fill, drained, asks every 3h", Limits{Capacity: 100, FillAmount: 10, Interval: 24 * time.Hour, Continuous: true}, 100, 3 * time.Hour, 4, time.Minute, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := New(Options{Limits: tc.lim, MaxIdle: 2 * time.Hour})
			if tc.drain > 0 {
				l.Take(t0, "user", tc.drain)
			}
			admitted := 0
			for d := time.Duration(0); d < 24*time.Hour; d += time.Minute {
				if d%tc.sweep == 0 {
					l.Sweep(at(d))
				}
				if d%tc.every == 0 && l.Take(at(d), "user", tc.cost).Allowed {
					admitted++
				}
			}
			if admitted != tc.want {
				t.Fatalf("admitted %d asks of %v in a day, want %d", admitted, tc.cost, tc.want)
			}
		})
	}
}

// A bucket that is full again is the same as a missing one: idle ones are
// dropped, so memory stays bounded.
func TestSweepDropsFullIdleBuckets(t *testing.T) {
	l := New(Options{Limits: Limits{Capacity: 10, FillAmount: 10, Interval: time.Hour}, MaxIdle: 2 * time.Hour})
	l.Take(t0, "drained", 10)
	l.Take(t0, "untouched", 0)
	l.Take(at(90*time.Minute), "busy", 1) // refilled at 1h, used at 1h30
	if n := l.Sweep(at(150 * time.Minute)); n != 2 {
		t.Fatalf("swept %d, want 2 (drained at 0 and full since 1h; untouched)", n)
	}
	if n := l.Sweep(at(4 * time.Hour)); n != 1 {
		t.Fatalf("swept %d, want 1 (busy, idle 2h30 and full again)", n)
	}
}

// Without a fill rate a used bucket never fills again: it is kept for
// MaxIdle after its last use only, so a limiter a circuit sets to 0 does
// not keep every key forever.
func TestSweepWithoutFillRate(t *testing.T) {
	l := New(Options{Limits: Limits{Capacity: 5, FillAmount: 0, Interval: time.Second}, MaxIdle: time.Hour})
	l.Take(t0, "k", 5)
	l.Take(at(30*time.Minute), "k", 1) // refused, but a use
	if n := l.Sweep(at(80 * time.Minute)); n != 0 {
		t.Fatalf("swept %d within MaxIdle of the last use", n)
	}
	if n := l.Sweep(at(91 * time.Minute)); n != 1 {
		t.Fatalf("swept %d after MaxIdle, want 1", n)
	}
}

// Waits never overflow: a huge or non-finite cost waits "never"
// (math.MaxInt64), not a negative duration.
func TestWaitIsOverflowSafe(t *testing.T) {
	never := time.Duration(math.MaxInt64)
	for _, tc := range []struct {
		name string
		lim  Limits
		n    float64
		want time.Duration
	}{
		{"continuous, huge cost", Limits{Capacity: 10, FillAmount: 1, Interval: time.Second, Continuous: true}, 1e30, never},
		{"continuous, slow fill", Limits{Capacity: 10, FillAmount: 1e-12, Interval: time.Hour, Continuous: true}, 11, never},
		{"whole intervals, huge cost", Limits{Capacity: 10, FillAmount: 1, Interval: 24 * time.Hour}, 1e12, never},
		{"infinite cost", Limits{Capacity: 10, FillAmount: 1, Interval: time.Second, Continuous: true}, math.Inf(1), never},
		{"NaN cost", Limits{Capacity: 10, FillAmount: 1, Interval: time.Second, Continuous: true}, math.NaN(), never},
		{"negative cost", Limits{Capacity: 10, FillAmount: 1, Interval: time.Second, Continuous: true}, -5, never},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := New(Options{Limits: tc.lim})
			r := l.Take(t0, "k", tc.n)
			if r.Allowed || r.Wait != tc.want || r.Reset < 0 {
				t.Fatalf("take(%v) = %+v, want refused with wait %v", tc.n, r, tc.want)
			}
			if r := l.Take(t0, "k", 0); r.Remaining != tc.lim.Capacity {
				t.Fatalf("after take(%v): remaining %v, want %v untouched", tc.n, r.Remaining, tc.lim.Capacity)
			}
		})
	}
}

// BenchmarkTakeNewKeys goes through 2^20 keys in turn, more than the
// default budget holds: each Take makes a bucket and evicts one.
func BenchmarkTakeNewKeys(b *testing.B) {
	l := New(Options{Limits: Limits{Capacity: 10, FillAmount: 10, Interval: time.Second, Continuous: true}})
	now := time.Now()
	keys := make([]string, 1<<20)
	for i := range keys {
		keys[i] = fmt.Sprintf("user-%d", i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		l.Take(now, keys[i&(len(keys)-1)], 1)
		i++
	}
}
