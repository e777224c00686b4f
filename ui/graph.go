package ui

import (
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/fluxgate/fluxgate/circuit"
	"github.com/fluxgate/fluxgate/policies"
)

// Graph is a policy's circuit as the page draws it: nodes in layers from
// left to right, edges carrying signals from one node to another.
type Graph struct {
	Policy string `json:"policy"`
	// Interval is the circuit's evaluation interval in milliseconds.
	IntervalMs int64  `json:"interval_ms"`
	Nodes      []Node `json:"nodes"`
	Edges      []Edge `json:"edges"`
	// Layers is the number of columns; Crossings the edge crossings left
	// between adjacent layers after ordering.
	Layers    int `json:"layers"`
	Crossings int `json:"crossings"`
}

// Node is a component, a constant feeding one, a signal without a
// producer, or the end of a signal no component reads.
type Node struct {
	ID string `json:"id"`
	// Type is component, constant, missing (a signal without a producer)
	// or sink (where a signal no component reads ends).
	Type  string `json:"type"`
	Kind  string `json:"kind,omitempty"` // component kind
	Label string `json:"label"`
	// Params is the component's spec as YAML, for the page's details.
	Params   string `json:"params,omitempty"`
	Actuator bool   `json:"actuator,omitempty"`
	Line     int    `json:"line,omitempty"` // position in the policy file
	// Layer is the column (0 leftmost), Row the position in it (0 top).
	Layer int `json:"layer"`
	Row   int `json:"row"`
}

// Edge is a signal, or a constant, from one node to another.
type Edge struct {
	From string `json:"from"`
	To   string `json:"to"`
	// Signal is the signal's name; empty for a constant.
	Signal string `json:"signal,omitempty"`
	// Port is the input port a constant feeds.
	Port string `json:"port,omitempty"`
}

// actuatorPrefix marks the kinds of flow-control actuators, the
// components a circuit drives.
const actuatorPrefix = "flow_control."

// BuildGraph lays out the circuit of p. It reads the wiring as `fluxgate
// policy graph` does (circuit.Describe) and adds, for each signal no
// component reads, a sink node so that every signal shows as an edge.
func BuildGraph(p *policies.Policy) Graph {
	d := circuit.Describe(p)
	comps := p.Spec.Circuit.Components
	g := Graph{Policy: d.Policy, IntervalMs: p.Spec.Circuit.EvaluationInterval.Milliseconds()}
	if g.IntervalMs == 0 {
		g.IntervalMs = 1000
	}
	for _, n := range d.Nodes {
		node := Node{ID: n.ID, Label: n.Label}
		var idx int
		switch {
		case strings.HasPrefix(n.ID, "k"):
			node.Type = "constant"
		case strings.HasPrefix(n.ID, "missing_"):
			node.Type = "missing"
		default:
			if _, err := fmt.Sscanf(n.ID, "c%d", &idx); err == nil && idx < len(comps) && comps[idx] != nil {
				c := comps[idx]
				node.Type, node.Kind, node.Line = "component", c.Kind, c.Line
				node.Label = c.Kind
				node.Actuator = strings.HasPrefix(c.Kind, actuatorPrefix)
				if b, err := yaml.Marshal(c.Spec); err == nil {
					node.Params = string(b)
				}
			}
		}
		g.Nodes = append(g.Nodes, node)
	}
	read := map[string]bool{}
	for _, e := range d.Edges {
		edge := Edge{From: e.From, To: e.To, Signal: e.Label}
		if strings.HasPrefix(e.From, "k") {
			edge.Signal, edge.Port = "", e.Label
		} else {
			read[e.Label] = true
		}
		g.Edges = append(g.Edges, edge)
	}
	for i, c := range comps {
		spec, ok := c.Spec.(circuit.Spec)
		if c == nil || !ok {
			continue
		}
		_, outs := spec.Ports()
		for _, o := range outs {
			if o.Wire == nil || o.Wire.SignalName == "" || read[o.Wire.SignalName] {
				continue
			}
			name := o.Wire.SignalName
			read[name] = true
			id := "out_" + name
			g.Nodes = append(g.Nodes, Node{ID: id, Type: "sink", Label: name})
			g.Edges = append(g.Edges, Edge{From: fmt.Sprintf("c%d", i), To: id, Signal: name})
		}
	}
	g.Layers, g.Crossings = layout(g.Nodes, g.Edges)
	return g
}
