package circuit

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fluxgate/fluxgate/policies"
	"github.com/fluxgate/fluxgate/policies/strictyaml"
)

// node is one compiled component.
type node struct {
	index    int // position in spec.circuit.components (of the outermost nested circuit, inside one)
	kind     string
	comp     Component
	inSlots  []slot
	outSlots []int // signal index, or -1 when the output is not used
	line     int
	column   int
}

// slot is where an input comes from: a signal, or a constant.
type slot struct {
	signal   int // -1 for a constant or an unconnected port
	constant Signal
}

// Circuit is a compiled circuit. Step is called by one goroutine at a
// time; Readings may be called concurrently with it.
type Circuit struct {
	policy   policies.Key
	interval time.Duration
	nodes    []*node // in execution order
	names    []string
	producer []*node // per signal

	values []Signal // guarded by mu while written; read by the stepping goroutine freely
	at     []time.Time
	inBuf  []Signal
	outBuf []Signal
	ticks  uint64
	inputs map[string]*inputNode

	mu sync.Mutex // guards values and at against Readings
}

// Interval is the circuit's evaluation interval.
func (c *Circuit) Interval() time.Duration { return c.interval }

// Compile builds the circuit of p. Wiring errors (a signal with no
// producer or two, an unknown kind) are returned as a
// strictyaml.ErrorList positioned at the components, without a file name.
// Nested circuits are flattened into the circuit (see NestedCircuit).
func Compile(p *policies.Policy, env Env) (*Circuit, error) {
	interval := p.Spec.Circuit.EvaluationInterval
	if interval <= 0 {
		interval = policies.DefaultEvaluationInterval
	}
	c := &Circuit{policy: p.Key(), interval: interval}
	var errs strictyaml.ErrorList
	errorf := func(comp *policies.Component, format string, args ...any) {
		errs = append(errs, &strictyaml.Error{Line: comp.Line, Column: comp.Column, Msg: fmt.Sprintf(format, args...)})
	}
	if env.Logger == nil {
		env.Logger = discardLogger
	}
	env.Policy, env.Interval = c.policy, interval

	type wired struct {
		n     *node
		in    []InPort
		out   []OutPort
		scope *scope // of a nested circuit's component; nil at the top level
	}
	var all []wired
	signalIndex := map[string]int{}
	c.inputs = map[string]*inputNode{}
	for _, name := range env.Inputs {
		in := &inputNode{}
		n := &node{index: -1, kind: "input", comp: in, outSlots: []int{len(c.names)}}
		signalIndex[name] = len(c.names)
		c.names = append(c.names, name)
		c.producer = append(c.producer, n)
		c.inputs[name] = in
		all = append(all, wired{n: n})
	}
	for _, f := range flatten(p.Spec.Circuit.Components, nil, flatComponent{}, errorf) {
		i, comp, sc := f.index, f.comp, f.scope
		e := env
		e.Index = i
		in, out, built, ok := buildComponent(f, &e, errorf)
		if !ok {
			continue
		}
		n := &node{index: i, kind: comp.Kind, comp: built, line: comp.Line, column: comp.Column}
		w := wired{n: n, in: in, out: out, scope: sc}
		for _, o := range out {
			idx := -1
			if o.Wire != nil && o.Wire.SignalName != "" {
				name := o.Wire.SignalName
				key, _, err := sc.resolve(name, true)
				if err != nil {
					errorf(comp, "%s: out_ports.%s: %v", comp.Kind, o.Name, err)
					continue
				}
				if prev, dup := signalIndex[key]; dup {
					p := c.producer[prev]
					if key != name {
						name = fmt.Sprintf("%s (exported as %q)", strconv.Quote(name), key)
					} else {
						name = strconv.Quote(name)
					}
					errorf(comp, "signal %s already has a producer%s: %s at line %d, column %d", name, sc.where(), p.kind, p.line, p.column)
					continue
				}
				idx = len(c.names)
				signalIndex[key] = idx
				c.names = append(c.names, key)
				c.producer = append(c.producer, n)
			}
			n.outSlots = append(n.outSlots, idx)
		}
		all = append(all, w)
	}
	// Inputs, now that every producer is known.
	for _, w := range all {
		for _, p := range w.in {
			s := slot{signal: -1}
			switch {
			case p.Wire == nil:
			case p.Wire.ConstantSignal != nil:
				s.constant = Value(p.Wire.ConstantSignal.Float())
			case p.Wire.SignalName != "":
				key, k, err := w.scope.resolve(p.Wire.SignalName, false)
				if k != nil {
					s.constant = Value(k.Float())
					break
				}
				idx, ok := signalIndex[key]
				if err != nil || !ok {
					msg := fmt.Sprintf("signal %q has no producer%s%s", p.Wire.SignalName, w.scope.where(), suggest(p.Wire.SignalName, w.scope.visible(c.names)))
					if err != nil {
						msg = err.Error()
					}
					errs = append(errs, &strictyaml.Error{Line: w.n.line, Column: w.n.column,
						Msg: fmt.Sprintf("%s: in_ports.%s: %s", w.n.kind, p.Name, msg)})
					continue
				}
				s.signal = idx
			}
			w.n.inSlots = append(w.n.inSlots, s)
		}
	}
	if len(errs) > 0 {
		errs.Sort()
		return nil, errs
	}
	nodes := make([]*node, len(all))
	for i, w := range all {
		nodes[i] = w.n
	}
	c.nodes = order(nodes, c.producer)
	c.values = make([]Signal, len(c.names))
	c.at = make([]time.Time, len(c.names))
	maxPorts := 0
	for _, n := range c.nodes {
		maxPorts = max(maxPorts, len(n.inSlots), len(n.outSlots))
	}
	c.inBuf = make([]Signal, maxPorts)
	c.outBuf = make([]Signal, maxPorts)
	return c, nil
}

// buildComponent builds the component of f with env e and lists its
// ports: a circuit component builds itself, a flow-control component at
// the top level becomes an actuator that hands its inputs to env. It
// reports an error through errorf and returns false when it cannot.
func buildComponent(f flatComponent, e *Env, errorf func(*policies.Component, string, ...any)) (in []InPort, out []OutPort, built Component, ok bool) {
	comp := f.comp
	ports, isActuator := actuatorPorts(comp.Spec)
	switch spec := comp.Spec.(type) {
	case Spec:
		in, out = spec.Ports()
		b, err := spec.Build(e)
		if err != nil {
			errorf(comp, "%s: %v", comp.Kind, err)
			return nil, nil, nil, false
		}
		return in, out, b, true
	default:
		if !isActuator {
			errorf(comp, "%s is not a circuit component", comp.Kind)
			return nil, nil, nil, false
		}
		if f.path != "" {
			// The decision engine and the gateway create actuators
			// from the top-level list only: refuse rather than feed
			// an actuator nobody enforces.
			errorf(comp, "%s: flow-control components must be at the top level of spec.circuit.components, not inside a nested_circuit; export the signal with out_ports_map and wire it there", comp.Kind)
			return nil, nil, nil, false
		}
		return ports, nil, &actuator{env: e, ports: ports}, true
	}
}

// order returns the nodes in execution order: each node after the
// producers of its inputs whenever possible, declaration order otherwise;
// when every remaining node waits on another, the first declared runs and
// reads the previous tick's values of its pending inputs.
func order(nodes []*node, producer []*node) []*node {
	done := make(map[*node]bool, len(nodes))
	out := make([]*node, 0, len(nodes))
	ready := func(n *node) bool {
		for _, s := range n.inSlots {
			if s.signal >= 0 {
				if p := producer[s.signal]; p != n && !done[p] {
					return false
				}
			}
		}
		return true
	}
	for len(out) < len(nodes) {
		progress := false
		for _, n := range nodes {
			if !done[n] && ready(n) {
				done[n] = true
				out = append(out, n)
				progress = true
			}
		}
		if progress {
			continue
		}
		for _, n := range nodes { // a cycle: cut it at the first declared node
			if !done[n] {
				done[n] = true
				out = append(out, n)
				break
			}
		}
	}
	return out
}

// suggest names a close signal for a typo.
func suggest(name string, have []string) string {
	best, bestD := "", 3
	for _, h := range have {
		if d := editDistance(strings.ToLower(name), strings.ToLower(h)); d < bestD {
			best, bestD = h, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// Step evaluates one tick at now.
func (c *Circuit) Step(now time.Time) {
	t := Tick{Now: now, Interval: c.interval, N: c.ticks}
	c.ticks++
	for _, n := range c.nodes {
		in := c.inBuf[:len(n.inSlots)]
		for i, s := range n.inSlots {
			if s.signal >= 0 {
				in[i] = c.values[s.signal]
			} else {
				in[i] = s.constant
			}
		}
		out := c.outBuf[:len(n.outSlots)]
		clear(out)
		n.comp.Step(t, in, out)
		c.mu.Lock()
		for i, idx := range n.outSlots {
			if idx >= 0 {
				c.values[idx] = out[i]
				c.at[idx] = now
			}
		}
		c.mu.Unlock()
	}
}

// Reading is the latest value of one signal.
type Reading struct {
	Name  string    `json:"name"`
	Value float64   `json:"value"`
	Valid bool      `json:"valid"`
	At    time.Time `json:"at"`
	// Reason says why the signal is invalid, when its producer knows.
	Reason string `json:"reason,omitempty"`
	// Producer is the kind of the component that produces it.
	Producer string `json:"producer"`
}

// Reasoner is implemented by components that can say why their output is
// invalid (a failed PromQL query, say).
type Reasoner interface {
	Reason() string
}

// Readings returns every signal's latest value, sorted by name.
func (c *Circuit) Readings() []Reading {
	c.mu.Lock()
	out := make([]Reading, len(c.names))
	for i, name := range c.names {
		v := c.values[i]
		out[i] = Reading{Name: name, Value: v.V, Valid: v.Valid, At: c.at[i], Producer: c.producer[i].kind}
	}
	c.mu.Unlock()
	for i := range out {
		if !out[i].Valid {
			if r, ok := c.producer[i].comp.(Reasoner); ok {
				out[i].Reason = r.Reason()
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Order lists the components' indexes in execution order.
func (c *Circuit) Order() []int {
	out := make([]int, 0, len(c.nodes))
	for _, n := range c.nodes {
		if n.index >= 0 { // not an input
			out = append(out, n.index)
		}
	}
	return out
}

// inputNode produces a signal fed from outside the circuit.
type inputNode struct{ v Signal }

func (n *inputNode) Step(_ Tick, _, out []Signal) { out[0] = n.v }

// SetInput sets the value an input signal (Env.Inputs) has from the next
// Step on. It reports false for a signal that is not an input.
func (c *Circuit) SetInput(name string, v Signal) bool {
	in := c.inputs[name]
	if in == nil {
		return false
	}
	in.v = v
	return true
}

// Value is the current value of a signal, and whether the signal exists.
func (c *Circuit) Value(name string) (Signal, bool) {
	for i, n := range c.names {
		if n == name {
			c.mu.Lock()
			defer c.mu.Unlock()
			return c.values[i], true
		}
	}
	return Invalid, false
}
