package circuit

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fluxgate/fluxgate/policies"
	"github.com/fluxgate/fluxgate/policies/strictyaml"
)

var t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func parseCircuit(t testing.TB, components string) *policies.Policy {
	t.Helper()
	src := "apiVersion: fluxgate.io/v1beta1\nkind: Policy\nmetadata: {name: c}\nspec:\n  circuit:\n    evaluation_interval: 1s\n    components:\n" + indent(components, "      ")
	docs, err := policies.Parse("c.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return docs[0].Object.(*policies.Policy)
}

func indent(s, pre string) string {
	lines := strings.Split(strings.Trim(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = pre + l
	}
	return strings.Join(lines, "\n") + "\n"
}

func compile(t testing.TB, components string, inputs ...string) *Circuit {
	t.Helper()
	c, err := Compile(parseCircuit(t, components), Env{Inputs: inputs})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func value(t *testing.T, c *Circuit, name string) Signal {
	t.Helper()
	v, ok := c.Value(name)
	if !ok {
		t.Fatalf("no signal %q", name)
	}
	return v
}

func TestArithmeticAndFirstValid(t *testing.T) {
	c := compile(t, `
- first_valid:
    in_ports: {inputs: [{signal_name: LIMIT}, {constant_signal: {value: 100}}]}
    out_ports: {output: {signal_name: CAPACITY}}
- arithmetic_combinator:
    operator: mul
    in_ports: {lhs: {signal_name: LATENCY}, rhs: {constant_signal: {value: 2}}}
    out_ports: {output: {signal_name: LIMIT}}
`, "LATENCY")
	steps := []struct {
		in       Signal
		limit    Signal
		capacity Signal
	}{
		{Value(21), Value(42), Value(42)},
		{Invalid, Invalid, Value(100)},
		{Value(0.5), Value(1), Value(1)},
	}
	for i, s := range steps {
		c.SetInput("LATENCY", s.in)
		c.Step(t0.Add(time.Duration(i) * time.Second))
		if got := value(t, c, "LIMIT"); got != s.limit {
			t.Errorf("tick %d LIMIT = %v, want %v", i, got, s.limit)
		}
		// first_valid is declared first but runs after its producer.
		if got := value(t, c, "CAPACITY"); got != s.capacity {
			t.Errorf("tick %d CAPACITY = %v, want %v", i, got, s.capacity)
		}
	}
	if got := c.Order(); got[0] != 1 || got[1] != 0 {
		t.Errorf("order = %v, want the producer first", got)
	}
}

func TestDivisionByZeroIsInvalid(t *testing.T) {
	c := compile(t, `
- arithmetic_combinator:
    operator: div
    in_ports: {lhs: {constant_signal: {value: 1}}, rhs: {signal_name: X}}
    out_ports: {output: {signal_name: Y}}
`, "X")
	c.SetInput("X", Value(0))
	c.Step(t0)
	if got := value(t, c, "Y"); got.Valid {
		t.Fatalf("1/0 = %v, want invalid", got)
	}
}

// A loop: an integrator built from an adder that feeds itself. The edge
// that closes the cycle carries the previous tick's value.
func TestCycleReadsPreviousTick(t *testing.T) {
	c := compile(t, `
- arithmetic_combinator:
    operator: add
    in_ports: {lhs: {signal_name: SUM}, rhs: {signal_name: ONE}}
    out_ports: {output: {signal_name: NEXT}}
- first_valid:
    in_ports: {inputs: [{signal_name: NEXT}, {constant_signal: {value: 0}}]}
    out_ports: {output: {signal_name: SUM}}
`, "ONE")
	c.SetInput("ONE", Value(1))
	var got []float64
	for i := 0; i < 4; i++ {
		c.Step(t0.Add(time.Duration(i) * time.Second))
		got = append(got, value(t, c, "SUM").V)
	}
	// Tick 0: SUM is invalid when the adder runs, so NEXT is invalid and SUM
	// falls back to 0; then it counts 1, 2, 3.
	want := []float64{0, 1, 2, 3}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("SUM = %v, want %v", got, want)
		}
	}
}

// Two interlocked cycles sharing a node never stall.
func TestInterlockedCyclesNeverStall(t *testing.T) {
	c := compile(t, `
- arithmetic_combinator:
    operator: add
    in_ports: {lhs: {signal_name: B}, rhs: {signal_name: C}}
    out_ports: {output: {signal_name: A}}
- first_valid:
    in_ports: {inputs: [{signal_name: A}, {constant_signal: {value: 1}}]}
    out_ports: {output: {signal_name: B}}
- first_valid:
    in_ports: {inputs: [{signal_name: A}, {constant_signal: {value: 2}}]}
    out_ports: {output: {signal_name: C}}
`)
	for i := 0; i < 3; i++ {
		c.Step(t0.Add(time.Duration(i) * time.Second))
	}
	if len(c.Order()) != 3 {
		t.Fatalf("order = %v", c.Order())
	}
	// The cycle is cut at A: tick 0 A is invalid (B and C not yet valid),
	// B=1, C=2; tick 1 A=3; tick 2 A=6.
	if a := value(t, c, "A"); !a.Valid || a.V != 6 {
		t.Fatalf("A = %v, want 6", a)
	}
}

func TestWiringErrorsArePositioned(t *testing.T) {
	_, err := Compile(parseCircuit(t, `
- arithmetic_combinator:
    operator: add
    in_ports: {lhs: {signal_name: LATENCY}, rhs: {signal_name: MISSING}}
    out_ports: {output: {signal_name: LATENCY}}
- first_valid:
    in_ports: {inputs: [{constant_signal: {value: 1}}]}
    out_ports: {output: {signal_name: LATENCY}}
`), Env{})
	var list strictyaml.ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("error %v is not an ErrorList", err)
	}
	want := []string{
		`8:9: arithmetic_combinator: in_ports.rhs: signal "MISSING" has no producer`,
		`12:9: signal "LATENCY" already has a producer: arithmetic_combinator at line 8, column 9`,
	}
	if len(list) != len(want) {
		t.Fatalf("errors = %v", list)
	}
	for i := range want {
		if list[i].Error() != want[i] {
			t.Errorf("error %d = %q, want %q", i, list[i].Error(), want[i])
		}
	}
}

func TestEMAWarmupAndEnvelope(t *testing.T) {
	c := compile(t, `
- ema:
    in_ports: {input: {signal_name: X}, max_envelope: {constant_signal: {value: 50}}}
    out_ports: {output: {signal_name: AVG}}
    parameters: {ema_window: 3s, warmup_window: 2s, correction_factor_on_max_envelope_violation: 0.5}
`, "X")
	// N = 3, alpha = 0.5. Warm-up of 2 samples: mean, invalid until done.
	steps := []struct {
		x    Signal
		want Signal
	}{
		{Value(10), Invalid},    // warming up: mean 10
		{Value(20), Value(15)},  // mean of 10, 20
		{Value(25), Value(20)},  // 0.5*25 + 0.5*15
		{Invalid, Value(20)},    // invalid input: unchanged
		{Value(120), Value(35)}, // 0.5*120 + 0.5*20 = 70 > 50: corrected by 0.5
	}
	for i, s := range steps {
		c.SetInput("X", s.x)
		c.Step(t0.Add(time.Duration(i) * time.Second))
		if got := value(t, c, "AVG"); got != s.want {
			t.Errorf("tick %d: AVG = %v, want %v", i, got, s.want)
		}
	}
}

func TestDeciderTrueForFalseFor(t *testing.T) {
	c := compile(t, `
- decider:
    operator: gt
    true_for: 2s
    false_for: 1s
    in_ports: {lhs: {signal_name: X}, rhs: {constant_signal: {value: 10}}}
    out_ports: {output: {signal_name: HOT}}
`, "X")
	xs := []Signal{Value(5), Value(11), Value(12), Value(13), Value(1), Value(2), Invalid, Value(20)}
	want := []Signal{Bool(false), Bool(false), Bool(false), Bool(true), Bool(true), Bool(false), Invalid, Bool(false)}
	for i := range xs {
		c.SetInput("X", xs[i])
		c.Step(t0.Add(time.Duration(i) * time.Second))
		if got := value(t, c, "HOT"); got != want[i] {
			t.Errorf("tick %d: HOT = %v, want %v", i, got, want[i])
		}
	}
}

func TestVariableFromDynamicConfig(t *testing.T) {
	p := parseCircuit(t, `
- variable:
    constant_output: {value: 7}
    config_key: limit
    out_ports: {output: {signal_name: L}}
`)
	dyn := NewDynamicConfig()
	c, err := Compile(p, Env{Dynamic: dyn})
	if err != nil {
		t.Fatal(err)
	}
	c.Step(t0)
	if got := value(t, c, "L"); got != Value(7) {
		t.Fatalf("L = %v", got)
	}
	dyn.Set(p.Key(), map[string]any{"limit": 42.0})
	c.Step(t0.Add(time.Second))
	if got := value(t, c, "L"); got != Value(42) {
		t.Fatalf("L after dynamic config = %v", got)
	}
	dyn.Set(p.Key(), map[string]any{"limit": "lots"})
	c.Step(t0.Add(2 * time.Second))
	if got := value(t, c, "L"); got.Valid {
		t.Fatalf("L with a non-numeric value = %v, want invalid", got)
	}
}

type recordingSink struct{ got map[string]float64 }

func (r *recordingSink) SetComponentInput(_ policies.Key, component int, port string, v float64) error {
	r.got[port] = v
	return nil
}

func TestActuatorReceivesSignals(t *testing.T) {
	sink := &recordingSink{got: map[string]float64{}}
	p := parseCircuit(t, `
- flow_control:
    rate_limiter:
      selectors: [{control_point: ingress}]
      in_ports: {bucket_capacity: {signal_name: CAPACITY}, fill_amount: {constant_signal: {value: 10}}}
      parameters: {interval: 1s}
`)
	c, err := Compile(p, Env{Actuators: sink, Inputs: []string{"CAPACITY"}})
	if err != nil {
		t.Fatal(err)
	}
	c.SetInput("CAPACITY", Value(500))
	c.Step(t0)
	if sink.got["bucket_capacity"] != 500 || sink.got["fill_amount"] != 10 {
		t.Fatalf("actuator got %v", sink.got)
	}
	c.SetInput("CAPACITY", Invalid)
	c.Step(t0.Add(time.Second))
	if !math.IsNaN(sink.got["bucket_capacity"]) {
		t.Fatalf("invalid signal reached the actuator as %v, want NaN", sink.got["bucket_capacity"])
	}
}

// BenchmarkTick1000 is issue 5's target: one tick of a 1,000-component
// circuit without PromQL, ≤ 1 ms.
func BenchmarkTick1000(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("- variable:\n    constant_output: {value: 1}\n    out_ports: {output: {signal_name: S0}}\n")
	for i := 1; i < 1000; i++ {
		op := []string{"add", "mul", "sub"}[i%3]
		sb.WriteString("- arithmetic_combinator:\n    operator: " + op + "\n    in_ports: {lhs: {signal_name: S" + strconv.Itoa(i-1) + "}, rhs: {constant_signal: {value: 1.0001}}}\n    out_ports: {output: {signal_name: S" + strconv.Itoa(i) + "}}\n")
	}
	c := compile(b, sb.String())
	now := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		c.Step(now)
	}
}
