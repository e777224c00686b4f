package circuit

import (
	"fmt"
	"time"

	"github.com/fluxgate/fluxgate/policies"
)

func init() {
	Register("pulse_generator", func() Spec {
		return &PulseGenerator{TrueFor: 5 * time.Second, FalseFor: 5 * time.Second}
	})
}

// PulseGenerator outputs 1 for true_for, then 0 for false_for, and again
// (both default 5s), starting with 1 at its first tick. It has no inputs,
// so its output is always valid.
type PulseGenerator struct {
	TrueFor  time.Duration `yaml:"true_for,omitempty"`
	FalseFor time.Duration `yaml:"false_for,omitempty"`
	OutPorts struct {
		Output *policies.OutPort `yaml:"output"`
	} `yaml:"out_ports"`
}

// Validate implements the parser's validation hook.
func (s *PulseGenerator) Validate() []error {
	if s.TrueFor <= 0 || s.FalseFor <= 0 {
		return []error{fmt.Errorf("true_for and false_for must be positive")}
	}
	return nil
}

// Ports implements Spec.
func (s *PulseGenerator) Ports() ([]InPort, []OutPort) {
	return nil, []OutPort{{"output", s.OutPorts.Output}}
}

// Build implements Spec.
func (s *PulseGenerator) Build(*Env) (Component, error) {
	return &pulse{trueFor: s.TrueFor, period: s.TrueFor + s.FalseFor}, nil
}

type pulse struct {
	trueFor, period time.Duration
	start           time.Time
	started         bool
}

var _ Component = (*pulse)(nil)

func (p *pulse) Step(t Tick, _, out []Signal) {
	if !p.started {
		p.start, p.started = t.Now, true
	}
	phase := t.Now.Sub(p.start) % p.period
	if phase < 0 {
		phase += p.period // the clock went back
	}
	out[0] = Bool(phase < p.trueFor)
}
