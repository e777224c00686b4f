package blueprints

import (
	"math"
	"os"
	"strings"
	"testing"

	"github.com/fluxgate/fluxgate/circuit/sim"
	"github.com/fluxgate/fluxgate/policies"
)

// TestServiceProtectionMatchesExample runs the policy generated from the
// example values with loop flux_meter (and the example's queue timeouts) and the hand-written policies/examples/service-protection.yaml
// against the same overloaded plant: every signal and actuator input must
// be the same at every tick.
func TestServiceProtectionMatchesExample(t *testing.T) {
	b, _ := Lookup("service-protection")
	values := string(b.Values())
	for _, r := range [][2]string{
		{"loop: in_path", "loop: flux_meter"},
		{"    queue_timeout: 0s", "    queue_timeout: 2s"},
		{"  queue_timeout: 0s", "  queue_timeout: 500ms"},
	} {
		if !strings.Contains(values, r[0]) {
			t.Fatalf("the example values no longer say %q", r[0])
		}
		values = strings.Replace(values, r[0], r[1], 1)
	}
	out, err := b.Generate("values.yaml", []byte(values))
	if err != nil {
		t.Fatal(err)
	}
	const plantFile = "../circuit/sim/testdata/checkout-plant.yaml"
	data, err := os.ReadFile(plantFile)
	if err != nil {
		t.Fatal(err)
	}
	plant, err := sim.ParsePlant(plantFile, data)
	if err != nil {
		t.Fatal(err)
	}
	got, err := sim.Closed(out.Policy, plant)
	if err != nil {
		t.Fatal(err)
	}
	exData, err := os.ReadFile("../policies/examples/service-protection.yaml")
	if err != nil {
		t.Fatal(err)
	}
	docs, err := policies.Parse("service-protection.yaml", exData)
	if err != nil {
		t.Fatal(err)
	}
	want, err := sim.Closed(docs[0].Object.(*policies.Policy), plant)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got.Columns, ",") != strings.Join(want.Columns, ",") {
		t.Fatalf("columns %v, want %v", got.Columns, want.Columns)
	}
	for r := range want.Rows {
		for c, w := range want.Rows[r] {
			if g := got.Rows[r][c]; g != w && !(math.IsNaN(g) && math.IsNaN(w)) {
				t.Fatalf("tick %d, %s = %v, the example has %v", r, got.Columns[c], g, w)
			}
		}
	}
	mult := got.Column("MULTIPLIER")
	if mult[len(mult)-1] >= 1 {
		t.Errorf("the load multiplier ends at %v under 3× overload", mult[len(mult)-1])
	}
}

// TestRateLimitingDynamicFill replays query results through the
// signal-driven rate limiter: clamped to [min, max], the static fill amount
// while the query has no value, capacity = fill × burst_factor.
func TestRateLimitingDynamicFill(t *testing.T) {
	b, _ := Lookup("rate-limiting")
	values := strings.Replace(string(b.Values()), "enabled: false", "enabled: true", 1)
	out, err := b.Generate("values.yaml", []byte(values))
	if err != nil {
		t.Fatal(err)
	}
	tab, err := sim.Recorded(out.Policy, []map[string]float64{
		{"FILL_QUERY": 500}, {"FILL_QUERY": 5000}, {"FILL_QUERY": 0}, {},
	})
	if err != nil {
		t.Fatal(err)
	}
	fill, capacity := tab.Column("5.fill_amount"), tab.Column("5.bucket_capacity")
	wantFill := []float64{500, 1000, 1, 10}
	for i, w := range wantFill {
		if fill[i] != w || capacity[i] != 2*w {
			t.Errorf("tick %d: fill %v, capacity %v; want %v, %v", i, fill[i], capacity[i], w, 2*w)
		}
	}
}

// TestCanaryRolloutSteps replays a canary error ratio through the
// canary-rollout circuit: the weight steps 5 → 10 → 25 every 5m while the
// ratio is healthy, holds while the query has no data, goes to 0 once the
// ratio stays above max_error_rate for 30s, and stays 0 after the ratio
// recovers.
func TestCanaryRolloutSteps(t *testing.T) {
	b, _ := Lookup("canary-rollout")
	out := generateExample(t, b)
	var ticks []map[string]float64
	add := func(n int, ratio float64, valid bool) {
		for range n {
			if valid {
				ticks = append(ticks, map[string]float64{"ERROR_RATIO": ratio})
			} else {
				ticks = append(ticks, map[string]float64{})
			}
		}
	}
	add(700, 0.01, true) // ticks 0..699: healthy
	add(300, 0, false)   // 700..999: no data
	add(40, 0.2, true)   // 1000..1039: failing
	add(60, 0.01, true)  // 1040..1099: healthy again
	tab, err := sim.Recorded(out.Policy, ticks)
	if err != nil {
		t.Fatal(err)
	}
	w := tab.Column("CANARY_WEIGHT")
	if w == nil {
		t.Fatalf("no CANARY_WEIGHT column in %v", tab.Columns)
	}
	for _, c := range []struct {
		tick int
		want float64
	}{
		{0, 5}, {250, 5}, {350, 10}, {650, 25}, // stepping while healthy
		{999, 25},            // no data: the rollout holds (it would be at 50 by now)
		{1020, 25},           // failing for 20s: not yet
		{1039, 0}, {1099, 0}, // failing for 30s: rolled back, and it stays back
	} {
		if w[c.tick] != c.want {
			t.Errorf("tick %d: canary weight %v, want %v", c.tick, w[c.tick], c.want)
		}
	}
}

// TestAdaptiveLoadBalancingWeights replays per-target latency and error
// ratios: weight = 100 × 50ms / latency × max(0, 1 − 5 × errors), clamped to
// [1, 200]; missing errors count as none; a missing latency makes the weight
// invalid so the gateway falls back to the configured weight.
func TestAdaptiveLoadBalancingWeights(t *testing.T) {
	b, _ := Lookup("adaptive-load-balancing")
	out := generateExample(t, b)
	tab, err := sim.Recorded(out.Policy, []map[string]float64{
		{"LATENCY_T1": 50, "ERRORS_RAW_T1": 0, "LATENCY_T2": 100, "ERRORS_RAW_T2": 0.1},
		{"LATENCY_T1": 10, "LATENCY_T2": 50, "ERRORS_RAW_T2": 0.5},
		{"LATENCY_T2": 25, "ERRORS_RAW_T2": 0},
	})
	if err != nil {
		t.Fatal(err)
	}
	w1, w2 := tab.Column("WEIGHT_T1"), tab.Column("WEIGHT_T2")
	if w1 == nil || w2 == nil {
		t.Fatalf("no weight columns in %v", tab.Columns)
	}
	want1 := []float64{100, 200, math.NaN()}
	want2 := []float64{25, 1, 200}
	for i := range want1 {
		if !(w1[i] == want1[i] || math.IsNaN(w1[i]) && math.IsNaN(want1[i])) {
			t.Errorf("tick %d: target 1 weight %v, want %v", i, w1[i], want1[i])
		}
		if w2[i] != want2[i] {
			t.Errorf("tick %d: target 2 weight %v, want %v", i, w2[i], want2[i])
		}
	}
}
