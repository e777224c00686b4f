package client

import (
	"context"
	"net/http"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/fluxgate/fluxgate/controlpoint"
	"github.com/fluxgate/fluxgate/controlpoint/flow"
)

// The in-process checker takes the check's time from an event loop.
var _ LocalTryChecker = (*controlpoint.LocalChecker)(nil)

// clockedChecker is an in-process Checker that reads no clock: it notes
// the times it is given (TryCheckAt, EndFlowAt) and counts the checks
// that would read its own (Check, TryCheck). It admits with flow id 7, or
// rejects every flow.
type clockedChecker struct {
	reject bool
	checks []time.Time // TryCheckAt's now
	ends   []time.Time // EndFlowAt's now
	own    int         // Check and TryCheck calls
}

func (f *clockedChecker) decide(req *flow.Request, d *flow.Decision) {
	d.Reset(req.ControlPoint)
	if f.reject {
		d.Accepted = false
		return
	}
	d.FlowID = 7
}

func (f *clockedChecker) Check(_ context.Context, req *flow.Request, d *flow.Decision) error {
	f.own++
	f.decide(req, d)
	return nil
}

func (f *clockedChecker) TryCheck(_ context.Context, req *flow.Request, d *flow.Decision) (bool, error) {
	f.own++
	f.decide(req, d)
	return true, nil
}

func (f *clockedChecker) TryCheckAt(_ context.Context, now time.Time, req *flow.Request, d *flow.Decision) (bool, error) {
	f.checks = append(f.checks, now)
	f.decide(req, d)
	return true, nil
}

func (f *clockedChecker) EndFlowAt(now time.Time, id uint64, _ bool) {
	if id == 7 {
		f.ends = append(f.ends, now)
	}
}

// spanTimes is a tracer that keeps the start and end times of its spans.
type spanTimes struct {
	noop.Tracer
	spans *[][2]time.Time
}

func (s spanTimes) Start(ctx context.Context, _ string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	cfg := trace.NewSpanStartConfig(opts...)
	return ctx, &timedSpan{start: cfg.Timestamp(), spans: s.spans}
}

type timedSpan struct {
	noop.Span
	start time.Time
	spans *[][2]time.Time
}

func (s *timedSpan) End(opts ...trace.SpanEndOption) {
	cfg := trace.NewSpanEndConfig(opts...)
	*s.spans = append(*s.spans, [2]time.Time{s.start, cfg.Timestamp()})
}

// TestGateAtTimes: the …At variants take the caller's clock. A flow
// admitted at step a and ended at step e is checked at a (by a
// LocalTryChecker; another Checker reads its own clock), ends at e for
// the LocalFlowEnder, and is recorded with a workload from a to e, as a
// flow (its duration) and as a span (its start and end). A rejected flow
// is recorded at its step, with no workload.
func TestGateAtTimes(t *testing.T) {
	at := func(step int) time.Time { return t0.Add(time.Duration(step) * 100 * time.Millisecond) }
	for _, c := range []struct {
		name     string
		try      bool // TryAdmitAt, else AdmitAt
		plainTry bool // the Checker is a TryChecker without TryCheckAt
		reject   bool
		admit    int // step of the check
		end      int // step of EndAt
	}{
		{name: "tried at t0, ended at t3", try: true, admit: 0, end: 3},
		{name: "admitted at t1, ended at t9", admit: 1, end: 9},
		{name: "tried at t2 by a TryChecker that reads its own clock, ended at t4", try: true, plainTry: true, admit: 2, end: 4},
		{name: "tried and rejected at t5", try: true, reject: true, admit: 5},
		{name: "admitted and rejected at t6", reject: true, admit: 6},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, byTracer := range []bool{false, true} {
				f := &clockedChecker{reject: c.reject}
				var checker Checker = f
				if c.plainTry {
					checker = struct {
						TryChecker
						LocalFlowEnder
					}{f, f}
				}
				var seen flowsSeen
				var spans [][2]time.Time
				opts := MiddlewareOptions{Flows: &seen}
				if byTracer {
					opts = MiddlewareOptions{Tracer: spanTimes{spans: &spans}}
				}
				g := NewGate(checker, opts)
				x := &memExchange{header: http.Header{}}
				var a Admitted
				var ok bool
				if c.try {
					var decided bool
					a, ok, decided = g.TryAdmitAt(context.Background(), at(c.admit), x, map[string]string{}, 0)
					if !decided {
						t.Fatal("not decided")
					}
				} else {
					a, ok = g.AdmitAt(context.Background(), at(c.admit), x, map[string]string{}, 0)
				}
				if ok == c.reject {
					t.Fatalf("admitted %v, want %v", ok, !c.reject)
				}
				wantChecks, wantOwn := 1, 0 // a check at the given time, none by the checker's clock
				if !c.try || c.plainTry {
					wantChecks, wantOwn = 0, 1
				}
				if len(f.checks) != wantChecks || f.own != wantOwn || (wantChecks == 1 && !f.checks[0].Equal(at(c.admit))) {
					t.Fatalf("checks at %v and %d by the checker's clock; want %d at t%d and %d", f.checks, f.own, wantChecks, c.admit, wantOwn)
				}
				wantStart, wantEnd := at(c.admit), at(c.admit) // a rejected flow runs no workload
				if !c.reject {
					if len(seen)+len(spans) != 0 {
						t.Fatalf("recorded before the end: %+v %v", seen, spans)
					}
					a.EndAt(at(c.end), http.StatusOK, false)
					wantEnd = at(c.end)
					if len(f.ends) != 1 || !f.ends[0].Equal(wantEnd) {
						t.Fatalf("flow ends %v; want one at t%d", f.ends, c.end)
					}
				} else if len(f.ends) != 0 {
					t.Fatalf("a rejected flow ended: %v", f.ends)
				}
				if byTracer {
					if len(spans) != 1 || !spans[0][0].Equal(wantStart) || !spans[0][1].Equal(wantEnd) {
						t.Fatalf("spans %v; want one from %v to %v", spans, wantStart, wantEnd)
					}
					continue
				}
				if want := float64(wantEnd.Sub(wantStart)) / 1e6; len(seen) != 1 || seen[0].Rejected != c.reject || seen[0].WorkloadMillis != want {
					t.Fatalf("flows %+v; want one with rejected %v and a workload of %v ms", seen, c.reject, want)
				}
			}
		})
	}
}

// oneASecond is a rate limiter of one token a second and a burst of one
// at the control point "ingress".
const oneASecond = `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: one-a-second, namespace: default}
spec:
  circuit:
    components:
      - flow_control:
          rate_limiter:
            selectors: [{control_point: ingress}]
            in_ports:
              bucket_capacity: {constant_signal: {value: 1}}
              fill_amount: {constant_signal: {value: 1}}
            parameters: {interval: 1s}
`

// TestGateTryAdmitAtDecidesByTheGivenTime: the in-process engine's rate
// limiter fills by the time TryAdmitAt passes, not by the wall clock:
// two checks at t0 leave the second rejected, one at t0+1s is admitted.
func TestGateTryAdmitAtDecidesByTheGivenTime(t *testing.T) {
	g := NewGate(controlpoint.NewLocalChecker(newEngine(t, oneASecond)), MiddlewareOptions{})
	for i, s := range []struct {
		at    time.Duration // after t0
		admit bool
	}{
		{0, true},
		{0, false},
		{500 * time.Millisecond, false},
		{time.Second, true},
		{time.Second, false},
		{3 * time.Second, true}, // the burst is one: two seconds refill one token
		{3 * time.Second, false},
	} {
		x := &memExchange{header: http.Header{}}
		a, ok, decided := g.TryAdmitAt(context.Background(), t0.Add(s.at), x, map[string]string{}, 0)
		if !decided || ok != s.admit {
			t.Fatalf("step %d at t0+%v: decided %v admitted %v (%d %s); want decided, admitted %v", i, s.at, decided, ok, x.status, x.body, s.admit)
		}
		if !ok && x.status != http.StatusTooManyRequests {
			t.Fatalf("step %d at t0+%v: answered %d, want 429", i, s.at, x.status)
		}
		a.EndAt(t0.Add(s.at), http.StatusOK, false)
	}
}

// A flow admitted at t5 (on a goroutine) and ended at t3 (the reading of
// a loop's wake that began before the admission) ends at its start: no
// negative workload is recorded or reported.
func TestGateEndAtBeforeTheStart(t *testing.T) {
	at := func(step int) time.Time { return t0.Add(time.Duration(step) * 100 * time.Millisecond) }
	f := &clockedChecker{}
	var seen flowsSeen
	g := NewGate(f, MiddlewareOptions{Flows: &seen})
	a, ok := g.AdmitAt(context.Background(), at(5), &memExchange{header: http.Header{}}, map[string]string{}, 0)
	if !ok {
		t.Fatal("not admitted")
	}
	a.EndAt(at(3), http.StatusOK, false)
	if len(f.ends) != 1 || !f.ends[0].Equal(at(5)) || len(seen) != 1 || seen[0].WorkloadMillis != 0 {
		t.Fatalf("ended at %v, recorded %+v; want ended at t5 with a workload of 0", f.ends, seen)
	}
}
