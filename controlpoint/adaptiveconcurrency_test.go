package controlpoint

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

const adaptivePolicy = `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: protect}
spec:
  circuit:
    components:
      - flow_control:
          adaptive_concurrency:
            selectors: [{control_point: api}]
            parameters: {initial_concurrency: 2, max_concurrency: 2, max_queue_delay: 1ms, max_flow_duration: 10s}
`

// TestAdaptiveConcurrencyHoldsSlotsUntilFlowsEnd checks the engine side
// of the in-path loop: an admitted flow holds a slot (a flow id) until
// its end is reported, a flow beyond the limit is rejected, a reported
// end frees the slot, and an end that never comes is freed after
// max_flow_duration.
func TestAdaptiveConcurrencyHoldsSlotsUntilFlowsEnd(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEngine(t, reg, adaptivePolicy)
	now := time.Now()
	check := func(noEnd bool) Decision {
		var d Decision
		e.Check(context.Background(), now, &Request{ControlPoint: "api", NoFlowEnd: noEnd}, &d)
		return d
	}
	a, b := check(false), check(false)
	if !a.Accepted || !b.Accepted || a.FlowID == 0 || b.FlowID == 0 || a.FlowID == b.FlowID {
		t.Fatalf("two flows under a limit of 2: accepted %v %v, ids %d %d; want both admitted with distinct ids", a.Accepted, b.Accepted, a.FlowID, b.FlowID)
	}
	if c := check(false); c.Accepted || c.Reason != ReasonNoTokens || c.StatusCode != 503 {
		t.Fatalf("third flow: accepted %v reason %v status %d, want rejected no_tokens 503", c.Accepted, c.Reason, c.StatusCode)
	}
	if c := check(true); !c.Accepted || c.FlowID != 0 || !c.Limiters[0].PassThrough {
		t.Fatalf("a flow whose end cannot be reported: %+v, want passed through without a slot", c)
	}
	if !e.EndFlow(now.Add(10*time.Millisecond), a.FlowID, false) {
		t.Fatal("EndFlow of a held flow reported it unknown")
	}
	if e.EndFlow(now, a.FlowID, false) {
		t.Fatal("a second EndFlow of the same flow found it again")
	}
	c := check(false)
	if !c.Accepted {
		t.Fatal("flow after an end was reported: rejected, want the freed slot")
	}
	if got := gaugeValue(t, reg, "fluxgate_adaptive_concurrency_in_flight"); got != 2 {
		t.Fatalf("in_flight gauge %v, want 2", got)
	}
	// b and c never end: after max_flow_duration their slots come back.
	if n := e.flows.expire(now.Add(11 * time.Second)); n != 2 {
		t.Fatalf("expired %d flows, want 2", n)
	}
	if d := check(false); !d.Accepted {
		t.Fatal("flow after the leaked slots expired: rejected")
	}
}

// gaugeValue is the value of the one series of a gathered gauge.
func gaugeValue(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
		names = append(names, mf.GetName())
	}
	t.Fatalf("no single series %s among %s", name, strings.Join(names, ", "))
	return 0
}

// TestAdaptiveConcurrencyRejectedLaterFreesItsSlot: a flow the adaptive
// component admitted but a later component rejected gives its slot back.
func TestAdaptiveConcurrencyRejectedLaterFreesItsSlot(t *testing.T) {
	e := newEngine(t, nil, adaptivePolicy+`      - flow_control:
          rate_limiter:
            selectors: [{control_point: api}]
            in_ports: {bucket_capacity: {constant_signal: {value: 0}}, fill_amount: {constant_signal: {value: 0}}}
            parameters: {interval: 1s}
`)
	for i := 0; i < 5; i++ {
		var d Decision
		e.Check(context.Background(), time.Now(), &Request{ControlPoint: "api"}, &d)
		if d.Accepted || d.Reason != ReasonRateLimited {
			t.Fatalf("check %d: accepted %v reason %v, want rate_limited (not no_tokens: the slots must come back)", i, d.Accepted, d.Reason)
		}
	}
}

// TestDryRunAdaptiveConcurrencyFreesSlotsOfRejectedFlows: a dry-run
// adaptive component holds a slot for every flow, even one it would have
// rejected; when a later component rejects the flow, the slot comes back.
func TestDryRunAdaptiveConcurrencyFreesSlotsOfRejectedFlows(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEngine(t, reg, strings.Replace(adaptivePolicy, "max_flow_duration: 10s}", "max_flow_duration: 10s}\n            dry_run: true", 1)+`      - flow_control:
          rate_limiter:
            selectors: [{control_point: api, label_matcher: {match_labels: {reject: "yes"}}}]
            in_ports: {bucket_capacity: {constant_signal: {value: 0}}, fill_amount: {constant_signal: {value: 0}}}
            parameters: {interval: 1s}
`)
	check := func(labels map[string]string) Decision {
		var d Decision
		e.Check(context.Background(), time.Now(), &Request{ControlPoint: "api", Labels: labels}, &d)
		return d
	}
	for i := 0; i < 2; i++ { // fill the limit of 2 with flows that go on
		if d := check(nil); !d.Accepted || d.FlowID == 0 {
			t.Fatalf("flow %d: accepted %v, id %d", i, d.Accepted, d.FlowID)
		}
	}
	for i := 0; i < 5; i++ { // over the limit (dry run: would reject), then rate limited
		d := check(map[string]string{"reject": "yes"})
		if d.Accepted || !d.Limiters[0].DryRun || !d.Limiters[0].Dropped {
			t.Fatalf("check %d: accepted %v, %+v; want a dry-run would-be rejection, then rate limited", i, d.Accepted, d.Limiters[0])
		}
	}
	if got := gaugeValue(t, reg, "fluxgate_adaptive_concurrency_in_flight"); got != 2 {
		t.Fatalf("in_flight %v after two flows in flight and five rejected ones, want 2", got)
	}
}
