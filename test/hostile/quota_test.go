package hostile

import (
	"testing"
	"time"

	pb "github.com/fluxgate/fluxgate/controlpoint/controlpointpb"
)

// quotaPolicy is a quota: 10 flows per user per 10 minutes, added whole at
// each interval (continuous_fill: false), with buckets idle for 1s
// dropped by the sweep, which runs every minute (controlpoint.SweepInterval).
// The component on sweepprobe fills again within a second: its bucket is
// what the first sweep drops, which shows that a sweep ran.
const quotaPolicy = `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: quota, namespace: hostile}
spec:
  circuit:
    components:
      - flow_control:
          rate_limiter:
            selectors: [{control_point: quota}]
            in_ports:
              bucket_capacity: {constant_signal: {value: 10}}
              fill_amount: {constant_signal: {value: 10}}
            parameters: {limit_by_label_key: user, interval: 10m, continuous_fill: false, max_idle_time: 1s}
      - flow_control:
          rate_limiter:
            selectors: [{control_point: sweepprobe}]
            in_ports:
              bucket_capacity: {constant_signal: {value: 1}}
              fill_amount: {constant_signal: {value: 1}}
            parameters: {limit_by_label_key: user, interval: 1s, max_idle_time: 1s}
`

// sweepDeadline is how long the test waits for the agent's first sweep,
// a minute after it started.
const sweepDeadline = 3 * time.Minute

// A quota holds across the idle sweep (issue 14: a daily quota of 10
// admitted 120 a day to a user who kept asking): a user who keeps asking
// and a user who went quiet longer than max_idle_time both get 10 flows
// in the interval, before and after the sweep.
func TestQuotaHoldsAcrossSweeps(t *testing.T) {
	t.Parallel() // it waits a minute for the sweep: overlap it with the others
	p := start(t, spec{policies: map[string]string{"quota.yaml": quotaPolicy}})
	c := p.checkClient(t)
	admitted := map[string]int{}
	ask := func(cp, user string) {
		t.Helper()
		resp, err := c.Check(t.Context(), &pb.CheckRequest{ControlPoint: cp, Labels: map[string]string{"user": user}})
		if err != nil {
			t.Fatalf("check %s/%s: %v", cp, user, err)
		}
		if resp.GetDecisionType() == pb.DecisionType_DECISION_TYPE_ACCEPTED {
			admitted[user]++
		}
	}
	for range 15 {
		ask("quota", "asker")
		ask("quota", "quiet")
	}
	ask("sweepprobe", "probe")
	if admitted["asker"] != 10 || admitted["quiet"] != 10 {
		t.Fatalf("before any sweep: admitted %v, want 10 each", admitted)
	}
	probeBuckets := func() float64 {
		return metric(p.scrape(t), "fluxgate_ratelimiter_buckets", `policy_name="quota"`, `component_id="1"`)
	}
	if n := probeBuckets(); n != 1 {
		t.Fatalf("the sweep probe limiter holds %v buckets, want 1 (is its component_id 1?)", n)
	}
	// The asker keeps asking, once a second, until a sweep has run.
	start := time.Now()
	asks := 0
	for probeBuckets() != 0 {
		if time.Since(start) > sweepDeadline {
			t.Fatalf("no sweep within %v", sweepDeadline)
		}
		ask("quota", "asker")
		asks++
		time.Sleep(time.Second)
	}
	t.Logf("a sweep ran %v after the quota was used up; the asker asked %d more times meanwhile", time.Since(start).Round(time.Second), asks)
	// After the sweep, both ask again.
	for range 15 {
		ask("quota", "asker")
		ask("quota", "quiet")
	}
	p.alive(t)
	if admitted["asker"] != 10 || admitted["quiet"] != 10 {
		t.Errorf("after the sweep: admitted %v in the interval, want 10 each", admitted)
	}
}
