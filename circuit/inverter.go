package circuit

import "github.com/fluxgate/fluxgate/policies"

func init() { Register("inverter", func() Spec { return &Inverter{} }) }

// Inverter is a logical NOT: 1 for a zero input, 0 for any other valid
// input. An invalid input (unknown) makes the output invalid.
type Inverter struct {
	InPorts struct {
		Input *policies.InPort `yaml:"input"`
	} `yaml:"in_ports"`
	OutPorts struct {
		Output *policies.OutPort `yaml:"output"`
	} `yaml:"out_ports"`
}

// Validate implements the parser's validation hook.
func (s *Inverter) Validate() []error {
	return requirePorts(nil, map[string]*policies.InPort{"input": s.InPorts.Input})
}

// Ports implements Spec.
func (s *Inverter) Ports() ([]InPort, []OutPort) {
	return []InPort{{"input", s.InPorts.Input}}, []OutPort{{"output", s.OutPorts.Output}}
}

// Build implements Spec.
func (s *Inverter) Build(*Env) (Component, error) { return inverter{}, nil }

type inverter struct{}

var _ Component = inverter{}

func (inverter) Step(_ Tick, in, out []Signal) {
	if in[0].Valid {
		out[0] = Bool(in[0].V == 0)
	}
}
