package controlpoint

import (
	"math"
	"testing"
	"time"

	"github.com/fluxgate/fluxgate/controlpoint/flow"
	"github.com/fluxgate/fluxgate/policies"
)

// A flow's cost from its tokens_label_key label: never ≤ 0, NaN or
// infinite (those, and unparsable values, cost the default), and never
// from the request's baggage, which any client writes (issue 14).
const costLimit = `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: cost-limit, namespace: default}
spec:
  circuit:
    components:
      - flow_control:
          rate_limiter:
            selectors: [{control_point: ingress}]
            in_ports:
              bucket_capacity: {constant_signal: {value: 10}}
              fill_amount: {constant_signal: {value: 10}}
            parameters: {interval: 24h, continuous_fill: false}
            request_parameters: {tokens_label_key: cost}
`

func TestCostFromLabel(t *testing.T) {
	baggage := flow.HeaderLabel("Baggage")
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   int // flows admitted of 20, 10 tokens a day
	}{
		{"no label: one token", map[string]string{}, 10},
		{"cost 2", map[string]string{"cost": "2"}, 5},
		{"cost 0.5", map[string]string{"cost": "0.5"}, 20},
		{"cost 0 is the default", map[string]string{"cost": "0"}, 10},
		{"negative cost is the default", map[string]string{"cost": "-3"}, 10},
		{"NaN is the default", map[string]string{"cost": "NaN"}, 10},
		{"Inf is the default", map[string]string{"cost": "+Inf"}, 10},
		{"tiny positive cost", map[string]string{"cost": "1e-300"}, 20},
		{"unparsable is the default", map[string]string{"cost": "free"}, 10},
		{"huge cost: refused", map[string]string{"cost": "1e300"}, 0},
		{"cost from baggage is ignored", map[string]string{baggage: "cost=0.01", "cost": "0.01"}, 10},
		{"baggage cost overridden by the caller's label", map[string]string{baggage: "cost=0.01", "cost": "2"}, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEngine(t, nil, costLimit)
			admitted := 0
			for i := range 20 {
				d := check(e, t0.Add(time.Duration(i)*time.Minute), "ingress", tc.labels)
				if d.Accepted {
					admitted++
				} else if d.Wait < 0 {
					t.Fatalf("flow %d: wait %v", i, d.Wait)
				}
			}
			if admitted != tc.want {
				t.Fatalf("admitted %d of 20, want %d", admitted, tc.want)
			}
		})
	}
}

// A cost no bucket can ever hold waits "never", not a negative duration.
func TestHugeCostWaitDoesNotOverflow(t *testing.T) {
	e := newEngine(t, nil, costLimit)
	d := check(e, t0, "ingress", map[string]string{"cost": "1e300"})
	if d.Accepted || d.Wait != time.Duration(math.MaxInt64) {
		t.Fatalf("decision %+v, want refused with wait math.MaxInt64", d)
	}
}

// TestLoadSchedulerCostFromLabel: the load scheduler takes a cost from
// tokens_label_key by the rate limiter's rules.
func TestLoadSchedulerCostFromLabel(t *testing.T) {
	l := &loadScheduler{spec: &policies.LoadScheduler{Parameters: policies.LoadSchedulerParameters{TokensLabelKey: "cost"}}}
	for _, tc := range []struct {
		labels map[string]string
		want   float64
	}{
		{map[string]string{"cost": "5"}, 5},
		{map[string]string{"cost": "0"}, 1},
		{map[string]string{"cost": "-3"}, 1},
		{map[string]string{"cost": "+Inf"}, 1},
		{map[string]string{"cost": "NaN"}, 1},
		{map[string]string{"cost": "5", baggageLabel: "cost=5"}, 1},
	} {
		if got := l.cost(&l.fallback, tc.labels, 1); got != tc.want {
			t.Errorf("cost(%v) = %v, want %v", tc.labels, got, tc.want)
		}
	}
}
