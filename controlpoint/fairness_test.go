package controlpoint

import (
	"context"
	"strings"
	"testing"

	"github.com/fluxgate/fluxgate/controlpoint/scheduler"
	"github.com/fluxgate/fluxgate/policies"
)

const fairQuotaPolicy = `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: fair}
spec:
  circuit:
    components:
      - flow_control:
          quota_scheduler:
            selectors: [{control_point: api}]
            in_ports:
              bucket_capacity: {constant_signal: {value: 1}}
              fill_amount: {constant_signal: {value: 10}}
            rate_limiter: {interval: 1s}
            scheduler:
              default_workload_parameters: {queue_timeout: 1m}
              fairness_label_key: tenant
`

// TestQuotaSchedulerFairness: a quota scheduler with fairness_label_key
// serves the tenants waiting in one workload in turn: a tenant that
// queued 20 flows does not make another's 5 wait behind all of them. Its
// flows are replayed through the scheduler's Gate in virtual time, placed
// as decide places them.
func TestQuotaSchedulerFairness(t *testing.T) {
	for _, fair := range []bool{true, false} {
		src := fairQuotaPolicy
		if !fair {
			src = strings.Replace(src, "fairness_label_key: tenant", "", 1)
		}
		spec := parsePolicy(t, src).Spec.Circuit.Components[0].Spec.(*policies.QuotaScheduler)
		q, err := newQuotaScheduler(componentInfo{}, spec, 0)
		if err != nil {
			t.Fatal(err)
		}
		if ok, _ := q.gate.Arrive(vat(0), q.sched.share(nil, 1).gateRequest("")); !ok {
			t.Fatal("the first flow found no token in a full bucket")
		}
		tenantOf := map[*scheduler.Ticket]string{}
		for _, f := range []struct {
			tenant string
			n      int
		}{{"big", 20}, {"small", 5}} {
			for i := 0; i < f.n; i++ {
				ok, tk := q.gate.Arrive(vat(0), q.sched.share(map[string]string{"tenant": f.tenant}, 1).gateRequest(""))
				if ok || tk == nil {
					t.Fatal("a flow was not queued behind an empty bucket")
				}
				tenantOf[tk] = f.tenant
			}
		}
		// 10 tokens a second: after 1s, 10 flows are served.
		served := map[string]int{}
		for ms := 100; ms <= 1000; ms += 100 {
			adm, _ := q.gate.Advance(vat(ms))
			for _, tk := range adm {
				served[tenantOf[tk]]++
			}
		}
		switch {
		case fair && (served["big"] != 5 || served["small"] != 5):
			t.Errorf("with fairness_label_key the first 10 turns went %v, want 5 each", served)
		case !fair && served["big"] != 10:
			t.Errorf("without fairness_label_key the first 10 turns went %v, want all to big, first in line", served)
		}
	}
}

const passThroughPolicy = `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: pass}
spec:
  circuit:
    components:
      - flow_control:
          rate_limiter:
            selectors: [{control_point: api}]
            in_ports:
              bucket_capacity: {constant_signal: {value: 1}}
              fill_amount: {constant_signal: {value: 1}}
              pass_through: {signal_name: PASS}
            parameters: {interval: 1h}
      - flow_control:
          concurrency_limiter:
            selectors: [{control_point: slots}]
            in_ports:
              max_concurrency: {constant_signal: {value: 1}}
              pass_through: {signal_name: PASS}
`

// TestPassThroughPort: while a limiter's pass_through port is true it
// admits every flow, taking no token and holding no slot; when it goes
// false the limit applies again, to the tokens it had.
func TestPassThroughPort(t *testing.T) {
	e := newEngine(t, nil, passThroughPolicy)
	key := policies.Key{Namespace: policies.DefaultNamespace, Name: "pass"}
	set := func(v float64) {
		t.Helper()
		for _, i := range []int{0, 1} {
			if err := e.SetComponentInput(key, i, "pass_through", v); err != nil {
				t.Fatal(err)
			}
		}
	}
	set(1)
	for i := 0; i < 5; i++ {
		d := check(e, t0, "api", nil)
		if !d.Accepted || !d.Limiters[0].PassThrough {
			t.Fatalf("flow %d while passing: %+v", i, d)
		}
		var s Decision
		e.Check(context.Background(), t0, &Request{ControlPoint: "slots"}, &s)
		if !s.Accepted || s.FlowID != 0 {
			t.Fatalf("flow %d at the concurrency limiter while passing: accepted %v, slot %d", i, s.Accepted, s.FlowID)
		}
	}
	set(0)
	if d := check(e, t0, "api", nil); !d.Accepted || d.Limiters[0].PassThrough {
		t.Fatalf("first flow after passing: %+v, want the bucket's one token", d)
	}
	if d := check(e, t0, "api", nil); d.Accepted {
		t.Fatal("second flow after passing admitted: the bucket holds one token an hour")
	}
	var held, busy Decision
	e.Check(context.Background(), t0, &Request{ControlPoint: "slots"}, &held)
	e.Check(context.Background(), t0, &Request{ControlPoint: "slots"}, &busy)
	if !held.Accepted || held.FlowID == 0 || busy.Accepted {
		t.Fatalf("after passing: first %v (slot %d), second %v; want one slot", held.Accepted, held.FlowID, busy.Accepted)
	}
}
