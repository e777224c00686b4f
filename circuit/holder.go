package circuit

import (
	"fmt"
	"time"

	"github.com/fluxgate/fluxgate/policies"
)

func init() {
	Register("holder", func() Spec {
		s := &Holder{}
		s.HoldFor = 5 * time.Second
		return s
	})
}

// Holder takes a valid input and outputs it for hold_for (default 5s),
// ignoring the input, valid or not, meanwhile. When the hold ends it takes
// the next valid input; while the input is invalid and nothing is held,
// the output is invalid. A valid non-zero reset drops the held value and
// takes the current input at once (an invalid input then leaves nothing
// held).
type Holder struct {
	HoldFor time.Duration `yaml:"hold_for,omitempty"`
	InPorts struct {
		Input *policies.InPort `yaml:"input"`
		Reset *policies.InPort `yaml:"reset,omitempty"`
	} `yaml:"in_ports"`
	OutPorts struct {
		Output *policies.OutPort `yaml:"output"`
	} `yaml:"out_ports"`
}

// Validate implements the parser's validation hook.
func (s *Holder) Validate() []error {
	errs := requirePorts(nil, map[string]*policies.InPort{"input": s.InPorts.Input})
	errs = optionalPorts(errs, map[string]*policies.InPort{"reset": s.InPorts.Reset})
	if s.HoldFor <= 0 {
		errs = append(errs, fmt.Errorf("hold_for must be positive"))
	}
	return errs
}

// Ports implements Spec.
func (s *Holder) Ports() ([]InPort, []OutPort) {
	return []InPort{{"input", s.InPorts.Input}, {"reset", s.InPorts.Reset}}, []OutPort{{"output", s.OutPorts.Output}}
}

// Build implements Spec.
func (s *Holder) Build(*Env) (Component, error) { return &holder{holdFor: s.HoldFor}, nil }

type holder struct {
	holdFor time.Duration
	held    Signal
	since   time.Time
}

var _ Component = (*holder)(nil)

func (h *holder) Step(t Tick, in, out []Signal) {
	if in[1].True() || (h.held.Valid && t.Now.Sub(h.since) >= h.holdFor) {
		h.held = Invalid
	}
	if !h.held.Valid && in[0].Valid {
		h.held, h.since = in[0], t.Now
	}
	out[0] = h.held
}
