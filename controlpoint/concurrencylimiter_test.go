package controlpoint

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fluxgate/fluxgate/controlpoint/scheduler"
)

const concurrencyLimiterPolicy = `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: per-user}
spec:
  circuit:
    components:
      - flow_control:
          concurrency_limiter:
            selectors: [{control_point: api}]
            in_ports: {max_concurrency: {constant_signal: {value: 2}}}
            parameters: {limit_by_label_key: user, max_inflight_duration: 5s}
`

// TestConcurrencyLimiterHoldsSlots: per user, exactly max_concurrency
// flows are admitted, the next is rejected at once (no_tokens, 429); a
// reported end frees a slot, and so does max_inflight_duration; a check
// that cannot report its end passes through.
func TestConcurrencyLimiterHoldsSlots(t *testing.T) {
	e := newEngine(t, prometheus.NewRegistry(), concurrencyLimiterPolicy)
	check := func(now time.Time, user string, noEnd bool) Decision {
		var d Decision
		e.Check(context.Background(), now, &Request{ControlPoint: "api", Labels: map[string]string{"user": user}, NoFlowEnd: noEnd}, &d)
		return d
	}
	a, b := check(vat(0), "alice", false), check(vat(0), "alice", false)
	if !a.Accepted || !b.Accepted || a.FlowID == 0 || b.FlowID == 0 {
		t.Fatalf("two flows under a limit of 2: %+v %+v, want both admitted with flow ids", a, b)
	}
	c := check(vat(1), "alice", false)
	if c.Accepted || c.Reason != ReasonNoTokens || c.StatusCode != 429 || c.Limiters[0].ComponentType != "concurrency_limiter" || c.Limiters[0].Remaining != 0 {
		t.Fatalf("third flow: %+v, want rejected no_tokens 429 with 0 remaining", c)
	}
	if !check(vat(1), "bob", false).Accepted {
		t.Fatal("bob was limited by alice's flows")
	}
	if d := check(vat(1), "alice", true); !d.Accepted || !d.Limiters[0].PassThrough || d.FlowID != 0 {
		t.Fatalf("a flow whose end cannot be reported: %+v, want passed through", d)
	}
	if !e.EndFlow(vat(2), a.FlowID, false) {
		t.Fatal("EndFlow did not find the first flow")
	}
	d := check(vat(3), "alice", false)
	if !d.Accepted {
		t.Fatal("a flow after an end was rejected")
	}
	if check(vat(3), "alice", false).Accepted {
		t.Fatal("a third flow in flight was admitted after one end")
	}
	// Flows expire once past 5 s after their start: at 5.001 s, b (t0)
	// only; bob's (t1ms) and d (t3ms) are still held.
	if n := e.flows.expire(vat(5001)); n != 1 {
		t.Fatalf("expired %d flows at 5.001 s, want 1 (alice's b)", n)
	}
	if !check(vat(5001), "alice", false).Accepted {
		t.Fatal("no slot after the first flow expired")
	}
	if check(vat(5001), "alice", false).Accepted {
		t.Fatal("two slots after one flow expired")
	}
	if e.EndFlow(vat(5002), b.FlowID, false) {
		t.Fatal("an expired flow's end found it still held")
	}
}

const concurrencySchedulerPolicy = `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: sched}
spec:
  circuit:
    components:
      - flow_control:
          concurrency_scheduler:
            selectors: [{control_point: api}]
            in_ports: {max_concurrency: {constant_signal: {value: 1}}}
            scheduler:
              workloads:
                - {name: paid, label_matcher: {match_labels: {tier: paid}}, parameters: {priority: 9, queue_timeout: 5s}}
              default_workload_parameters: {queue_timeout: 30ms}
`

// TestConcurrencySchedulerQueuesForSlots: a flow that finds the slot
// taken waits for it and is admitted when the holder's end is reported;
// one that waits past its queue timeout is rejected with no_tokens 503.
func TestConcurrencySchedulerQueuesForSlots(t *testing.T) {
	e := newEngine(t, prometheus.NewRegistry(), concurrencySchedulerPolicy)
	check := func(tier string) Decision {
		var d Decision
		e.Check(context.Background(), time.Now(), &Request{ControlPoint: "api", Labels: map[string]string{"tier": tier}}, &d)
		return d
	}
	first := check("free")
	if !first.Accepted || first.FlowID == 0 || first.Limiters[0].Workload != "default" {
		t.Fatalf("first flow: %+v", first)
	}
	if d := check("free"); d.Accepted || d.Reason != ReasonNoTokens || d.StatusCode != 503 {
		t.Fatalf("a free flow behind a held slot: %+v, want rejected after 30ms, no_tokens 503", d)
	}
	done := make(chan Decision)
	go func() { done <- check("paid") }()
	time.Sleep(20 * time.Millisecond)
	e.EndFlow(time.Now(), first.FlowID, false)
	d := <-done
	if !d.Accepted || d.FlowID == 0 || d.Limiters[0].Workload != "paid" || d.Limiters[0].Priority != 9 {
		t.Fatalf("a paid flow waiting for the slot: %+v, want admitted when the first flow ended", d)
	}
}

// TestConcurrencySchedulerPriorities: in virtual time, on a limit of 1
// with both workloads waiting, each freed slot goes by weight: priority 9
// (weight 10) gets 10 of every 11.
func TestConcurrencySchedulerPriorities(t *testing.T) {
	in := &inputValue{}
	in.set(1)
	slots := &slotCounter{max: in, inflight: map[string]float64{}}
	g := scheduler.NewGate(slots, nil)
	g.Arrive(vat(0), scheduler.GateRequest{Tokens: 1})
	for i := 0; i < 100; i++ {
		g.Arrive(vat(0), scheduler.GateRequest{Workload: "paid", Weight: 10, Tokens: 1, Timeout: time.Hour})
		g.Arrive(vat(0), scheduler.GateRequest{Workload: "free", Weight: 1, Tokens: 1, Timeout: time.Hour})
	}
	got := map[string]int{}
	for i := 1; i <= 55; i++ {
		slots.give("", 1)
		adm := g.Release(vat(i), "")
		if len(adm) != 1 {
			t.Fatalf("release %d admitted %d flows, want 1", i, len(adm))
		}
		got[adm[0].Request.Workload]++
	}
	if got["paid"] != 50 || got["free"] != 5 {
		t.Fatalf("55 slots went %v, want paid 50, free 5", got)
	}
}

// BenchmarkConcurrencyLimiterRejects is a check the concurrency limiter
// rejects (its slots held): it rejects at once, never queues.
func BenchmarkConcurrencyLimiterRejects(b *testing.B) {
	e := newEngine(b, prometheus.NewRegistry(), concurrencyLimiterPolicy)
	req := func() *Request {
		return &Request{ControlPoint: "api", Labels: map[string]string{"user": "alice"}}
	}
	var d Decision
	for range 2 {
		e.Check(context.Background(), vat(0), req(), &d)
	}
	b.ReportAllocs()
	for b.Loop() {
		e.Check(context.Background(), vat(1), req(), &d)
		if d.Accepted {
			b.Fatal("admitted past max_concurrency")
		}
	}
}
