package circuit

import (
	"math"

	"github.com/fluxgate/fluxgate/policies"
)

func init() { Register("integrator", func() Spec { return &Integrator{} }) }

// Integrator adds its input to a running sum every tick, starting from
// initial_value, and outputs the sum, kept within [min, max] when those
// optional inputs are valid (the clamped sum is what is kept, so it does
// not wind up beyond the bounds).
//
// An invalid input adds nothing: the output stays the current sum, which
// is always valid. A valid non-zero reset sets the sum back to
// initial_value before the tick's input is added (Aperture resets to zero;
// the two agree when initial_value is 0, the default). Invalid min or max
// inputs do not clamp.
type Integrator struct {
	InitialValue float64 `yaml:"initial_value,omitempty"`
	InPorts      struct {
		Input *policies.InPort `yaml:"input"`
		Reset *policies.InPort `yaml:"reset,omitempty"`
		Max   *policies.InPort `yaml:"max,omitempty"`
		Min   *policies.InPort `yaml:"min,omitempty"`
	} `yaml:"in_ports"`
	OutPorts struct {
		Output *policies.OutPort `yaml:"output"`
	} `yaml:"out_ports"`
}

// Validate implements the parser's validation hook.
func (s *Integrator) Validate() []error {
	errs := requirePorts(nil, map[string]*policies.InPort{"input": s.InPorts.Input})
	return optionalPorts(errs, map[string]*policies.InPort{"reset": s.InPorts.Reset, "max": s.InPorts.Max, "min": s.InPorts.Min})
}

// Ports implements Spec.
func (s *Integrator) Ports() ([]InPort, []OutPort) {
	return []InPort{{"input", s.InPorts.Input}, {"reset", s.InPorts.Reset}, {"max", s.InPorts.Max}, {"min", s.InPorts.Min}},
		[]OutPort{{"output", s.OutPorts.Output}}
}

// Build implements Spec.
func (s *Integrator) Build(*Env) (Component, error) {
	return &integrator{initial: s.InitialValue, sum: s.InitialValue}, nil
}

type integrator struct {
	initial, sum float64
}

var _ Component = (*integrator)(nil)

func (g *integrator) Step(_ Tick, in, out []Signal) {
	if in[1].True() {
		g.sum = g.initial
	}
	if in[0].Valid {
		g.sum += in[0].V
	}
	g.sum = clamp(g.sum, in[3], in[2])
	out[0] = Value(g.sum)
}

// clamp keeps v within [lo, hi], ignoring an invalid bound.
func clamp(v float64, lo, hi Signal) float64 {
	if hi.Valid {
		v = math.Min(v, hi.V)
	}
	if lo.Valid {
		v = math.Max(v, lo.V)
	}
	return v
}
