package scheduler

import (
	"context"
	"math"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestUnlimitedAdmitsAtOnce(t *testing.T) {
	s := New(nil)
	for i := 0; i < 100; i++ {
		if ok, waited := s.Admit(context.Background(), Request{Tokens: 1, Timeout: time.Millisecond}); !ok || waited != 0 {
			t.Fatalf("unlimited scheduler: %v %v", ok, waited)
		}
	}
}

func TestQueuedRequestsAreAdmittedAtTheRate(t *testing.T) {
	s := New(nil)
	s.SetRate(200) // a bucket of 20
	var wg sync.WaitGroup
	var mu sync.Mutex
	admitted := 0
	start := time.Now()
	for i := 0; i < 60; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if ok, _ := s.Admit(context.Background(), Request{Workload: "w", Tokens: 1, Timeout: 5 * time.Second}); ok {
				mu.Lock()
				admitted++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if admitted != 60 {
		t.Fatalf("admitted %d of 60", admitted)
	}
	// 40 beyond the bucket at 200/s take at least 200 ms; the clock on a
	// busy machine only makes it longer.
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Fatalf("60 requests at 200/s with a bucket of 20 took %v", d)
	}
}

func TestWeightsShareASaturatedScheduler(t *testing.T) {
	s := New(nil)
	s.SetRate(0) // hold everything while the queue fills
	var wg sync.WaitGroup
	order := make(chan string, 200)
	for i := 0; i < 60; i++ {
		for _, w := range []struct {
			name   string
			weight float64
		}{{"low", 1}, {"high", 3}} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if ok, _ := s.Admit(context.Background(), Request{Workload: w.name, Weight: w.weight, Tokens: 1, Timeout: 10 * time.Second}); ok {
					order <- w.name
				}
			}()
		}
	}
	for s.QueueLen() < 120 {
		time.Sleep(time.Millisecond)
	}
	s.SetRate(400)
	wg.Wait()
	close(order)
	var first []string
	for name := range order {
		first = append(first, name)
	}
	if len(first) != 120 {
		t.Fatalf("admitted %d of 120", len(first))
	}
	high := 0
	for _, name := range first[:40] {
		if name == "high" {
			high++
		}
	}
	// Weight 3 against 1: about 30 of the first 40. Both are served.
	if high < 25 || high > 35 {
		t.Fatalf("high-weight share of the first 40 = %d, want about 30", high)
	}
}

func TestTimeoutAndDeadline(t *testing.T) {
	s := New(nil)
	s.SetRate(0)
	start := time.Now()
	if ok, _ := s.Admit(context.Background(), Request{Tokens: 1, Timeout: 30 * time.Millisecond}); ok {
		t.Fatal("admitted with a rate of 0")
	}
	if d := time.Since(start); d < 30*time.Millisecond {
		t.Fatalf("gave up after %v, before the timeout", d)
	}
	// The caller's deadline ends the wait: with an hour's timeout, only
	// the 20ms deadline lets Admit return within the test's run.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if ok, _ := s.Admit(ctx, Request{Tokens: 1, Timeout: time.Hour}); ok {
		t.Fatal("admitted with a rate of 0")
	}
	if n := s.QueueLen(); n != 0 {
		t.Fatalf("%d requests still queued after timing out", n)
	}
}

func TestRemovingTheLimitReleasesTheQueue(t *testing.T) {
	s := New(nil)
	s.SetRate(0)
	done := make(chan bool)
	go func() {
		ok, _ := s.Admit(context.Background(), Request{Tokens: 5, Timeout: 10 * time.Second})
		done <- ok
	}()
	for s.QueueLen() == 0 {
		time.Sleep(time.Millisecond)
	}
	s.SetRate(-1) // no limit
	if !<-done {
		t.Fatal("queued request rejected when the limit was lifted")
	}
}

// A limit set on an unlimited scheduler starts with a full bucket (a
// tenth of a second of the rate, at least 1): its first flows are
// admitted at once, not a token interval later. The clock stands still,
// so only the bucket's first fill can admit them.
func TestFirstLimitStartsWithAFullBucket(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return t0 }
	for _, c := range []struct {
		rate float64
		want int // admitted at t0 without waiting
	}{
		{23.5, 2}, // the 5 × 50 ms plant's warm-up: 1.2 × 19.6/s
		{200, 20},
		{5, 1},
		{0, 0},
	} {
		s := New(clock)
		if ok, _ := s.Admit(context.Background(), Request{Tokens: 1}); !ok {
			t.Fatalf("rate %v: unlimited scheduler rejected", c.rate)
		}
		s.SetRate(c.rate)
		got := 0
		for range 50 {
			if ok, _ := s.Admit(context.Background(), Request{Tokens: 1}); ok {
				got++
			}
		}
		if got != c.want {
			t.Errorf("rate %v: %d flows admitted at once after the limit was set, want %d", c.rate, got, c.want)
		}
		// Lowering a limit keeps what the bucket holds, up to its new size.
		s.SetRate(c.rate / 2)
		if ok, _ := s.Admit(context.Background(), Request{Tokens: 1}); ok {
			t.Errorf("rate %v: a lower limit refilled the bucket", c.rate)
		}
	}
}

func TestQueueTimeoutFloor(t *testing.T) {
	ms := time.Millisecond
	for _, c := range []struct {
		timeout      time.Duration
		tokens, rate float64
		want         time.Duration
	}{
		{20 * ms, 1, 23.5, 85106382 * time.Nanosecond}, // 2 token intervals of 42.6 ms
		{20 * ms, 1, 280, 20 * ms},                     // an interval of 3.6 ms: the timeout holds
		{20 * ms, 1, 100, 20 * ms},                     // 2 × 10 ms
		{50 * ms, 1, 50, 50 * ms},
		{50 * ms, 1, 20, 100 * ms},
		{20 * ms, 5, 100, 100 * ms}, // a flow of 5 tokens: its intervals are 50 ms
		{20 * ms, 0, 100, 20 * ms},  // tokens below 1 count as 1
		{20 * ms, 1, 0.5, time.Second},
		{3 * time.Second, 1, 0.5, 3 * time.Second},
		{20 * ms, 1, 0, 20 * ms}, // no token is coming
		{20 * ms, 1, math.Inf(1), 20 * ms},
		{20 * ms, 1, math.NaN(), 20 * ms},
		{0, 1, 100, 20 * ms},
	} {
		if got := QueueTimeout(c.timeout, c.tokens, c.rate); got != c.want {
			t.Errorf("QueueTimeout(%v, %v, %v) = %v, want %v", c.timeout, c.tokens, c.rate, got, c.want)
		}
	}
}
