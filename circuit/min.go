package circuit

import (
	"math"

	"github.com/fluxgate/fluxgate/policies"
)

func init() { Register("min", func() Spec { return &Min{} }) }

// Min outputs the smallest of its inputs. Any invalid input makes the
// output invalid (Aperture's rule: a minimum over unknown values is
// unknown).
type Min struct {
	InPorts struct {
		Inputs []*policies.InPort `yaml:"inputs"`
	} `yaml:"in_ports"`
	OutPorts struct {
		Output *policies.OutPort `yaml:"output"`
	} `yaml:"out_ports"`
}

// Validate implements the parser's validation hook.
func (s *Min) Validate() []error { return validateVariadic("inputs", s.InPorts.Inputs) }

// Ports implements Spec.
func (s *Min) Ports() ([]InPort, []OutPort) {
	return variadicPorts("inputs", s.InPorts.Inputs), []OutPort{{"output", s.OutPorts.Output}}
}

// Build implements Spec.
func (s *Min) Build(*Env) (Component, error) { return extremum(math.Min), nil }

// extremum folds its inputs with math.Min or math.Max.
type extremum func(a, b float64) float64

var _ Component = extremum(nil)

func (f extremum) Step(_ Tick, in, out []Signal) {
	if len(in) == 0 {
		return
	}
	v := in[0]
	for _, s := range in {
		if !s.Valid {
			return
		}
		v.V = f(v.V, s.V)
	}
	out[0] = v
}
