package circuit

import (
	"math"

	"github.com/fluxgate/fluxgate/policies"
)

func init() { Register("max", func() Spec { return &Max{} }) }

// Max outputs the largest of its inputs. Any invalid input makes the
// output invalid, as for Min.
type Max struct {
	InPorts struct {
		Inputs []*policies.InPort `yaml:"inputs"`
	} `yaml:"in_ports"`
	OutPorts struct {
		Output *policies.OutPort `yaml:"output"`
	} `yaml:"out_ports"`
}

// Validate implements the parser's validation hook.
func (s *Max) Validate() []error { return validateVariadic("inputs", s.InPorts.Inputs) }

// Ports implements Spec.
func (s *Max) Ports() ([]InPort, []OutPort) {
	return variadicPorts("inputs", s.InPorts.Inputs), []OutPort{{"output", s.OutPorts.Output}}
}

// Build implements Spec.
func (s *Max) Build(*Env) (Component, error) { return extremum(math.Max), nil }
