package client

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/fluxgate/fluxgate/controlpoint/breaker"
	"github.com/fluxgate/fluxgate/controlpoint/flow"
)

// deadlineSpy passes checks to next and records, for each, when it was
// called and the deadline of its context (the zero time for none): what
// bounds a check, read without timing it, so a loaded machine cannot fail
// the test.
type deadlineSpy struct {
	next Checker
	// only, when set, is the one deadline under which next is asked; a
	// check with another fails at once instead of waiting on next.
	only      time.Time
	mu        sync.Mutex
	called    []time.Time // guarded by mu
	deadlines []time.Time // guarded by mu
}

func (s *deadlineSpy) Check(ctx context.Context, req *flow.Request, d *flow.Decision) error {
	called := time.Now()
	dl, _ := ctx.Deadline()
	s.mu.Lock()
	s.called = append(s.called, called)
	s.deadlines = append(s.deadlines, dl)
	s.mu.Unlock()
	if !s.only.IsZero() && !dl.Equal(s.only) {
		return errors.New("unexpected deadline")
	}
	return s.next.Check(ctx, req, d)
}

// last returns the deadline of the last check.
func (s *deadlineSpy) last(t *testing.T) time.Time {
	t.Helper()
	_, dl := s.lastCall(t)
	return dl
}

// lastCall returns when the last check reached the spy and its deadline.
func (s *deadlineSpy) lastCall(t *testing.T) (called, deadline time.Time) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.deadlines) == 0 {
		t.Fatal("the Guard did not call its Checker")
	}
	return s.called[len(s.called)-1], s.deadlines[len(s.deadlines)-1]
}

// wantDeadline checks that the last check through spy ran under the
// Guard's timeout from the moment it was called: the Guard set the
// deadline between before (the call) and the moment the check reached
// the spy, so the deadline lies timeout after a moment between the two,
// however long the machine took.
func wantDeadline(t *testing.T, spy *deadlineSpy, before time.Time, timeout time.Duration) {
	t.Helper()
	called, dl := spy.lastCall(t)
	if dl.IsZero() {
		t.Fatal("the check ran without a deadline")
	}
	if dl.Before(before.Add(timeout)) || dl.After(called.Add(timeout)) {
		t.Fatalf("check deadline %v after the call began, want the Guard's %v (the check reached the Checker %v after)", dl.Sub(before), timeout, called.Sub(before))
	}
}

var t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

// failures sums fluxgate_client_check_failures_total for one mode and
// reason ("" for all reasons).
func failures(t *testing.T, reg *prometheus.Registry, mode, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != "fluxgate_client_check_failures_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["mode"] == mode && (reason == "" || labels["reason"] == reason) {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

func wantFailureMode(t *testing.T, mode FailureMode, d *flow.Decision) {
	t.Helper()
	if mode == FailOpen {
		if !d.Accepted || d.Reason != flow.ReasonNone || d.ControlPoint != "ingress" || len(d.Limiters) != 0 {
			t.Fatalf("fail-open decision = %+v", d)
		}
		return
	}
	if d.Accepted || d.Reason != flow.ReasonFailedClosed || d.StatusCode != 503 || d.ControlPoint != "ingress" || len(d.Limiters) != 0 {
		t.Fatalf("fail-closed decision = %+v", d)
	}
}

func TestGuardUnreachableAgent(t *testing.T) {
	for _, mode := range []FailureMode{FailOpen, FailClosed} {
		t.Run(mode.String(), func(t *testing.T) {
			reg := prometheus.NewRegistry()
			const timeout = 50 * time.Millisecond
			spy := &deadlineSpy{next: newRemote(t, deadAddr(t))}
			g := newGuard(t, spy, GuardOptions{FailureMode: mode, Timeout: timeout, Registerer: reg})
			for range 3 {
				before := time.Now()
				resp, err := check(context.Background(), g, ingress())
				if err != nil {
					t.Fatal(err)
				}
				wantDeadline(t, spy, before, timeout)
				wantFailureMode(t, mode, resp)
			}
			if got := failures(t, reg, mode.String(), ""); got != 3 {
				t.Fatalf("failures{mode=%s} = %v, want 3", mode, got)
			}
		})
	}
}

// hangingAgent serves checks that block until the caller gives up, and
// reports what the server side saw.
func hangingAgent(t *testing.T) (addr string, serverSaw <-chan error) {
	saw := make(chan error, 16)
	addr = startAgent(t, checkerFunc(func(ctx context.Context, req *flow.Request, d *flow.Decision) error {
		<-ctx.Done()
		saw <- ctx.Err()
		return ctx.Err()
	}))
	return addr, saw
}

func TestGuardHangingAgent(t *testing.T) {
	addr, serverSaw := hangingAgent(t)
	remote := newRemote(t, addr)
	for _, mode := range []FailureMode{FailOpen, FailClosed} {
		t.Run(mode.String(), func(t *testing.T) {
			reg := prometheus.NewRegistry()
			const timeout = 50 * time.Millisecond
			spy := &deadlineSpy{next: remote}
			g := newGuard(t, spy, GuardOptions{FailureMode: mode, Timeout: timeout, Registerer: reg})
			before := time.Now()
			resp, err := check(context.Background(), g, ingress())
			after := time.Now()
			if err != nil {
				t.Fatal(err)
			}
			// The agent never answers, so only the deadline ends the
			// check: it is counted as a timeout, and it cannot have
			// returned before the deadline passed.
			wantDeadline(t, spy, before, timeout)
			if !after.After(spy.last(t)) {
				t.Fatalf("check returned %v before its deadline", spy.last(t).Sub(after))
			}
			wantFailureMode(t, mode, resp)
			if got := failures(t, reg, mode.String(), failTimeout); got != 1 {
				t.Fatalf("failures{reason=timeout} = %v, want 1", got)
			}
			select {
			case err := <-serverSaw:
				if err == nil {
					t.Fatal("server: context not done")
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the agent never saw the check end: the deadline did not travel")
			}
		})
	}
	t.Run("caller deadline wins", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		want, _ := ctx.Deadline()
		spy := &deadlineSpy{next: remote, only: want}
		g := newGuard(t, spy, GuardOptions{Timeout: time.Minute, FailureMode: FailClosed})
		resp, err := check(ctx, g, ingress())
		if got := spy.last(t); !got.Equal(want) {
			t.Fatalf("check deadline %v after the caller's, want the caller's", got.Sub(want))
		}
		if err != nil {
			t.Fatal(err)
		}
		wantFailureMode(t, FailClosed, resp)
		<-serverSaw
	})
}

func TestMiddlewareFailClosedWhenAgentDown(t *testing.T) {
	g := newGuard(t, newRemote(t, deadAddr(t)), GuardOptions{FailureMode: FailClosed, Timeout: 50 * time.Millisecond})
	h := Middleware(g, MiddlewareOptions{})(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		t.Error("handler ran although the agent is down and the mode is fail-closed")
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != 503 || rec.Header().Get("X-FluxGate-Reason") != "failed_closed" ||
		rec.Body.String() != `{"error":"failed_closed","retry_after_seconds":0}`+"\n" {
		t.Fatalf("status %d, headers %v, body %q", rec.Code, rec.Header(), rec.Body)
	}
}

func TestGuardCallerCancelIsNotAFailure(t *testing.T) {
	reg := prometheus.NewRegistry()
	var calls atomic.Int32
	c := checkerFunc(func(ctx context.Context, req *flow.Request, d *flow.Decision) error {
		calls.Add(1)
		<-ctx.Done()
		return ctx.Err()
	})
	g := newGuard(t, c, GuardOptions{Registerer: reg, Timeout: time.Minute, BreakerThreshold: 1})
	for range 3 {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(time.Millisecond, cancel)
		if _, err := check(ctx, g, ingress()); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	}
	if got := failures(t, reg, "fail_open", ""); got != 0 || calls.Load() != 3 || g.br.State() != breaker.Closed {
		t.Fatalf("failures %v, calls %d, breaker %v; want 0, 3, closed", got, calls.Load(), g.br.State())
	}
}

// fakeAgent is a Checker that is up or down at will and counts calls.
type fakeAgent struct {
	up    atomic.Bool
	calls atomic.Int32
}

func (f *fakeAgent) Check(ctx context.Context, req *flow.Request, d *flow.Decision) error {
	f.calls.Add(1)
	if !f.up.Load() {
		return errors.New("connection refused")
	}
	return accept(ctx, req, d)
}

// clock is a settable time for the breaker.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time   { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time)  { c.mu.Lock(); defer c.mu.Unlock(); c.t = t }
func newClock(t time.Time) *clock { return &clock{t: t} }

func TestGuardBreaker(t *testing.T) {
	agent := &fakeAgent{}
	clk := newClock(t0)
	reg := prometheus.NewRegistry()
	g := newGuard(t, agent, GuardOptions{
		FailureMode: FailClosed, BreakerThreshold: 3, BreakerCoolDown: time.Second, Now: clk.now, Registerer: reg,
	})
	// With FailClosed, "accepted" means the agent answered.
	steps := []struct {
		at         time.Duration
		up         bool
		wantCalled bool
		wantOK     bool
		wantState  breaker.State
	}{
		{0, false, true, false, breaker.Closed},
		{0, false, true, false, breaker.Closed},
		{0, false, true, false, breaker.Open}, // 3rd consecutive failure opens
		{10 * time.Millisecond, false, false, false, breaker.Open},
		{999 * time.Millisecond, true, false, false, breaker.Open}, // cooling down, even if the agent is back
		{time.Second, false, true, false, breaker.Open},            // probe fails: another cool-down
		{1500 * time.Millisecond, true, false, false, breaker.Open},
		{2 * time.Second, true, true, true, breaker.Closed}, // probe succeeds
		{2 * time.Second, true, true, true, breaker.Closed},
		{2 * time.Second, false, true, false, breaker.Closed}, // failure 1 of 3
		{2 * time.Second, true, true, true, breaker.Closed},   // a success resets the count
		{2 * time.Second, false, true, false, breaker.Closed},
		{2 * time.Second, false, true, false, breaker.Closed},
		{2 * time.Second, false, true, false, breaker.Open},
		{2 * time.Second, true, false, false, breaker.Open},
	}
	for i, s := range steps {
		clk.set(t0.Add(s.at))
		agent.up.Store(s.up)
		before := agent.calls.Load()
		resp, err := check(context.Background(), g, ingress())
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		called := agent.calls.Load() > before
		ok := resp.Accepted
		if called != s.wantCalled || ok != s.wantOK || g.br.State() != s.wantState {
			t.Fatalf("step %d (t0+%v, up=%v): called=%v ok=%v state=%v; want %v %v %v",
				i, s.at, s.up, called, ok, g.br.State(), s.wantCalled, s.wantOK, s.wantState)
		}
	}
	if got := failures(t, reg, "fail_closed", failBreakerOpen); got != 4 {
		t.Fatalf("failures{reason=breaker_open} = %v, want 4", got)
	}
	if got := failures(t, reg, "fail_closed", failError); got != 8 {
		t.Fatalf("failures{reason=error} = %v, want 8", got)
	}
	if got := testutil.ToFloat64(g.state); got != float64(breaker.Open) {
		t.Fatalf("fluxgate_client_breaker_state = %v, want 1", got)
	}
}

// While the probe is in flight, other checks do not reach the agent; a
// probe whose caller goes away lets the next check probe.
func TestGuardBreakerOneProbeAtATime(t *testing.T) {
	clk := newClock(t0)
	var calls atomic.Int32
	entered := make(chan struct{}, 1)
	release := make(chan error)
	c := checkerFunc(func(ctx context.Context, req *flow.Request, d *flow.Decision) error {
		calls.Add(1)
		entered <- struct{}{}
		select {
		case err := <-release:
			if err != nil {
				return err
			}
			return accept(ctx, req, d)
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	g := newGuard(t, c, GuardOptions{FailureMode: FailClosed, Timeout: time.Minute, BreakerThreshold: 1, BreakerCoolDown: time.Second, Now: clk.now})
	probe := func(ctx context.Context) <-chan *flow.Decision {
		out := make(chan *flow.Decision, 1)
		go func() {
			resp, _ := check(ctx, g, ingress())
			out <- resp
		}()
		return out
	}
	// One failure opens the breaker.
	first := probe(context.Background())
	<-entered
	release <- errors.New("down")
	wantFailureMode(t, FailClosed, <-first)

	// After the cool-down, a probe whose caller cancels.
	clk.set(t0.Add(time.Second))
	ctx, cancel := context.WithCancel(context.Background())
	abandoned := probe(ctx)
	<-entered
	resp, _ := check(context.Background(), g, ingress()) // skipped while the probe is in flight
	wantFailureMode(t, FailClosed, resp)
	cancel()
	if resp := <-abandoned; resp != nil {
		t.Fatalf("cancelled probe returned %v", resp)
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("%d calls reached the agent, want 2", n)
	}

	// The next check probes at once and closes the breaker.
	good := probe(context.Background())
	<-entered
	release <- nil
	if resp := <-good; resp == nil || !resp.Accepted {
		t.Fatalf("probe answered %v", resp)
	}
	if g.br.State() != breaker.Closed {
		t.Fatalf("breaker %v after a good probe", g.br.State())
	}
}

func TestGuardBreakerDisabled(t *testing.T) {
	agent := &fakeAgent{}
	g := newGuard(t, agent, GuardOptions{BreakerThreshold: -1})
	for range 20 {
		resp, _ := check(context.Background(), g, ingress())
		wantFailureMode(t, FailOpen, resp)
	}
	if n := agent.calls.Load(); n != 20 {
		t.Fatalf("%d calls with the breaker disabled, want 20", n)
	}
}

func TestNewGuardRegistrationConflict(t *testing.T) {
	reg := prometheus.NewRegistry()
	newGuard(t, &fakeAgent{}, GuardOptions{Registerer: reg})
	if _, err := NewGuard(&fakeAgent{}, GuardOptions{Registerer: reg}); err == nil {
		t.Fatal("second Guard on one registry: no error")
	}
	reg = prometheus.NewRegistry()
	for _, name := range []string{"a", "b"} {
		wrapped := prometheus.WrapRegistererWith(prometheus.Labels{"agent": name}, reg)
		if _, err := NewGuard(&fakeAgent{}, GuardOptions{Registerer: wrapped}); err != nil {
			t.Fatalf("wrapped registerer %s: %v", name, err)
		}
	}
}

// BenchmarkGuard is the Guard's own cost on the check path of a healthy
// agent: the deadline and the closed breaker around a Checker that
// answers at once.
func BenchmarkGuard(b *testing.B) {
	g, err := NewGuard(checkerFunc(accept), GuardOptions{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		req := ingress()
		var d flow.Decision
		for pb.Next() {
			if err := g.Check(ctx, req, &d); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
