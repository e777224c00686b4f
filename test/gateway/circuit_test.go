package gateway

import (
	"fmt"
	"math"
	"net/http"
	"testing"
	"time"

	"github.com/fluxgate/fluxgate/gateway"
)

// rolloutPolicy drives route checkout's canary weight from the dynamic
// config key canary_weight, and the weight of one target of group pool
// from pool_weight.
const rolloutPolicy = `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: rollout, namespace: default}
spec:
  circuit:
    evaluation_interval: 20ms
    components:
      - variable:
          config_key: canary_weight
          out_ports: {output: {signal_name: CANARY_WEIGHT}}
      - flow_control:
          canary:
            route_id: checkout
            in_ports: {weight: {signal_name: CANARY_WEIGHT}}
      - variable:
          config_key: pool_weight
          out_ports: {output: {signal_name: POOL_WEIGHT}}
      - flow_control:
          upstream_weight:
            upstream: pool
            target: %s
            in_ports: {weight: {signal_name: POOL_WEIGHT}}
`

// A circuit steps the canary weight 0 → 10 → 50 and the traffic follows;
// a failing canary still rolls back with the circuit at 50, and stays
// rolled back until the circuit resets the weight to 0. An invalid signal
// leaves the configured weight. The circuit also sets a target's weight.
func TestCircuitDrivesWeights(t *testing.T) {
	v1, v2 := newBackend(t, "v1"), newBackend(t, "v2")
	pa, pb := newBackend(t, "pa"), newBackend(t, "pb")
	cfg := canaryConfig(v1, v2, 5, &gateway.CanaryMetricsConfig{TargetErrorRate: 0.05, MinSamples: 20, Window: 2 * time.Second})
	cfg.Upstreams = append(cfg.Upstreams, gateway.UpstreamConfig{Name: "pool", Algorithm: gateway.AlgorithmWeightedRoundRobin,
		Targets: []gateway.TargetConfig{{Address: pa.addr(), Weight: 50}, {Address: pb.addr(), Weight: 50}}})
	cfg.Routes = append(cfg.Routes, gateway.RouteConfig{ID: "pool", Match: gateway.RouteMatch{PathPrefix: "/pool"}, Upstream: "pool"})
	s := startStack(t, cfg, map[string]string{"rollout.yaml": fmt.Sprintf(rolloutPolicy, pb.addr())}, gateway.ServiceOptions{})

	setVar := func(body string) {
		t.Helper()
		if st, b := s.put(t, "/v1/dynamic-config/default/rollout", "application/json", body); st != http.StatusOK {
			t.Fatalf("PUT dynamic config %s: %d %s", body, st, b)
		}
	}
	waitWeight := func(want int) {
		t.Helper()
		if _, ok := waitFor(5*time.Second, func() bool { return s.canary(t, "checkout").Weight == want }); !ok {
			t.Fatalf("canary %+v, want weight %d", s.canary(t, "checkout"), want)
		}
	}
	share := func(n int) float64 {
		byBackend, byStatus := s.load(t, n, 4, "/checkout")
		if byStatus[200] != n {
			t.Errorf("statuses %v, want %d × 200", byStatus, n)
		}
		return float64(byBackend["v2"]) / float64(n)
	}

	// No value yet: the signal is invalid, the configured 5% holds.
	time.Sleep(100 * time.Millisecond)
	if cs := s.canary(t, "checkout"); cs.Weight != 5 || cs.Signal != nil {
		t.Fatalf("canary %+v before the circuit has a value, want the configured weight 5", cs)
	}
	for _, step := range []int{0, 10, 50} {
		setVar(fmt.Sprintf(`{"canary_weight": %d}`, step))
		waitWeight(step)
		got := share(1000)
		t.Logf("circuit weight %d%%: canary share %.3f of 1000", step, got)
		if math.Abs(got-float64(step)/100) > 0.02 {
			t.Errorf("circuit weight %d%%: canary share %.3f, want %.2f ± 0.02", step, got, float64(step)/100)
		}
	}
	if v := s.verdictMetric(t, "checkout"); v != gateway.VerdictPass {
		t.Errorf("healthy canary verdict %q, want pass", v)
	}

	// The canary breaks: rollback wins over the circuit's 50.
	v2.status.Store(http.StatusInternalServerError)
	s.load(t, 100, 4, "/checkout")
	waitWeight(0)
	cs := s.canary(t, "checkout")
	if !cs.RolledBack || cs.Signal == nil || *cs.Signal != 50 {
		t.Errorf("canary %+v, want rolled back with the circuit still at 50", cs)
	}
	time.Sleep(100 * time.Millisecond) // several circuit ticks at 50
	if got := share(200); got != 0 {
		t.Errorf("rolled-back canary got %.3f of traffic with the circuit at 50", got)
	}
	// Fixed, but no forced traffic proves it: the rollback holds. The
	// circuit resets to 0, then steps to 10 again.
	v2.status.Store(0)
	setVar(`{"canary_weight": 0}`)
	if _, ok := waitFor(5*time.Second, func() bool { return !s.canary(t, "checkout").RolledBack }); !ok {
		t.Fatalf("weight 0 from the circuit did not lift the rollback: %+v", s.canary(t, "checkout"))
	}
	setVar(`{"canary_weight": 10}`)
	waitWeight(10)

	// No value (the variable's output is invalid) falls back to the
	// configured 5%.
	setVar(`{}`)
	waitWeight(5)

	// Upstream weight: pb from 50 to 0, then 150 (pa:pb 1:3), then invalid.
	for _, tc := range []struct {
		body   string
		wantPB float64
	}{{`{"canary_weight": 5, "pool_weight": 0}`, 0}, {`{"canary_weight": 5, "pool_weight": 150}`, 0.75}, {`{"canary_weight": 5, "pool_weight": -1}`, 0.5}} {
		setVar(tc.body)
		want := int(math.Round(tc.wantPB / (1 - tc.wantPB + 1e-9) * 50))
		if tc.wantPB == 0.5 {
			want = 50
		}
		if _, ok := waitFor(5*time.Second, func() bool { return s.target(t, "pool", pb.addr()).Weight == want }); !ok {
			t.Fatalf("%s: target weight %d, want %d", tc.body, s.target(t, "pool", pb.addr()).Weight, want)
		}
		byBackend, _ := s.load(t, 400, 4, "/pool")
		got := float64(byBackend["pb"]) / 400
		t.Logf("%s: pb weight %d, share %.3f", tc.body, want, got)
		if math.Abs(got-tc.wantPB) > 0.02 {
			t.Errorf("%s: pb share %.3f, want %.2f", tc.body, got, tc.wantPB)
		}
	}
}
