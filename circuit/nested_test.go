package circuit

import (
	"slices"
	"strings"
	"testing"

	"github.com/fluxgate/fluxgate/policies"
)

const nestedSmoothing = `
- nested_circuit:
    name: smoothing
    in_ports_map: {input: {signal_name: LATENCY}}
    out_ports_map: {output: {signal_name: SMOOTH}}
    components:
      - ema:
          in_ports: {input: {signal_name: input}}
          out_ports: {output: {signal_name: output}}
          parameters: {ema_window: 10s}
- arithmetic_combinator:
    operator: mul
    in_ports: {lhs: {signal_name: SMOOTH}, rhs: {constant_signal: {value: 2}}}
    out_ports: {output: {signal_name: DOUBLE}}
`

// A diagram shows a nested circuit as one component wired by its outer
// signals, never by its private ones.
func TestNestedCircuitDiagram(t *testing.T) {
	d := Describe(parseCircuit(t, nestedSmoothing))
	var edges []string
	for _, e := range d.Edges {
		edges = append(edges, e.From+"->"+e.To+":"+e.Label)
	}
	want := []string{"c0->c1:SMOOTH", "k0->c1:rhs", "missing_LATENCY->c0:LATENCY"}
	slices.Sort(edges)
	if !slices.Equal(edges, want) {
		t.Errorf("edges = %v, want %v", edges, want)
	}
	if d.Nodes[0].Label != "0: nested_circuit" {
		t.Errorf("node 0 = %q", d.Nodes[0].Label)
	}
}

func TestNestedCircuitPorts(t *testing.T) {
	p := parseCircuit(t, nestedSmoothing)
	in, out := p.Spec.Circuit.Components[0].Spec.(Spec).Ports()
	if len(in) != 1 || in[0].Name != "input" || in[0].Wire.SignalName != "LATENCY" {
		t.Errorf("in = %+v", in)
	}
	if len(out) != 1 || out[0].Name != "output" || out[0].Wire.SignalName != "SMOOTH" {
		t.Errorf("out = %+v", out)
	}
}

// Inner components report the outer index in Order and run before their
// outer consumers.
func TestNestedCircuitOrderAndReadings(t *testing.T) {
	c := compile(t, nestedSmoothing, "LATENCY")
	if got := c.Order(); !slices.Equal(got, []int{0, 1}) {
		t.Errorf("order = %v", got)
	}
	c.SetInput("LATENCY", Value(4))
	c.Step(t0)
	if v := value(t, c, "DOUBLE"); !v.Valid || v.V != 8 {
		t.Errorf("DOUBLE = %v", v)
	}
	var names []string
	for _, r := range c.Readings() {
		names = append(names, r.Name+"("+r.Producer+")")
	}
	if want := "DOUBLE(arithmetic_combinator) LATENCY(input) SMOOTH(ema)"; strings.Join(names, " ") != want {
		t.Errorf("readings = %v, want %s", names, want)
	}
}

// A policy built in Go, without positions, compiles the same way.
func TestNestedCircuitBuiltInGo(t *testing.T) {
	ema := &EMA{}
	ema.InPorts.Input = &policies.InPort{SignalName: "in"}
	ema.OutPorts.Output = &policies.OutPort{SignalName: "out"}
	ema.Parameters.EMAWindow = t0.Sub(t0.Add(-3e9))
	nc := &NestedCircuit{
		InPortsMap:  map[string]*policies.InPort{"in": {ConstantSignal: &policies.ConstantSignal{Value: 6}}},
		OutPortsMap: map[string]*policies.OutPort{"out": {SignalName: "Y"}},
		Components:  []*policies.Component{{Kind: "ema", Spec: ema}},
	}
	if errs := nc.Validate(); len(errs) > 0 {
		t.Fatal(errs)
	}
	p := &policies.Policy{}
	p.Metadata.Name = "go"
	p.Spec.Circuit.Components = []*policies.Component{{Kind: "nested_circuit", Spec: nc}}
	c, err := Compile(p, Env{})
	if err != nil {
		t.Fatal(err)
	}
	c.Step(t0)
	if v := value(t, c, "Y"); !v.Valid || v.V != 6 {
		t.Errorf("Y = %v", v)
	}
	if _, err := nc.Build(&Env{}); err == nil {
		t.Error("Build of a nested circuit succeeded")
	}
}
