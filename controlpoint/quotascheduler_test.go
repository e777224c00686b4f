package controlpoint

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fluxgate/fluxgate/controlpoint/ratelimit"
	"github.com/fluxgate/fluxgate/controlpoint/scheduler"
)

var vt0 = time.Unix(1_700_000_000, 0)

func vat(ms int) time.Time { return vt0.Add(time.Duration(ms) * time.Millisecond) }

// quotaGate is a quota scheduler's gate over its real buckets, driven in
// virtual time.
func quotaGate(capacity, fill float64, interval time.Duration, continuous bool) *scheduler.Gate {
	lim := ratelimit.New(ratelimit.Options{Limits: ratelimit.Limits{Capacity: capacity, FillAmount: fill, Interval: interval, Continuous: continuous}})
	return scheduler.NewGate(quotaBuckets{lim}, nil)
}

// TestQuotaHoldsPerInterval: a quota of 10 a second (discrete fill,
// bucket of 10) admits exactly 10 of the 50 flows of every second, each
// key on its own bucket.
func TestQuotaHoldsPerInterval(t *testing.T) {
	g := quotaGate(10, 10, time.Second, false)
	for sec := 0; sec < 5; sec++ {
		for _, key := range []string{"alice", "bob"} {
			admitted := 0
			for i := 0; i < 50; i++ {
				if ok, _ := g.Arrive(vat(sec*1000+i*20), scheduler.GateRequest{Key: key, Tokens: 1}); ok {
					admitted++
				}
			}
			if admitted != 10 {
				t.Fatalf("second %d, key %s: admitted %d of 50, want 10", sec, key, admitted)
			}
		}
	}
}

// TestQuotaQueuesByPriority: flows wait for tokens instead of being
// rejected; while two workloads wait on a quota of 10/s (continuous),
// priority 3 gets 4 tokens for every 1 of priority 0 (weights 1 +
// priority), and all are served at the quota's rate.
func TestQuotaQueuesByPriority(t *testing.T) {
	g := quotaGate(2, 10, time.Second, true)
	if ok, _ := g.Arrive(vat(0), scheduler.GateRequest{Tokens: 2}); !ok {
		t.Fatal("the first flow found no token in a full bucket")
	}
	for i := 0; i < 100; i++ {
		for _, w := range []struct {
			name   string
			weight float64
		}{{"high", 4}, {"low", 1}} {
			if ok, tk := g.Arrive(vat(0), scheduler.GateRequest{Workload: w.name, Weight: w.weight, Tokens: 1, Timeout: time.Minute}); ok || tk == nil {
				t.Fatal("a flow was not queued behind an empty bucket")
			}
		}
	}
	got := map[string]int{}
	for ms := 10; ms <= 5010; ms += 10 { // a tick past 5 s: float sums of 0.1 token may miss 1 by an ulp
		adm, exp := g.Advance(vat(ms))
		if len(exp) != 0 {
			t.Fatalf("t=%dms: %d flows expired before their timeout", ms, len(exp))
		}
		for _, tk := range adm {
			got[tk.Request.Workload]++
		}
	}
	if got["high"]+got["low"] != 50 || got["high"] != 40 {
		t.Fatalf("5 s of 10 tokens/s went %v, want 50: high 40, low 10", got)
	}
}

// TestQuotaQueueTimeout: a queued flow that no token reaches within its
// timeout is taken out at its deadline, not before; a flow asking for more
// than the bucket holds is rejected at once.
func TestQuotaQueueTimeout(t *testing.T) {
	g := quotaGate(1, 1, time.Second, true)
	if ok, tk := g.Arrive(vat(0), scheduler.GateRequest{Tokens: 2, Timeout: time.Minute}); ok || tk != nil {
		t.Fatal("a flow of 2 tokens was queued for a bucket of 1")
	}
	g.Arrive(vat(0), scheduler.GateRequest{Tokens: 1})
	_, short := g.Arrive(vat(0), scheduler.GateRequest{Workload: "w", Tokens: 1, Timeout: 300 * time.Millisecond})
	_, long := g.Arrive(vat(0), scheduler.GateRequest{Workload: "w", Tokens: 1, Timeout: 2 * time.Second})
	if adm, exp := g.Advance(vat(299)); len(adm)+len(exp) != 0 {
		t.Fatalf("t299: %d admitted, %d expired; want none", len(adm), len(exp))
	}
	if adm, exp := g.Advance(vat(300)); len(adm) != 0 || len(exp) != 1 || exp[0] != short {
		t.Fatalf("t300: admitted %d, expired %v; want the 300ms flow expired", len(adm), exp)
	}
	if adm, _ := g.Advance(vat(1000)); len(adm) != 1 || adm[0] != long {
		t.Fatalf("t1000: admitted %v, want the 2s flow on the refilled token", adm)
	}
}

const quotaPolicy = `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: quota}
spec:
  circuit:
    components:
      - flow_control:
          quota_scheduler:
            selectors: [{control_point: api}]
            in_ports:
              bucket_capacity: {constant_signal: {value: 2}}
              fill_amount: {constant_signal: {value: 2}}
            rate_limiter: {interval: 1h, limit_by_label_key: user}
            scheduler:
              default_workload_parameters: {queue_timeout: 20ms}
              denied_response_status_code: 429
`

// TestQuotaSchedulerInEngine: through the engine, a quota of 2 per user
// admits 2, then the third flow waits its queue timeout and is rejected
// with no_tokens and the scheduler's status; metrics count it.
func TestQuotaSchedulerInEngine(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEngine(t, reg, quotaPolicy)
	now := time.Now()
	var d Decision
	for i := 0; i < 2; i++ {
		e.Check(context.Background(), now, &Request{ControlPoint: "api", Labels: map[string]string{"user": "alice"}}, &d)
		if !d.Accepted || d.Limiters[0].ComponentType != "quota_scheduler" || d.Limiters[0].LimitKey != "alice" || d.FlowID != 0 {
			t.Fatalf("flow %d: %+v, want admitted by the quota scheduler, keyed alice, no slot held", i, d)
		}
	}
	began := time.Now()
	e.Check(context.Background(), now, &Request{ControlPoint: "api", Labels: map[string]string{"user": "alice"}}, &d)
	if d.Accepted || d.Reason != ReasonNoTokens || d.StatusCode != 429 || time.Since(began) < 15*time.Millisecond {
		t.Fatalf("third flow: accepted %v reason %v status %d after %v; want rejected no_tokens 429 after its 20ms timeout", d.Accepted, d.Reason, d.StatusCode, time.Since(began))
	}
	e.Check(context.Background(), now, &Request{ControlPoint: "api", Labels: map[string]string{"user": "bob"}}, &d)
	if !d.Accepted {
		t.Fatal("bob waited behind alice's quota")
	}
	var out strings.Builder
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "fluxgate_flow_decisions_total" {
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					out.WriteString(l.GetName() + "=" + l.GetValue() + " ")
				}
				out.WriteString("\n")
			}
		}
	}
	if !strings.Contains(out.String(), "reason=no_tokens") {
		t.Fatalf("no no_tokens rejection counted:\n%s", out.String())
	}
}
