package circuit

import (
	"fmt"
	"time"

	"github.com/fluxgate/fluxgate/policies"
)

func init() {
	Register("differentiator", func() Spec { return &Differentiator{Window: 5 * time.Second} })
}

// Differentiator outputs the rate of change of its input per second over
// window (default 5s): (x(now) − x(then)) / (now − then), where then is the
// tick of the oldest valid reading not older than window. (Aperture states
// the rate per tick; per second keeps the value independent of the
// evaluation interval.)
//
// An invalid input makes the output invalid for that tick and is not
// remembered; the output is also invalid until two valid readings fall in
// the window.
type Differentiator struct {
	Window  time.Duration `yaml:"window,omitempty"`
	InPorts struct {
		Input *policies.InPort `yaml:"input"`
	} `yaml:"in_ports"`
	OutPorts struct {
		Output *policies.OutPort `yaml:"output"`
	} `yaml:"out_ports"`
}

// Validate implements the parser's validation hook.
func (s *Differentiator) Validate() []error {
	errs := requirePorts(nil, map[string]*policies.InPort{"input": s.InPorts.Input})
	if s.Window <= 0 {
		errs = append(errs, fmt.Errorf("window must be positive"))
	}
	return errs
}

// Ports implements Spec.
func (s *Differentiator) Ports() ([]InPort, []OutPort) {
	return []InPort{{"input", s.InPorts.Input}}, []OutPort{{"output", s.OutPorts.Output}}
}

// Build implements Spec.
func (s *Differentiator) Build(*Env) (Component, error) {
	return &differentiator{window: s.Window}, nil
}

type sample struct {
	at time.Time
	v  float64
}

type differentiator struct {
	window  time.Duration
	samples []sample // valid readings within window, oldest first
}

var _ Component = (*differentiator)(nil)

func (d *differentiator) Step(t Tick, in, out []Signal) {
	drop := 0
	for drop < len(d.samples) && t.Now.Sub(d.samples[drop].at) > d.window {
		drop++
	}
	d.samples = append(d.samples[:0], d.samples[drop:]...)
	if !in[0].Valid {
		return
	}
	d.samples = append(d.samples, sample{t.Now, in[0].V})
	first := d.samples[0]
	if dt := t.Now.Sub(first.at).Seconds(); dt > 0 {
		out[0] = Value((in[0].V - first.v) / dt)
	}
}
