package scheduler

import (
	"context"
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
	if got := s.TakeArrivals(); got != 100 {
		t.Fatalf("arrivals = %v", got)
	}
	if got := s.TakeArrivals(); got != 0 {
		t.Fatalf("arrivals after take = %v", got)
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
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	start = time.Now()
	if ok, _ := s.Admit(ctx, Request{Tokens: 1, Timeout: 10 * time.Second}); ok {
		t.Fatal("admitted with a rate of 0")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("waited %v past the context deadline", d)
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
