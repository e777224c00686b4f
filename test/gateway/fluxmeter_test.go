package gateway

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fluxgate/fluxgate/gateway"
)

const meteredPolicy = `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: checkout-slo}
spec:
  resources:
    flux_meters:
      lat: {selectors: [{control_point: ingress}], static_buckets: {buckets: [5, 50, 500]}}
` + rateLimitPolicyBody

// Every request the gateway checks reaches the agent's flux meters, the
// accepted ones with their upstream status and the rejected ones with
// theirs, as `fluxgate gateway` runs it (the fast engine, flows in
// process).
func TestFlowsReachFluxMeters(t *testing.T) {
	b := newBackend(t, "a")
	cfg := oneRoute(gateway.UpstreamConfig{Name: "checkout", Targets: targets(b)})
	cfg.Routes[0].ID = "checkout"
	cfg.Routes[0].ControlPoint = "ingress"
	s := startStack(t, cfg, map[string]string{"slo.yaml": meteredPolicy}, gateway.ServiceOptions{})
	statuses := map[int]int{}
	for range 8 {
		st, _ := s.get(t, "/checkout", nil)
		statuses[st]++
	}
	if statuses[200] != 5 || statuses[429] != 3 {
		t.Fatalf("statuses %v, want 5 × 200 then 3 × 429 from the limiter", statuses)
	}
	got := fluxMeterCounts(t, s.agent.Registry())
	want := map[string]uint64{"DECISION_TYPE_ACCEPTED/200": 5, "DECISION_TYPE_REJECTED/429": 3}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("flux_meter count %s = %d, want %d (all: %v)", k, got[k], n, got)
		}
	}
}

// fluxMeterCounts sums the flux_meter histogram counts of meter lat by
// decision/status.
func fluxMeterCounts(t *testing.T, reg prometheus.Gatherer) map[string]uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]uint64{}
	for _, mf := range mfs {
		if mf.GetName() != "flux_meter" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			if l["flux_meter_name"] == "lat" {
				out[l["decision_type"]+"/"+l["http_status_code"]] += m.GetHistogram().GetSampleCount()
			}
		}
	}
	return out
}
