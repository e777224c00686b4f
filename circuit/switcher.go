package circuit

import "github.com/fluxgate/fluxgate/policies"

func init() { Register("switcher", func() Spec { return &Switcher{} }) }

// Switcher outputs on_signal while switch is valid and non-zero, and
// off_signal otherwise — an invalid switch selects off_signal, as in
// Aperture. The selected signal passes through as it is, invalid
// included.
type Switcher struct {
	InPorts struct {
		OnSignal  *policies.InPort `yaml:"on_signal"`
		OffSignal *policies.InPort `yaml:"off_signal"`
		Switch    *policies.InPort `yaml:"switch"`
	} `yaml:"in_ports"`
	OutPorts struct {
		Output *policies.OutPort `yaml:"output"`
	} `yaml:"out_ports"`
}

// Validate implements the parser's validation hook.
func (s *Switcher) Validate() []error {
	return requirePorts(nil, map[string]*policies.InPort{
		"on_signal": s.InPorts.OnSignal, "off_signal": s.InPorts.OffSignal, "switch": s.InPorts.Switch,
	})
}

// Ports implements Spec.
func (s *Switcher) Ports() ([]InPort, []OutPort) {
	return []InPort{{"on_signal", s.InPorts.OnSignal}, {"off_signal", s.InPorts.OffSignal}, {"switch", s.InPorts.Switch}},
		[]OutPort{{"output", s.OutPorts.Output}}
}

// Build implements Spec.
func (s *Switcher) Build(*Env) (Component, error) { return switcher{}, nil }

type switcher struct{}

var _ Component = switcher{}

func (switcher) Step(_ Tick, in, out []Signal) {
	if in[2].True() {
		out[0] = in[0]
	} else {
		out[0] = in[1]
	}
}
