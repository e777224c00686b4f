package circuit

import "github.com/fluxgate/fluxgate/policies"

func init() { Register("or", func() Spec { return &Or{} }) }

// Or is a logical OR of its inputs, with And's mapping of values to
// booleans: any true input makes the output true even if others are
// invalid; otherwise any invalid input makes it invalid.
type Or struct {
	InPorts struct {
		Inputs []*policies.InPort `yaml:"inputs"`
	} `yaml:"in_ports"`
	OutPorts struct {
		Output *policies.OutPort `yaml:"output"`
	} `yaml:"out_ports"`
}

// Validate implements the parser's validation hook.
func (s *Or) Validate() []error { return validateVariadic("inputs", s.InPorts.Inputs) }

// Ports implements Spec.
func (s *Or) Ports() ([]InPort, []OutPort) {
	return variadicPorts("inputs", s.InPorts.Inputs), []OutPort{{"output", s.OutPorts.Output}}
}

// Build implements Spec.
func (s *Or) Build(*Env) (Component, error) { return logic{dominant: true}, nil }
