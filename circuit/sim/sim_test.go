package sim

import (
	"math"
	"os"
	"testing"

	"github.com/fluxgate/fluxgate/policies"
)

func parse(t *testing.T, file string) *policies.Policy {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	docs, err := policies.Parse(file, data)
	if err != nil {
		t.Fatal(err)
	}
	return docs[0].Object.(*policies.Policy)
}

const doubler = `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: doubler}
spec:
  circuit:
    components:
      - query: {promql: {query_string: "up", out_ports: {output: {signal_name: X}}}}
      - arithmetic_combinator:
          operator: mul
          in_ports: {lhs: {signal_name: X}, rhs: {constant_signal: {value: 2}}}
          out_ports: {output: {signal_name: Y}}
      - flow_control:
          rate_limiter:
            selectors: [{control_point: ingress}]
            in_ports: {bucket_capacity: {signal_name: Y}, fill_amount: {signal_name: Y}}
            parameters: {interval: 1s}
`

func TestRecordedInputs(t *testing.T) {
	docs, err := policies.Parse("doubler.yaml", []byte(doubler))
	if err != nil {
		t.Fatal(err)
	}
	p := docs[0].Object.(*policies.Policy)
	tab, err := Recorded(p, []map[string]float64{{"X": 1}, {"X": 2.5}, {}, {"X": math.NaN()}})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"time_s", "X", "Y", "2.bucket_capacity", "2.fill_amount"}
	if len(tab.Columns) != len(want) {
		t.Fatalf("columns = %v, want %v", tab.Columns, want)
	}
	for i := range want {
		if tab.Columns[i] != want[i] {
			t.Fatalf("columns = %v, want %v", tab.Columns, want)
		}
	}
	y := tab.Column("Y")
	if y[0] != 2 || y[1] != 5 || !math.IsNaN(y[2]) || !math.IsNaN(y[3]) {
		t.Fatalf("Y = %v", y)
	}
	if cap := tab.Column("2.bucket_capacity"); cap[1] != 5 || !math.IsNaN(cap[2]) {
		t.Fatalf("actuator = %v", cap)
	}
	if _, err := Recorded(p, []map[string]float64{{"Z": 1}}); err == nil {
		t.Fatal("a recording of a signal the circuit does not read was accepted")
	}
}

// TestServiceProtectionUnderOverload runs the service-protection example
// (the blueprint's flux-meter loop) against a plant at three times its
// capacity whose latency is known, as a flux meter knows it, only when
// flows complete: it must react within 3 s and, once the backlog it saw
// late has drained, neither starve the service nor let latency run away.
func TestServiceProtectionUnderOverload(t *testing.T) {
	pol := parse(t, "../../policies/examples/service-protection.yaml")
	tab := runPlant(t, pol, "testdata/checkout-plant.yaml")
	lat, setpoint, served := tab.Column("plant.latency_ms"), tab.Column("SETPOINT"), tab.Column("plant.served_rps")
	mult := tab.Column("MULTIPLIER")
	// Reaction: admission drops within 3 s of the overload's onset (90 s).
	if mult[93] >= mult[89] {
		t.Errorf("multiplier %.2f at 93 s, %.2f before the overload: no reaction within 3 s", mult[93], mult[89])
	}
	// Judge the last minute of the overload.
	var sumLat, sumSet, sumServed, maxLat float64
	from := len(lat) - 60
	for i := from; i < len(lat); i++ {
		sumLat += lat[i]
		sumSet += setpoint[i]
		sumServed += served[i]
		maxLat = math.Max(maxLat, lat[i])
	}
	meanLat, meanSet, meanServed := sumLat/60, sumSet/60, sumServed/60
	t.Logf("last minute of 3× overload: mean latency %.1f ms (max %.1f) against a mean setpoint of %.1f ms; mean served %.1f rps of a capacity of 100; multiplier %.3f",
		meanLat, maxLat, meanSet, meanServed, mult[len(mult)-1])
	if meanLat > 2*meanSet {
		t.Errorf("mean latency %.1f ms is above twice the mean setpoint %.1f ms", meanLat, meanSet)
	}
	if meanServed < 50 {
		t.Errorf("served %.1f rps on average, want at least half the capacity of 100: the loop must not starve the service", meanServed)
	}
}

func runPlant(t *testing.T, pol *policies.Policy, file string) *Table {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	plant, err := ParsePlant(file, data)
	if err != nil {
		t.Fatal(err)
	}
	tab, err := Closed(pol, plant)
	if err != nil {
		t.Fatal(err)
	}
	return tab
}
