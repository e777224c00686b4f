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
// example values and the hand-written policies/examples/service-protection.yaml
// against the same overloaded plant: every signal and actuator input must
// be the same at every tick.
func TestServiceProtectionMatchesExample(t *testing.T) {
	b, _ := Lookup("service-protection")
	out := generateExample(t, b)
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
