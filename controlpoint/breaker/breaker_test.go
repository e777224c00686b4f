package breaker

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

// recorder is a Listener that remembers transitions.
type recorder struct {
	mu    sync.Mutex
	trans []string
}

func (r *recorder) OnTransition(name string, from, to State, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.trans = append(r.trans, from.String()+"->"+to.String())
}

func (r *recorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.trans, ",")
}

func mustNew(t *testing.T, cfg Config, ls ...Listener) *Breaker {
	t.Helper()
	b, err := New(Options{Name: "test", Config: cfg, Listeners: ls})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSteps replays tables of calls at explicit times. Each step admits a
// call at `at` (want allowed or not) and, if admitted and done >= 0, ends it
// at at+done with the outcome.
func TestSteps(t *testing.T) {
	cfg := Config{ErrorRate: 0.5, MinRequests: 4, Window: 10 * time.Second, OpenFor: 5 * time.Second, HalfOpenProbes: 2}
	type step struct {
		at      time.Duration
		allowed bool
		outcome Outcome
		hold    bool // keep the permit; end it in a later step with release
		release int  // index+1 of a held step to end now with outcome
		state   State
	}
	tests := []struct {
		name  string
		steps []step
		trans string
	}{
		{
			name: "fewer than min_requests never trips",
			steps: []step{
				{at: 0, allowed: true, outcome: Failure, state: Closed},
				{at: 1 * time.Second, allowed: true, outcome: Failure, state: Closed},
				{at: 2 * time.Second, allowed: true, outcome: Failure, state: Closed},
			},
		},
		{
			name: "error rate above threshold with min_requests trips",
			steps: []step{
				{at: 0, allowed: true, outcome: Success, state: Closed},
				{at: 1 * time.Second, allowed: true, outcome: Failure, state: Closed},
				{at: 2 * time.Second, allowed: true, outcome: Failure, state: Closed},
				{at: 3 * time.Second, allowed: true, outcome: Failure, state: Open},
				{at: 4 * time.Second, allowed: false, state: Open},
				{at: 7900 * time.Millisecond, allowed: false, state: Open},
			},
			trans: "closed->open",
		},
		{
			name: "exactly the error rate does not trip",
			steps: []step{
				{at: 0, allowed: true, outcome: Success},
				{at: 1, allowed: true, outcome: Success},
				{at: 2, allowed: true, outcome: Failure},
				{at: 3, allowed: true, outcome: Failure, state: Closed},
			},
		},
		{
			name: "old outcomes leave the window",
			steps: []step{
				{at: 0, allowed: true, outcome: Failure},
				{at: 1 * time.Second, allowed: true, outcome: Failure},
				{at: 2 * time.Second, allowed: true, outcome: Failure},
				// 12s later the three failures are gone: 1 failure of 1.
				{at: 14 * time.Second, allowed: true, outcome: Failure, state: Closed},
				{at: 14 * time.Second, allowed: true, outcome: Success, state: Closed},
			},
		},
		{
			name: "half-open probes close it",
			steps: []step{
				{at: 0, allowed: true, outcome: Failure},
				{at: 0, allowed: true, outcome: Failure},
				{at: 0, allowed: true, outcome: Failure},
				{at: 0, allowed: true, outcome: Failure, state: Open},
				{at: 5 * time.Second, allowed: true, hold: true, state: HalfOpen},
				{at: 5 * time.Second, allowed: true, hold: true, state: HalfOpen},
				{at: 5 * time.Second, allowed: false, state: HalfOpen}, // both slots taken
				{at: 6 * time.Second, release: 5, outcome: Success, state: HalfOpen},
				{at: 6 * time.Second, allowed: true, hold: true, state: HalfOpen}, // a slot is free again
				{at: 6 * time.Second, release: 6, outcome: Success, state: Closed},
				{at: 6 * time.Second, release: 9, outcome: Failure, state: Closed}, // stale probe: ignored
				{at: 7 * time.Second, allowed: true, outcome: Success, state: Closed},
			},
			trans: "closed->open,open->half_open,half_open->closed",
		},
		{
			name: "a failed probe reopens it for open_for",
			steps: []step{
				{at: 0, allowed: true, outcome: Failure},
				{at: 0, allowed: true, outcome: Failure},
				{at: 0, allowed: true, outcome: Failure},
				{at: 0, allowed: true, outcome: Failure, state: Open},
				{at: 5 * time.Second, allowed: true, outcome: Failure, state: Open},
				{at: 9 * time.Second, allowed: false, state: Open},
				{at: 10 * time.Second, allowed: true, outcome: Success, state: HalfOpen},
			},
			trans: "closed->open,open->half_open,half_open->open,open->half_open",
		},
		{
			name: "an ignored probe frees its slot and decides nothing",
			steps: []step{
				{at: 0, allowed: true, outcome: Failure},
				{at: 0, allowed: true, outcome: Failure},
				{at: 0, allowed: true, outcome: Failure},
				{at: 0, allowed: true, outcome: Failure, state: Open},
				{at: 5 * time.Second, allowed: true, outcome: Ignored, state: HalfOpen},
				{at: 5 * time.Second, allowed: true, outcome: Ignored, state: HalfOpen},
				{at: 5 * time.Second, allowed: true, outcome: Ignored, state: HalfOpen},
			},
			trans: "closed->open,open->half_open",
		},
		{
			name: "a call admitted while closed cannot close a half-open breaker",
			steps: []step{
				{at: 0, allowed: true, hold: true},
				{at: 0, allowed: true, outcome: Failure},
				{at: 0, allowed: true, outcome: Failure},
				{at: 0, allowed: true, outcome: Failure},
				{at: 0, allowed: true, outcome: Failure, state: Open},
				{at: 5 * time.Second, allowed: true, hold: true, state: HalfOpen},
				{at: 5 * time.Second, release: 1, outcome: Success, state: HalfOpen},
				{at: 5 * time.Second, release: 1, outcome: Success, state: HalfOpen},
			},
			trans: "closed->open,open->half_open",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			b := mustNew(t, cfg, rec)
			held := make(map[int]Permit)
			for i, s := range tt.steps {
				now := at(s.at)
				if s.release > 0 {
					b.RecordAt(now, held[s.release-1], s.outcome)
				} else {
					p, err := b.AllowAt(now)
					if got := err == nil; got != s.allowed {
						t.Fatalf("step %d: allowed = %v (%v), want %v", i, got, err, s.allowed)
					}
					if err != nil && !errors.Is(err, ErrOpen) {
						t.Fatalf("step %d: error %v is not ErrOpen", i, err)
					}
					if err == nil {
						if s.hold {
							held[i] = p
						} else {
							b.RecordAt(now, p, s.outcome)
						}
					}
				}
				if got := b.State(); got != s.state {
					t.Fatalf("step %d: state %s, want %s", i, got, s.state)
				}
			}
			if got := rec.String(); got != tt.trans {
				t.Errorf("transitions %q, want %q", got, tt.trans)
			}
		})
	}
}

func TestOpenErrorRetryAfter(t *testing.T) {
	b := mustNew(t, Config{MinRequests: 1, OpenFor: 5 * time.Second})
	p, _ := b.AllowAt(at(0))
	b.DoneAt(at(0), p, errors.New("boom"))
	_, err := b.AllowAt(at(2 * time.Second))
	var oe *OpenError
	if !errors.As(err, &oe) || oe.RetryAfter != 3*time.Second || oe.State != Open || oe.Name != "test" {
		t.Fatalf("err = %#v", err)
	}
}

func TestDoneAtClassifies(t *testing.T) {
	b := mustNew(t, Config{MinRequests: 1})
	p, _ := b.AllowAt(at(0))
	b.DoneAt(at(0), p, context.Canceled) // ignored
	if b.State() != Closed {
		t.Fatal("a canceled call tripped the breaker")
	}
	p, _ = b.AllowAt(at(0))
	b.DoneAt(at(0), p, fmt.Errorf("dial: %w", errors.New("refused")))
	if b.State() != Open {
		t.Fatal("a failed call did not trip a breaker with min_requests 1")
	}
}

func TestDo(t *testing.T) {
	b := mustNew(t, Config{MinRequests: 2, OpenFor: time.Hour})
	boom := errors.New("boom")
	for range 2 {
		if err := b.Do(context.Background(), func(context.Context) error { return boom }); !errors.Is(err, boom) {
			t.Fatalf("Do = %v, want boom", err)
		}
	}
	ran := false
	err := b.Do(context.Background(), func(context.Context) error { ran = true; return nil })
	if !errors.Is(err, ErrOpen) || ran {
		t.Fatalf("Do on an open breaker = %v, ran %v", err, ran)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	_, err := New(Options{Config: Config{ErrorRate: 2, MinRequests: -1, HalfOpenProbes: -3}})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"error_rate", "min_requests", "half_open_probes"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}

// legal are the only transitions a breaker may make.
var legal = map[[2]State]bool{
	{Closed, Open}:     true,
	{Open, HalfOpen}:   true,
	{HalfOpen, Closed}: true,
	{HalfOpen, Open}:   true,
}

// checker is a Listener asserting properties on every transition.
type checker struct {
	t      *testing.T
	b      **Breaker
	last   State
	counts map[State]int
}

func (c *checker) OnTransition(name string, from, to State, reason string) {
	if !legal[[2]State{from, to}] {
		c.t.Errorf("illegal transition %s -> %s (%s)", from, to, reason)
	}
	if from != c.last {
		c.t.Errorf("transition from %s, but the last state was %s", from, c.last)
	}
	if reason == "" {
		c.t.Errorf("transition %s -> %s without a reason", from, to)
	}
	c.last = to
	c.counts[to]++
}

// TestProperties runs random sequences of admissions and outcomes at
// random, increasing times and checks, after every event, that a half-open
// breaker never has more than HalfOpenProbes probes in flight and that
// every transition is legal.
func TestProperties(t *testing.T) {
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 42))
		cfg := Config{
			ErrorRate:      0.1 + 0.8*rng.Float64(),
			MinRequests:    1 + rng.IntN(10),
			Window:         time.Duration(1+rng.IntN(10)) * time.Second,
			OpenFor:        time.Duration(1+rng.IntN(5)) * time.Second,
			HalfOpenProbes: 1 + rng.IntN(4),
		}
		if seed%2 == 1 { // every other run trips on failures in a row
			cfg.ConsecutiveFailures = 1 + rng.IntN(6)
		}
		var b *Breaker
		ck := &checker{t: t, b: &b, counts: make(map[State]int)}
		b = mustNew(t, cfg, ck)
		now := t0
		var held []Permit
		failP := rng.Float64()
		for range 2000 {
			now = now.Add(time.Duration(rng.IntN(400)) * time.Millisecond)
			if len(held) == 0 || rng.IntN(2) == 0 {
				p, err := b.AllowAt(now)
				if err == nil {
					held = append(held, p)
				} else if !errors.Is(err, ErrOpen) {
					t.Fatalf("seed %d: AllowAt error %v", seed, err)
				}
			} else {
				i := rng.IntN(len(held))
				o := Success
				switch r := rng.Float64(); {
				case r < failP:
					o = Failure
				case r < failP+0.05:
					o = Ignored
				}
				b.RecordAt(now, held[i], o)
				held = append(held[:i], held[i+1:]...)
			}
			b.mu.Lock()
			if b.state == HalfOpen {
				probes := 0
				for _, p := range held {
					if p.probe && p.gen == b.gen.Load() {
						probes++
					}
				}
				if probes != b.inFlight || probes > cfg.HalfOpenProbes {
					t.Fatalf("seed %d: %d probes in flight (breaker counts %d), limit %d", seed, probes, b.inFlight, cfg.HalfOpenProbes)
				}
			}
			b.mu.Unlock()
		}
		if t.Failed() {
			t.Fatalf("seed %d failed", seed)
		}
	}
}

// TestConcurrent hammers one breaker from several goroutines; run with
// -race to check the locking.
func TestConcurrent(t *testing.T) {
	b := mustNew(t, Config{MinRequests: 5, OpenFor: time.Millisecond, HalfOpenProbes: 2, Window: 50 * time.Millisecond})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				_ = b.Do(context.Background(), func(context.Context) error {
					if (i+g)%3 == 0 {
						return errors.New("x")
					}
					return nil
				})
			}
		}()
	}
	wg.Wait()
}
