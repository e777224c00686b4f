package circuit

import (
	"fmt"
	"sort"

	"github.com/fluxgate/fluxgate/policies"
)

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// requirePorts reports the required input ports that are missing or
// malformed.
func requirePorts(errs []error, ports map[string]*policies.InPort) []error {
	for _, name := range sortedKeys(ports) {
		p := ports[name]
		switch {
		case p == nil:
			errs = append(errs, fmt.Errorf("in_ports.%s is required", name))
		case (p.SignalName == "") == (p.ConstantSignal == nil):
			errs = append(errs, fmt.Errorf("in_ports.%s: set exactly one of signal_name and constant_signal", name))
		}
	}
	return errs
}
