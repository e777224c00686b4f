package circuit

import (
	"fmt"
	"strconv"

	"github.com/fluxgate/fluxgate/policies"
)

// variadicPorts names the wires of a repeated input port name[0], name[1], …
func variadicPorts(name string, wires []*policies.InPort) []InPort {
	in := make([]InPort, len(wires))
	for i, w := range wires {
		in[i] = InPort{Name: name + "[" + strconv.Itoa(i) + "]", Wire: w}
	}
	return in
}

// validateVariadic checks a repeated input port: at least one input, each
// well formed.
func validateVariadic(name string, wires []*policies.InPort) []error {
	if len(wires) == 0 {
		return []error{fmt.Errorf("in_ports.%s needs at least one input", name)}
	}
	ports := make(map[string]*policies.InPort, len(wires))
	for _, p := range variadicPorts(name, wires) {
		ports[p.Name] = p.Wire
	}
	return requirePorts(nil, ports)
}

// optionalPorts reports the optional input ports that are set but
// malformed.
func optionalPorts(errs []error, ports map[string]*policies.InPort) []error {
	set := map[string]*policies.InPort{}
	for name, p := range ports {
		if p != nil {
			set[name] = p
		}
	}
	return requirePorts(errs, set)
}
