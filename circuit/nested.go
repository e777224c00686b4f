package circuit

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/fluxgate/fluxgate/policies"
)

func init() { Register("nested_circuit", func() Spec { return &NestedCircuit{} }) }

// NestedCircuit is a sub-circuit used as one component: an ordinary
// component list with named inputs and outputs.
//
// Inside, components wire to each other by signal_name as in any circuit,
// but their signals are private: Compile renames them into a namespace of
// their own, "<index>.<name>/<signal>" (index: the nested circuit's position
// in its list; name: Name, or nested_circuit when empty), so they never
// clash with the signals outside or with another nested circuit's. Two
// kinds of inner signal are not private:
//
//   - a signal named by a key of in_ports_map is fed from outside: inner
//     components read the outer wire (a signal or a constant) the map gives
//     it; no inner component may produce it;
//   - a signal named by a key of out_ports_map is exported: its one inner
//     producer produces the outer signal the map gives it, which inner
//     components may read too. It must have an inner producer.
//
// Compile flattens nested circuits into the enclosing circuit, so the
// execution order and the cycle rule (package doc) apply across the
// boundary as if the inner components were declared in place of the nested
// circuit; nested circuits may nest. Wiring errors inside report the inner
// component's position. Readings show private signals under their
// namespaced names.
//
// Flow-control components (actuators) are refused inside a nested
// circuit: export the signal with out_ports_map and wire the actuator at
// the top level. Circuit.Order lists a nested circuit's index once per
// inner component.
//
// Ports lists in_ports_map and out_ports_map, sorted by port name, so
// diagrams and dashboards see the nested circuit as one component. Build
// is never called by Compile and fails.
type NestedCircuit struct {
	// Name labels the nested circuit in signal names and diagrams.
	Name string `yaml:"name,omitempty"`
	// ShortDescription and LongDescription document it; unused at run time.
	ShortDescription string `yaml:"short_description,omitempty"`
	LongDescription  string `yaml:"long_description,omitempty"`
	// InPortsMap wires outer signals (or constants) to inner signals.
	InPortsMap map[string]*policies.InPort `yaml:"in_ports_map,omitempty"`
	// OutPortsMap exports inner signals as outer signals.
	OutPortsMap map[string]*policies.OutPort `yaml:"out_ports_map,omitempty"`
	// Components is the sub-circuit.
	Components []*policies.Component `yaml:"components"`
}

// Validate implements the parser's validation hook. The inner components
// were validated as they were decoded.
func (s *NestedCircuit) Validate() []error {
	var errs []error
	if strings.Contains(s.Name, "/") {
		errs = append(errs, fmt.Errorf("name %q must not contain '/'", s.Name))
	}
	for _, name := range sortedKeys(s.InPortsMap) {
		if p := s.InPortsMap[name]; p == nil || (p.SignalName == "") == (p.ConstantSignal == nil) {
			errs = append(errs, fmt.Errorf("in_ports_map.%s: set exactly one of signal_name and constant_signal", name))
		}
		if _, both := s.OutPortsMap[name]; both {
			errs = append(errs, fmt.Errorf("%q is both in in_ports_map and in out_ports_map", name))
		}
	}
	for _, name := range sortedKeys(s.OutPortsMap) {
		if p := s.OutPortsMap[name]; p == nil || p.SignalName == "" {
			errs = append(errs, fmt.Errorf("out_ports_map.%s.signal_name is required", name))
		}
	}
	for i, c := range s.Components {
		if c == nil {
			errs = append(errs, fmt.Errorf("components[%d] must not be empty", i))
		}
	}
	if len(s.Components) == 0 {
		errs = append(errs, fmt.Errorf("components needs at least one component"))
	}
	return errs
}

// Ports implements Spec: the outer wires of in_ports_map and out_ports_map.
func (s *NestedCircuit) Ports() ([]InPort, []OutPort) {
	in := make([]InPort, 0, len(s.InPortsMap))
	for _, name := range sortedKeys(s.InPortsMap) {
		in = append(in, InPort{Name: name, Wire: s.InPortsMap[name]})
	}
	out := make([]OutPort, 0, len(s.OutPortsMap))
	for _, name := range sortedKeys(s.OutPortsMap) {
		out = append(out, OutPort{Name: name, Wire: s.OutPortsMap[name]})
	}
	return in, out
}

// Build implements Spec. Compile flattens nested circuits instead.
func (s *NestedCircuit) Build(*Env) (Component, error) {
	return nil, fmt.Errorf("a nested circuit is flattened by Compile, not built")
}

// scope is the signal namespace of one nested circuit; nil is the top
// level, where a signal's name is its own.
type scope struct {
	parent *scope
	prefix string // of private signals, the parents' prefixes included
	label  string // for messages: `nested_circuit "smoothing"`
	spec   *NestedCircuit
}

// resolve returns what the inner signal name refers to: a signal of the
// flattened circuit (key), or a constant fed through in_ports_map. producing
// says the caller is the signal's producer, which is an error for a
// signal fed from outside.
func (s *scope) resolve(name string, producing bool) (key string, k *policies.ConstantSignal, err error) {
	if s == nil {
		return name, nil, nil
	}
	if w, ok := s.spec.InPortsMap[name]; ok {
		switch {
		case producing:
			return "", nil, fmt.Errorf("signal %q is an input of %s (in_ports_map); it cannot be produced inside", name, s.label)
		case w == nil:
			return "", nil, fmt.Errorf("in_ports_map.%s of %s is empty", name, s.label)
		case w.ConstantSignal != nil:
			return "", w.ConstantSignal, nil
		}
		return s.parent.resolve(w.SignalName, false)
	}
	if w, ok := s.spec.OutPortsMap[name]; ok && w != nil && w.SignalName != "" {
		return s.parent.resolve(w.SignalName, producing)
	}
	return s.prefix + name, nil, nil
}

// where says, for messages, which nested circuit a component is in.
func (s *scope) where() string {
	if s == nil {
		return ""
	}
	return " (in " + s.label + ")"
}

// privateName matches the signals private to a nested circuit.
var privateName = regexp.MustCompile(`^[0-9]+\.[^/]*/`)

// visible returns the names of keys as an inner component of s writes
// them, for typo suggestions.
func (s *scope) visible(keys []string) []string {
	var out []string
	for _, k := range keys {
		switch {
		case s == nil:
			if !privateName.MatchString(k) {
				out = append(out, k)
			}
		case strings.HasPrefix(k, s.prefix) && !strings.Contains(k[len(s.prefix):], "/"):
			out = append(out, k[len(s.prefix):])
		}
	}
	if s != nil {
		out = append(out, sortedKeys(s.spec.InPortsMap)...)
	}
	return out
}

// flatComponent is a component of the flattened circuit.
type flatComponent struct {
	index int    // in spec.circuit.components: the outermost nested circuit's
	path  string // inner indexes, "1/" or "0/1/"; empty at the top level
	comp  *policies.Component
	scope *scope
}

// flatten lists the components of comps, the list of scope sc, replacing
// each nested circuit by its components, depth first. errorf reports a
// problem positioned at a component.
func flatten(comps []*policies.Component, sc *scope, outer flatComponent, errorf func(*policies.Component, string, ...any)) []flatComponent {
	var out []flatComponent
	for i, comp := range comps {
		if comp == nil {
			continue
		}
		f := flatComponent{index: i, comp: comp, scope: sc}
		if sc != nil {
			f.index, f.path = outer.index, outer.path+strconv.Itoa(i)+"/"
		}
		nc, ok := comp.Spec.(*NestedCircuit)
		if !ok {
			out = append(out, f)
			continue
		}
		name := nc.Name
		if name == "" {
			name = "nested_circuit"
		}
		label := "nested_circuit " + strconv.Quote(nc.Name)
		if nc.Name == "" {
			label = fmt.Sprintf("the nested_circuit at line %d, column %d", comp.Line, comp.Column)
		}
		child := &scope{parent: sc, prefix: strconv.Itoa(i) + "." + name + "/", label: label, spec: nc}
		if sc != nil {
			child.prefix = sc.prefix + child.prefix
		}
		produced := map[string]bool{}
		for _, c := range nc.Components {
			if c == nil {
				continue
			}
			if s, ok := c.Spec.(Spec); ok {
				_, outs := s.Ports()
				for _, o := range outs {
					if o.Wire != nil {
						produced[o.Wire.SignalName] = true
					}
				}
			}
		}
		for _, port := range sortedKeys(nc.OutPortsMap) {
			if !produced[port] {
				errorf(comp, "nested_circuit: out_ports_map.%s: no component inside produces signal %q", port, port)
			}
		}
		out = append(out, flatten(nc.Components, child, f, errorf)...)
	}
	return out
}
