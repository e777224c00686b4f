package circuit

import (
	"fmt"
	"time"

	"github.com/fluxgate/fluxgate/policies"
)

func init() { Register("sma", func() Spec { return &SMA{} }) }

// SMA is the simple moving average of its input over the last sma_window
// of ticks (N = sma_window / interval readings, at least 1).
//
// Invalid readings take their place in the window but do not count: the
// output is the mean of the valid readings among the last N, and invalid
// when there are none (the input has been invalid for a whole window).
// Until N ticks have passed since the first valid reading the output is
// invalid, unless valid_during_warmup.
type SMA struct {
	InPorts struct {
		Input *policies.InPort `yaml:"input"`
	} `yaml:"in_ports"`
	OutPorts struct {
		Output *policies.OutPort `yaml:"output"`
	} `yaml:"out_ports"`
	Parameters struct {
		SMAWindow         time.Duration `yaml:"sma_window"`
		ValidDuringWarmup bool          `yaml:"valid_during_warmup,omitempty"`
	} `yaml:"parameters"`
}

// Validate implements the parser's validation hook.
func (s *SMA) Validate() []error {
	errs := requirePorts(nil, map[string]*policies.InPort{"input": s.InPorts.Input})
	if s.Parameters.SMAWindow <= 0 {
		errs = append(errs, fmt.Errorf("parameters.sma_window is required and must be positive"))
	}
	return errs
}

// Ports implements Spec.
func (s *SMA) Ports() ([]InPort, []OutPort) {
	return []InPort{{"input", s.InPorts.Input}}, []OutPort{{"output", s.OutPorts.Output}}
}

// Build implements Spec.
func (s *SMA) Build(env *Env) (Component, error) {
	n := max(int(s.Parameters.SMAWindow/env.Interval), 1)
	return &sma{ring: make([]Signal, n), validWarm: s.Parameters.ValidDuringWarmup}, nil
}

type sma struct {
	ring      []Signal
	next      int // ring index of the next reading
	seen      int // readings since the first valid one, capped at len(ring)
	validWarm bool
}

var _ Component = (*sma)(nil)

func (m *sma) Step(_ Tick, in, out []Signal) {
	if m.seen == 0 && !in[0].Valid {
		return // not started
	}
	m.ring[m.next] = in[0]
	m.next = (m.next + 1) % len(m.ring)
	m.seen = min(m.seen+1, len(m.ring))
	if m.seen < len(m.ring) && !m.validWarm {
		return
	}
	var sum float64
	var n int
	for _, s := range m.ring {
		if s.Valid {
			sum += s.V
			n++
		}
	}
	if n > 0 {
		out[0] = Value(sum / float64(n))
	}
}
