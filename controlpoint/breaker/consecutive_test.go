package breaker

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// The consecutive-failures mode with one probe, as the Go SDK's Guard
// uses it: the step table that tested the Guard's own breaker before it
// was folded into this package, with the same times and expectations.
// abandon ends the probe with Ignored: the next call probes at once, the
// cool-down being over (the old breaker went back to open to say so; this
// one stays half-open with the probe slot free).
func TestConsecutiveGuardSteps(t *testing.T) {
	rec := &recorder{}
	b := mustNew(t, Config{ConsecutiveFailures: 2, OpenFor: time.Second, HalfOpenProbes: 1}, rec)
	type op int
	const (
		allow op = iota
		succeed
		fail
		abandon
	)
	steps := []struct {
		at        time.Duration
		op        op
		probe     bool // for succeed/fail/abandon: the call was the probe
		wantOK    bool // for allow
		wantProbe bool // for allow
		want      State
	}{
		{at: 0, op: allow, wantOK: true, want: Closed},
		{at: 0, op: fail, want: Closed},
		{at: 0, op: succeed, want: Closed}, // resets the count
		{at: 0, op: fail, want: Closed},
		{at: 1, op: fail, want: Open},
		{at: 500 * time.Millisecond, op: succeed, want: Open}, // a late answer from before does not close it
		{at: 999 * time.Millisecond, op: allow, wantOK: false, want: Open},
		{at: time.Second + 1, op: allow, wantOK: true, wantProbe: true, want: HalfOpen},
		{at: time.Second + 2, op: allow, wantOK: false, want: HalfOpen}, // one probe at a time
		{at: time.Second + 3, op: fail, want: HalfOpen},                 // not the probe
		{at: time.Second + 4, op: abandon, probe: true, want: HalfOpen},
		{at: time.Second + 5, op: allow, wantOK: true, wantProbe: true, want: HalfOpen}, // cool-down already over
		{at: time.Second + 6, op: fail, probe: true, want: Open},
		{at: 2 * time.Second, op: allow, wantOK: false, want: Open},
		{at: 2*time.Second + 6, op: allow, wantOK: true, wantProbe: true, want: HalfOpen},
		{at: 2*time.Second + 7, op: succeed, probe: true, want: Closed},
		{at: 2*time.Second + 8, op: allow, wantOK: true, want: Closed},
	}
	var closed, probe Permit // the last permits handed out while closed and as the probe
	for i, s := range steps {
		now := at(s.at)
		p := closed
		if s.probe {
			p = probe
		}
		switch s.op {
		case allow:
			got, err := b.AllowAt(now)
			if ok := err == nil; ok != s.wantOK || got.probe != s.wantProbe {
				t.Fatalf("step %d: allow = %v, %v; want %v, %v", i, ok, got.probe, s.wantOK, s.wantProbe)
			}
			if got.probe {
				probe = got
			} else if err == nil {
				closed = got
			}
		case succeed:
			b.RecordAt(now, p, Success)
		case fail:
			b.RecordAt(now, p, Failure)
		case abandon:
			b.RecordAt(now, p, Ignored)
		}
		if got := b.State(); got != s.want {
			t.Fatalf("step %d: state %v, want %v", i, got, s.want)
		}
	}
	want := "closed->open,open->half_open,half_open->open,open->half_open,half_open->closed"
	if got := rec.String(); got != want {
		t.Fatalf("transitions %s\nwant        %s", got, want)
	}
}

// The consecutive-failures mode as the Redis backend uses it (threshold
// 3, one probe): the step table of its former breaker, with StateAt
// reporting an open breaker past its cool-down as half-open ("probing").
func TestConsecutiveRedisSteps(t *testing.T) {
	b := mustNew(t, Config{ConsecutiveFailures: 3, OpenFor: time.Second, HalfOpenProbes: 1})
	steps := []struct {
		at      time.Duration
		op      string // allow, fail, ok
		allowed bool
		state   State
		fails   int
	}{
		{0, "allow", true, Closed, 0},
		{0, "fail", false, Closed, 1},
		{0, "fail", false, Closed, 2},
		{0, "ok", false, Closed, 0}, // a success resets the count
		{0, "fail", false, Closed, 1},
		{0, "fail", false, Closed, 2},
		{0, "fail", false, Open, 3},
		{500 * time.Millisecond, "allow", false, Open, 3},
		{time.Second, "allow", true, HalfOpen, 3}, // the probe
		{time.Second, "allow", false, HalfOpen, 3},
		{time.Second, "fail", false, Open, 4}, // a failed probe reopens
		{1500 * time.Millisecond, "allow", false, Open, 4},
		{2 * time.Second, "allow", true, HalfOpen, 4},
		{2 * time.Second, "ok", false, Closed, 0},
		{2 * time.Second, "allow", true, Closed, 0},
	}
	var p Permit
	for i, s := range steps {
		now := at(s.at)
		switch s.op {
		case "allow":
			got, err := b.AllowAt(now)
			if (err == nil) != s.allowed {
				t.Fatalf("step %d: allow = %v, want %v", i, err == nil, s.allowed)
			}
			if err == nil {
				p = got
			}
		case "fail":
			b.RecordAt(now, p, Failure)
		case "ok":
			b.RecordAt(now, p, Success)
		}
		if got := b.StateAt(now); got != s.state {
			t.Fatalf("step %d: state %s, want %s", i, got, s.state)
		}
		if got := b.Failures(); got != s.fails {
			t.Fatalf("step %d: failures %d, want %d", i, got, s.fails)
		}
	}
	// An open breaker past its cool-down is half-open to a caller at
	// that time, before any call moved it.
	b.RecordAt(at(2*time.Second), p, Failure)
	b.RecordAt(at(2*time.Second), p, Failure)
	b.RecordAt(at(2*time.Second), p, Failure)
	if got, want := b.StateAt(at(3*time.Second)), HalfOpen; got != want || b.State() != Open {
		t.Fatalf("StateAt after the cool-down = %s (State %s), want %s (open)", got, b.State(), want)
	}
}

// The error rate does not trip a breaker in consecutive mode: failures
// that alternate with successes never open it.
func TestConsecutiveIgnoresErrorRate(t *testing.T) {
	b := mustNew(t, Config{ConsecutiveFailures: 2, MinRequests: 2, ErrorRate: 0.1})
	for i := range 100 {
		p, err := b.AllowAt(at(time.Duration(i)))
		if err != nil {
			t.Fatalf("call %d refused: %v", i, err)
		}
		o := Success
		if i%2 == 0 {
			o = Failure
		}
		b.RecordAt(at(time.Duration(i)), p, o)
	}
	if s := b.State(); s != Closed {
		t.Fatalf("state %s after alternating outcomes, want closed", s)
	}
}

func TestConsecutiveRejectsNegative(t *testing.T) {
	_, err := New(Options{Config: Config{ConsecutiveFailures: -1}})
	if err == nil || !strings.Contains(err.Error(), "consecutive_failures") {
		t.Fatalf("error %v, want one naming consecutive_failures", err)
	}
}

// Many goroutines on the lock-free path and its slow path at once (run
// with -race): a run of failures opens the breaker and a probe closes it
// again, and no half-open breaker ever has two probes in flight.
func TestConsecutiveConcurrent(t *testing.T) {
	c := &checker{t: t, counts: map[State]int{}}
	b := mustNew(t, Config{ConsecutiveFailures: 3, OpenFor: time.Millisecond, HalfOpenProbes: 1}, c)
	c.b = &b
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 3000 {
				_ = b.Do(context.Background(), func(context.Context) error {
					if (i/50+g)%4 == 0 {
						return errors.New("x")
					}
					return nil
				})
			}
		}()
	}
	wg.Wait()
	if c.counts[Open] == 0 {
		t.Fatalf("transitions %v: the runs of failures never opened the breaker", c.counts)
	}
}

// BenchmarkAllowRecord admits and ends successful calls from parallel
// goroutines: the error-rate breaker takes its lock twice a call, the
// consecutive-failures one, closed and clean, none.
func BenchmarkAllowRecord(b *testing.B) {
	for _, c := range []struct {
		name string
		cfg  Config
	}{
		{"error_rate", Config{}},
		{"consecutive", Config{ConsecutiveFailures: 5, HalfOpenProbes: 1}},
	} {
		b.Run(c.name, func(b *testing.B) {
			br, err := New(Options{Name: "bench", Config: c.cfg})
			if err != nil {
				b.Fatal(err)
			}
			now := time.Now()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					p, err := br.AllowAt(now)
					if err != nil {
						b.Error(err)
						return
					}
					br.RecordAt(now, p, Success)
				}
			})
		})
	}
}
