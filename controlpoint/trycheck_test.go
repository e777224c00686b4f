package controlpoint

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/fluxgate/fluxgate/metricnames"
)

// tryPolicies are policies of every flow-control kind, each at control
// point api, for the equivalence of TryCheck and Check.
// waits says that some of the flows of the table's run would wait.
var tryPolicies = []struct {
	name, policy string
	waits        bool
}{
	{"rate limiters", fmt.Sprintf(twoLimiters, false), false},
	{"rate limiters, dry run", fmt.Sprintf(twoLimiters, true), false},
	{"sampler", strings.Replace(fmt.Sprintf(samplerPolicy, 50, "user"), "control_point: ingress", "control_point: api", 1), false},
	{"load scheduler", fmt.Sprintf(loadSchedulerPolicy, "{constant_signal: {value: 10}}"), true},
	{"adaptive concurrency", adaptivePolicy, true},
	{"concurrency limiter", concurrencyLimiterPolicy, false},
	{"concurrency scheduler", concurrencySchedulerPolicy, true},
	{"quota scheduler", quotaPolicy, true},
	{"rate limiter, flux meter, adaptive concurrency", gwbenchFull, false},
}

// gwbenchFull is like gwbench's -policy full: a rate limiter keyed by a
// label, a flux meter and an adaptive concurrency limiter that never binds.
const gwbenchFull = `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: full}
spec:
  resources:
    flux_meters:
      latency: {selectors: [{control_point: api}]}
  circuit:
    components:
      - flow_control:
          rate_limiter:
            selectors: [{control_point: api}]
            in_ports:
              bucket_capacity: {constant_signal: {value: 4}}
              fill_amount: {constant_signal: {value: 0}}
            parameters: {interval: 1s, limit_by_label_key: user}
      - flow_control:
          adaptive_concurrency:
            selectors: [{control_point: api}]
            parameters: {initial_concurrency: 1000, min_concurrency: 1000, max_concurrency: 2000, max_flow_duration: 10s}
`

// decisionSeries renders the engine's decision counters and rate limiter
// gauges, for comparing two engines.
func decisionSeries(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, mf := range mfs {
		switch mf.GetName() {
		case metricnames.FlowDecisionsTotal, metricnames.RateLimiterRemainingTokens, metricnames.RateLimitHitsTotal:
			if _, err := expfmt.MetricFamilyToText(&b, mf); err != nil {
				t.Fatal(err)
			}
		}
	}
	return b.String()
}

// sameDecision reports how a and b differ in what a caller reads, flow
// ids aside (random) but for whether there is one.
func sameDecision(a, b *Decision) string {
	if a.Accepted != b.Accepted || a.Reason != b.Reason || a.StatusCode != b.StatusCode || a.Decider != b.Decider ||
		(a.FlowID == 0) != (b.FlowID == 0) || len(a.Limiters) != len(b.Limiters) || strings.Join(a.FluxMeters, ",") != strings.Join(b.FluxMeters, ",") {
		return fmt.Sprintf("%+v\nvs %+v", a, b)
	}
	for i := range a.Limiters {
		x, y := a.Limiters[i], b.Limiters[i]
		// A scheduler's gate reads the clock, not the check's now: what
		// a bucket refilled while a flow waited differs by a hair.
		near := math.Abs(x.Remaining-y.Remaining) < 1e-3 && (x.Reset-y.Reset).Abs() < 100*time.Millisecond && (x.Wait-y.Wait).Abs() < 100*time.Millisecond
		x0 := x
		x.Remaining, x.Reset, x.Wait = y.Remaining, y.Reset, y.Wait
		if x != y || !near {
			return fmt.Sprintf("limiter %d: %+v\nvs %+v", i, x0, y)
		}
	}
	return ""
}

// TryCheck decides as Check does: two engines with the same policy, one
// checked with Check and one with TryCheck (and Check when it does not
// decide), given the same flows at the same times and the same ends,
// answer the same, count the same, and hold the same flows.
func TestTryCheckMatchesCheck(t *testing.T) {
	users := []string{"alice", "bob", "alice", "carol", "alice", "bob", "alice", "alice"}
	for _, tc := range tryPolicies {
		t.Run(tc.name, func(t *testing.T) {
			regA, regB := prometheus.NewRegistry(), prometheus.NewRegistry()
			a, b := newEngine(t, regA, tc.policy), newEngine(t, regB, tc.policy)
			ctx := context.Background()
			var idsA, idsB []uint64
			tried, decided := 0, 0
			for i := range 24 {
				now := t0.Add(time.Duration(i) * 7 * time.Millisecond)
				labels := func() map[string]string {
					return map[string]string{"user": users[i%len(users)], "tier": "free", "route": "checkout"}
				}
				var da, db Decision
				a.Check(ctx, now, &Request{ControlPoint: "api", Labels: labels()}, &da)
				reqB := &Request{ControlPoint: "api", Labels: labels()}
				tried++
				if b.TryCheck(ctx, now, reqB, &db) {
					decided++
				} else {
					b.Check(ctx, now, reqB, &db)
				}
				if diff := sameDecision(&da, &db); diff != "" {
					t.Fatalf("flow %d: Check and TryCheck differ:\n%s", i, diff)
				}
				idsA, idsB = append(idsA, da.FlowID), append(idsB, db.FlowID)
				if i%3 == 2 { // end the flow before last
					a.EndFlow(now, idsA[i-1], false)
					b.EndFlow(now, idsB[i-1], false)
				}
			}
			if decided == 0 {
				t.Errorf("TryCheck decided none of %d flows", tried)
			}
			if tc.waits != (decided < tried) {
				t.Errorf("TryCheck decided %d of %d flows; some would wait: %v", decided, tried, tc.waits)
			}
			if sa, sb := decisionSeries(t, regA), decisionSeries(t, regB); sa != sb {
				t.Errorf("metrics differ:\nCheck:\n%s\nTryCheck:\n%s", sa, sb)
			}
			if na, nb := len(a.flows.m), len(b.flows.m); na != nb {
				t.Errorf("flows held: %d with Check, %d with TryCheck", na, nb)
			}
			if ca, cb := a.ControlPoints(), b.ControlPoints(); len(ca) != 1 || len(cb) != 1 || ca[0].Checks != cb[0].Checks {
				t.Errorf("control points: %+v with Check, %+v with TryCheck", ca, cb)
			}
		})
	}
}

// Which kinds may wait, and where TryCheck can decide.
func TestTryCheckWhereItCanDecide(t *testing.T) {
	for _, tc := range []struct {
		name, policy     string
		mayWait, tryable bool
	}{
		{"rate limiters", fmt.Sprintf(twoLimiters, false), false, true},
		{"concurrency limiter", concurrencyLimiterPolicy, false, true},
		{"adaptive concurrency", adaptivePolicy, true, true},
		{"concurrency scheduler", concurrencySchedulerPolicy, true, true},
		{"load scheduler", fmt.Sprintf(loadSchedulerPolicy, "{constant_signal: {value: 1}}"), true, true},
		{"quota scheduler", quotaPolicy, true, true},
	} {
		e := newEngine(t, nil, tc.policy)
		pt := e.snap.Load().points["api"]
		if pt.mayWait != tc.mayWait || pt.tryable != tc.tryable || e.MayWait("api") != tc.mayWait || e.AnyMayWait() != tc.mayWait {
			t.Errorf("%s: mayWait %v (any point: %v) tryable %v, want %v %v", tc.name, pt.mayWait, e.AnyMayWait(), pt.tryable, tc.mayWait, tc.tryable)
		}
	}
}

// A load scheduler decides on the spot while its bucket has tokens; a
// flow that would queue is left alone (its arrival not counted, no
// token taken, nothing counted) and Check queues it and admits it when a
// token comes.
func TestTryCheckLoadScheduler(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEngine(t, reg, fmt.Sprintf(loadSchedulerPolicy, "{constant_signal: {value: 0.5}}"))
	l := componentsOf[*loadScheduler](e)[0]
	ctx := context.Background()
	req := func() *Request { return &Request{ControlPoint: "api", Labels: map[string]string{"route": "other"}} }
	var d Decision
	// The first window: 10 flows in 100 ms, admitted (no rate yet).
	for i := range 10 {
		if !e.TryCheck(ctx, t0.Add(time.Duration(i)*10*time.Millisecond), req(), &d) || !d.Accepted {
			t.Fatalf("flow %d of the first window: decided %+v", i, d)
		}
	}
	// The window closes: the rate is re-derived by Check.
	closing := t0.Add(100 * time.Millisecond)
	if e.TryCheck(ctx, closing, req(), &d) {
		t.Fatal("TryCheck decided the flow that closes a window of the incoming rate")
	}
	e.Check(ctx, closing, req(), &d)
	if !d.Accepted || d.Limiters[0].Limit != 50 {
		t.Fatalf("the flow closing the window: %+v, want admitted at 0.5 × 100/s", d)
	}
	// 50/s: a bucket of 5 tokens, one taken. Flows decide on the spot
	// until it is empty.
	now := closing.Add(time.Millisecond)
	onLoop := 0
	for ; onLoop < 100; onLoop++ {
		if !e.TryCheck(ctx, now, req(), &d) {
			break
		}
		if !d.Accepted {
			t.Fatalf("a flow decided on the spot was rejected: %+v", d)
		}
	}
	if onLoop < 3 || onLoop == 100 {
		t.Fatalf("%d flows decided on the spot, want the bucket's 4 (give or take a refill)", onLoop)
	}
	l.mu.Lock()
	arrived := l.incoming.Tokens()
	l.mu.Unlock()
	before := decisionSeries(t, reg)
	checks := e.ControlPoints()[0].Checks
	if e.TryCheck(ctx, now, req(), &d) {
		t.Fatal("the bucket refilled meanwhile")
	}
	l.mu.Lock()
	after := l.incoming.Tokens()
	l.mu.Unlock()
	if after != arrived {
		t.Errorf("a flow TryCheck left counted as arrived: %v tokens, was %v", after, arrived)
	}
	if s := decisionSeries(t, reg); s != before {
		t.Errorf("a flow TryCheck left was counted:\n%s\nwas\n%s", s, before)
	}
	if c := e.ControlPoints()[0].Checks; c != checks {
		t.Errorf("control point checks %d, was %d", c, checks)
	}
	if l.sched.QueueLen() != 0 {
		t.Errorf("%d flows queued by TryCheck", l.sched.QueueLen())
	}
	// Where it may wait, the flow queues for the next token (20 ms).
	e.Check(ctx, now, req(), &d)
	if !d.Accepted {
		t.Fatalf("the queued flow: %+v, want admitted when a token came", d)
	}
}

// A concurrency scheduler at its limit: TryCheck leaves the flow, taking
// nothing; Check queues it, and it is admitted when the slot frees.
func TestTryCheckConcurrencySchedulerAtItsLimit(t *testing.T) {
	e := newEngine(t, prometheus.NewRegistry(), concurrencySchedulerPolicy)
	ctx := context.Background()
	req := func(tier string) *Request {
		return &Request{ControlPoint: "api", Labels: map[string]string{"tier": tier}}
	}
	var first Decision
	if !e.TryCheck(ctx, time.Now(), req("free"), &first) || !first.Accepted || first.FlowID == 0 {
		t.Fatalf("the first flow: %+v, want admitted on the spot", first)
	}
	var d Decision
	for range 5 {
		if e.TryCheck(ctx, time.Now(), req("paid"), &d) {
			t.Fatalf("a flow behind the held slot was decided: %+v", d)
		}
	}
	c := componentsOf[*concurrencyLimiter](e)[0]
	if used, waiting := c.slots.used(""), c.gate.Waiting(); used != 1 || waiting != 0 || len(e.flows.m) != 1 {
		t.Fatalf("after the tries: %v slots used, %d waiting, %d flows held; want 1, 0, 1", used, waiting, len(e.flows.m))
	}
	done := make(chan Decision)
	go func() {
		var d Decision
		e.Check(ctx, time.Now(), req("paid"), &d)
		done <- d
	}()
	for c.gate.Waiting() == 0 {
		time.Sleep(time.Millisecond)
	}
	e.EndFlow(time.Now(), first.FlowID, false)
	if d := <-done; !d.Accepted || d.FlowID == 0 {
		t.Fatalf("the queued flow: %+v, want admitted when the slot freed", d)
	}
}

// An adaptive concurrency limiter at its limit: TryCheck takes no slot.
func TestTryCheckAdaptiveConcurrencyAtItsLimit(t *testing.T) {
	e := newEngine(t, prometheus.NewRegistry(), adaptivePolicy)
	a := componentsOf[*adaptiveConcurrency](e)[0]
	ctx := context.Background()
	var d Decision
	for i := range 2 {
		if !e.TryCheck(ctx, time.Now(), &Request{ControlPoint: "api"}, &d) || !d.Accepted {
			t.Fatalf("flow %d: %+v, want admitted on the spot", i, d)
		}
	}
	if e.TryCheck(ctx, time.Now(), &Request{ControlPoint: "api"}, &d) {
		t.Fatalf("a flow past the limit was decided: %+v", d)
	}
	if st := a.lim.State(); st.InFlight != 2 || len(e.flows.m) != 2 {
		t.Fatalf("after the try: %d in flight, %d flows held; want 2, 2", st.InFlight, len(e.flows.m))
	}
}

// tokensThenSlot is a rate limiter (3 tokens, no refill) before a
// concurrency scheduler of one slot, and a load scheduler before both.
const tokensThenSlot = `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: chain}
spec:
  circuit:
    components:
      - flow_control:
          load_scheduler:
            selectors: [{control_point: api}]
            in_ports: {load_multiplier: {constant_signal: {value: 1}}}
            parameters:
              default_workload_parameters: {queue_timeout: 1s}
      - flow_control:
          rate_limiter:
            selectors: [{control_point: api}]
            in_ports:
              bucket_capacity: {constant_signal: {value: 3}}
              fill_amount: {constant_signal: {value: 0}}
            parameters: {interval: 1h}
      - flow_control:
          concurrency_scheduler:
            selectors: [{control_point: api}]
            in_ports: {max_concurrency: {constant_signal: {value: 1}}}
            scheduler:
              default_workload_parameters: {queue_timeout: 5s}
`

// A try that stops at a component that would wait gives back what the
// components before it took: the rate limiter's tokens, the load
// scheduler's arrival.
func TestTryCheckGivesBackEarlierTokens(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEngine(t, reg, tokensThenSlot)
	l := componentsOf[*loadScheduler](e)[0]
	ctx := context.Background()
	var first, d Decision
	if !e.TryCheck(ctx, t0, &Request{ControlPoint: "api"}, &first) || !first.Accepted || first.Limiters[1].Remaining != 2 {
		t.Fatalf("the first flow: %+v, want admitted with 2 tokens left", first)
	}
	before := decisionSeries(t, reg)
	for i := range 5 {
		if e.TryCheck(ctx, t0.Add(time.Duration(i+1)*time.Millisecond), &Request{ControlPoint: "api"}, &d) {
			t.Fatalf("a flow behind the held slot was decided: %+v", d)
		}
	}
	if s := decisionSeries(t, reg); s != before {
		t.Errorf("the tries were counted:\n%s\nwas\n%s", s, before)
	}
	l.mu.Lock()
	arrived := l.incoming.Tokens()
	l.mu.Unlock()
	if arrived != 1 {
		t.Errorf("the load scheduler counts %v tokens arrived, want the first flow's 1", arrived)
	}
	e.EndFlow(t0, first.FlowID, false)
	if !e.TryCheck(ctx, t0.Add(10*time.Millisecond), &Request{ControlPoint: "api"}, &d) || !d.Accepted || d.Limiters[1].Remaining != 1 {
		t.Fatalf("after the slot freed: %+v, want admitted with 1 token left", d)
	}
}

// TryCheck keeps Check's allocations: none with a reused decision, for a
// rate limiter and for an adaptive limiter whose flows end.
func TestTryCheckAllocations(t *testing.T) {
	e := newEngine(t, prometheus.NewRegistry(), strings.Replace(gwbenchFull, "value: 4}", "value: 1e12}", 1))
	ctx := context.Background()
	req := &Request{ControlPoint: "api", Labels: map[string]string{"user": "alice"}}
	var d Decision
	if !e.TryCheck(ctx, t0, req, &d) || !d.Accepted || d.FlowID == 0 {
		t.Fatalf("decision = %+v", d)
	}
	e.EndFlow(t0, d.FlowID, false)
	if n := testing.AllocsPerRun(200, func() {
		if !e.TryCheck(ctx, t0, req, &d) {
			t.Fatal("not decided")
		}
		e.EndFlow(t0, d.FlowID, false)
	}); n != 0 {
		t.Fatalf("%v allocations a TryCheck, want 0", n)
	}
}
