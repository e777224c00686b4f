package circuit

import (
	"fmt"
	"time"

	"github.com/fluxgate/fluxgate/policies"
)

func init() { Register("extrapolator", func() Spec { return &Extrapolator{} }) }

// Extrapolator passes its input through and, while the input is invalid,
// repeats the last valid value for at most max_extrapolation_interval
// after the tick that produced it; after that the output is invalid until
// the input is valid again. An input that was never valid gives an invalid
// output.
type Extrapolator struct {
	InPorts struct {
		Input *policies.InPort `yaml:"input"`
	} `yaml:"in_ports"`
	OutPorts struct {
		Output *policies.OutPort `yaml:"output"`
	} `yaml:"out_ports"`
	Parameters struct {
		MaxExtrapolationInterval time.Duration `yaml:"max_extrapolation_interval"`
	} `yaml:"parameters"`
}

// Validate implements the parser's validation hook.
func (s *Extrapolator) Validate() []error {
	errs := requirePorts(nil, map[string]*policies.InPort{"input": s.InPorts.Input})
	if s.Parameters.MaxExtrapolationInterval <= 0 {
		errs = append(errs, fmt.Errorf("parameters.max_extrapolation_interval is required and must be positive"))
	}
	return errs
}

// Ports implements Spec.
func (s *Extrapolator) Ports() ([]InPort, []OutPort) {
	return []InPort{{"input", s.InPorts.Input}}, []OutPort{{"output", s.OutPorts.Output}}
}

// Build implements Spec.
func (s *Extrapolator) Build(*Env) (Component, error) {
	return &extrapolator{maxAge: s.Parameters.MaxExtrapolationInterval}, nil
}

type extrapolator struct {
	maxAge time.Duration
	last   Signal
	at     time.Time // when last was read
}

var _ Component = (*extrapolator)(nil)

func (e *extrapolator) Step(t Tick, in, out []Signal) {
	if in[0].Valid {
		e.last, e.at = in[0], t.Now
		out[0] = in[0]
		return
	}
	if e.last.Valid && t.Now.Sub(e.at) <= e.maxAge {
		out[0] = e.last
	}
}
