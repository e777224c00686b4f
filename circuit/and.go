package circuit

import "github.com/fluxgate/fluxgate/policies"

func init() { Register("and", func() Spec { return &And{} }) }

// And is a logical AND of its inputs: zero is false, any other valid value
// true, and an invalid input unknown. The output is 1, 0 or invalid
// (unknown), by three-valued logic as in Aperture: any false input makes
// the output false even if others are invalid; otherwise any invalid input
// makes it invalid.
type And struct {
	InPorts struct {
		Inputs []*policies.InPort `yaml:"inputs"`
	} `yaml:"in_ports"`
	OutPorts struct {
		Output *policies.OutPort `yaml:"output"`
	} `yaml:"out_ports"`
}

// Validate implements the parser's validation hook.
func (s *And) Validate() []error { return validateVariadic("inputs", s.InPorts.Inputs) }

// Ports implements Spec.
func (s *And) Ports() ([]InPort, []OutPort) {
	return variadicPorts("inputs", s.InPorts.Inputs), []OutPort{{"output", s.OutPorts.Output}}
}

// Build implements Spec.
func (s *And) Build(*Env) (Component, error) { return logic{dominant: false}, nil }

// logic is And (dominant false) or Or (dominant true): one input of the
// dominant value decides the output; otherwise an unknown input makes it
// unknown.
type logic struct{ dominant bool }

var _ Component = logic{}

func (l logic) Step(_ Tick, in, out []Signal) {
	unknown := false
	for _, s := range in {
		switch {
		case !s.Valid:
			unknown = true
		case (s.V != 0) == l.dominant:
			out[0] = Bool(l.dominant)
			return
		}
	}
	if !unknown {
		out[0] = Bool(!l.dominant)
	}
}
