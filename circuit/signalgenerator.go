package circuit

import (
	"fmt"
	"time"

	"github.com/fluxgate/fluxgate/policies"
)

func init() { Register("signal_generator", func() Spec { return &SignalGenerator{} }) }

// SignalGenerator follows a sequence of steps over time. The output starts
// at the first step's target_output and holds it for that step's duration;
// each later step moves linearly from the previous target to its own over
// its duration (a step of 0s jumps to its target). After the last step the
// output holds the last target.
//
// Time advances by the time between ticks while forward is true and goes
// back while backward is true (neither, or both: it stays). When neither
// forward nor backward is connected the generator runs forward on its own.
// A valid non-zero reset goes back to the start. Invalid forward, backward
// or reset inputs count as false; the output is always valid. at_start and
// at_end are 1 at the start and at the end of the sequence.
type SignalGenerator struct {
	InPorts struct {
		Forward  *policies.InPort `yaml:"forward,omitempty"`
		Backward *policies.InPort `yaml:"backward,omitempty"`
		Reset    *policies.InPort `yaml:"reset,omitempty"`
	} `yaml:"in_ports,omitempty"`
	OutPorts struct {
		Output  *policies.OutPort `yaml:"output,omitempty"`
		AtStart *policies.OutPort `yaml:"at_start,omitempty"`
		AtEnd   *policies.OutPort `yaml:"at_end,omitempty"`
	} `yaml:"out_ports"`
	Parameters struct {
		Steps []SignalStep `yaml:"steps"`
	} `yaml:"parameters"`
}

// SignalStep is one step of a SignalGenerator.
type SignalStep struct {
	TargetOutput *policies.ConstantSignal `yaml:"target_output"`
	// Duration is required; 0s is a step that takes no time.
	Duration *time.Duration `yaml:"duration"`
}

// Validate implements the parser's validation hook.
func (s *SignalGenerator) Validate() []error {
	errs := optionalPorts(nil, map[string]*policies.InPort{
		"forward": s.InPorts.Forward, "backward": s.InPorts.Backward, "reset": s.InPorts.Reset,
	})
	if len(s.Parameters.Steps) == 0 {
		errs = append(errs, fmt.Errorf("parameters.steps needs at least one step"))
	}
	for i, st := range s.Parameters.Steps {
		if st.TargetOutput == nil {
			errs = append(errs, fmt.Errorf("parameters.steps[%d].target_output is required", i))
		}
		if st.Duration == nil {
			errs = append(errs, fmt.Errorf("parameters.steps[%d].duration is required", i))
		}
	}
	return errs
}

// Ports implements Spec.
func (s *SignalGenerator) Ports() ([]InPort, []OutPort) {
	return []InPort{{"forward", s.InPorts.Forward}, {"backward", s.InPorts.Backward}, {"reset", s.InPorts.Reset}},
		[]OutPort{{"output", s.OutPorts.Output}, {"at_start", s.OutPorts.AtStart}, {"at_end", s.OutPorts.AtEnd}}
}

// Build implements Spec.
func (s *SignalGenerator) Build(*Env) (Component, error) {
	g := &signalGenerator{free: s.InPorts.Forward == nil && s.InPorts.Backward == nil}
	for _, st := range s.Parameters.Steps {
		if st.TargetOutput == nil || st.Duration == nil {
			return nil, fmt.Errorf("a step has no target_output or duration")
		}
		g.steps = append(g.steps, genStep{v: st.TargetOutput.Float(), d: *st.Duration})
		g.total += *st.Duration
	}
	return g, nil
}

type genStep struct {
	v float64
	d time.Duration
}

type signalGenerator struct {
	steps []genStep
	total time.Duration
	free  bool // runs forward without inputs

	pos     time.Duration // position in the sequence, 0..total
	last    time.Time
	started bool
}

var _ Component = (*signalGenerator)(nil)

func (g *signalGenerator) Step(t Tick, in, out []Signal) {
	forward, backward, reset := in[0].True() || g.free, in[1].True(), in[2].True()
	if g.started && t.Now.After(g.last) {
		dt := t.Now.Sub(g.last)
		switch {
		case forward && !backward:
			g.pos = min(g.pos+dt, g.total)
		case backward && !forward:
			g.pos = max(g.pos-dt, 0)
		}
	}
	if reset {
		g.pos = 0
	}
	g.started, g.last = true, t.Now
	out[0] = Value(g.at(g.pos))
	out[1] = Bool(g.pos == 0)
	out[2] = Bool(g.pos >= g.total)
}

// at is the output at position pos.
func (g *signalGenerator) at(pos time.Duration) float64 {
	prev := g.steps[0].v
	for _, st := range g.steps {
		if pos < st.d {
			return prev + (st.v-prev)*float64(pos)/float64(st.d)
		}
		pos -= st.d
		prev = st.v
	}
	return prev
}
