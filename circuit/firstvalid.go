package circuit

import (
	"fmt"
	"strconv"

	"github.com/fluxgate/fluxgate/policies"
)

func init() { Register("first_valid", func() Spec { return &FirstValid{} }) }

// FirstValid outputs the first valid of its inputs, in order; invalid when
// none is.
type FirstValid struct {
	InPorts struct {
		Inputs []*policies.InPort `yaml:"inputs"`
	} `yaml:"in_ports"`
	OutPorts struct {
		Output *policies.OutPort `yaml:"output"`
	} `yaml:"out_ports"`
}

// Validate implements the parser's validation hook.
func (s *FirstValid) Validate() []error {
	if len(s.InPorts.Inputs) == 0 {
		return []error{fmt.Errorf("in_ports.inputs needs at least one input")}
	}
	ports := map[string]*policies.InPort{}
	for i, p := range s.InPorts.Inputs {
		ports["inputs["+strconv.Itoa(i)+"]"] = p
	}
	return requirePorts(nil, ports)
}

// Ports implements Spec.
func (s *FirstValid) Ports() ([]InPort, []OutPort) {
	in := make([]InPort, len(s.InPorts.Inputs))
	for i, p := range s.InPorts.Inputs {
		in[i] = InPort{Name: "inputs[" + strconv.Itoa(i) + "]", Wire: p}
	}
	return in, []OutPort{{"output", s.OutPorts.Output}}
}

// Build implements Spec.
func (s *FirstValid) Build(*Env) (Component, error) { return firstValid{}, nil }

type firstValid struct{}

func (firstValid) Step(_ Tick, in, out []Signal) {
	for _, s := range in {
		if s.Valid {
			out[0] = s
			return
		}
	}
}
