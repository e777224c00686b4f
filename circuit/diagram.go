package circuit

import (
	"fmt"
	"sort"
	"strings"

	"github.com/fluxgate/fluxgate/policies"
)

// Diagram is a circuit's wiring, for `fluxgate policy graph`.
type Diagram struct {
	Policy string
	Nodes  []DiagramNode
	Edges  []DiagramEdge
}

// DiagramNode is one component, or a constant feeding one.
type DiagramNode struct {
	ID    string // "c0", "c1", ... for components; "k0", ... for constants
	Label string
}

// DiagramEdge is a signal (or a constant) from one node's port to another's.
type DiagramEdge struct {
	From, To string
	Label    string // signal name, or "port" for constants
}

// Describe lays out the wiring of p's circuit without building it.
// Signals with no producer start at a node of their own, so a diagram of a
// broken circuit still shows where it breaks.
func Describe(p *policies.Policy) Diagram {
	d := Diagram{Policy: p.Key().String()}
	producer := map[string]string{}
	type in struct {
		node string
		port InPort
	}
	var inputs []in
	for i, c := range p.Spec.Circuit.Components {
		if c == nil {
			continue
		}
		id := fmt.Sprintf("c%d", i)
		d.Nodes = append(d.Nodes, DiagramNode{ID: id, Label: fmt.Sprintf("%d: %s", i, c.Kind)})
		var ins []InPort
		var outs []OutPort
		switch spec := c.Spec.(type) {
		case Spec:
			ins, outs = spec.Ports()
		default:
			if ports, ok := actuatorPorts(spec); ok {
				ins = ports
			}
		}
		for _, o := range outs {
			if o.Wire != nil && o.Wire.SignalName != "" {
				producer[o.Wire.SignalName] = id
			}
		}
		for _, p := range ins {
			inputs = append(inputs, in{node: id, port: p})
		}
	}
	consts := 0
	for _, x := range inputs {
		switch w := x.port.Wire; {
		case w == nil:
		case w.ConstantSignal != nil:
			id := fmt.Sprintf("k%d", consts)
			consts++
			d.Nodes = append(d.Nodes, DiagramNode{ID: id, Label: fmt.Sprintf("%g", w.ConstantSignal.Float())})
			d.Edges = append(d.Edges, DiagramEdge{From: id, To: x.node, Label: x.port.Name})
		default:
			from, ok := producer[w.SignalName]
			if !ok {
				from = "missing_" + sanitize(w.SignalName)
				d.Nodes = append(d.Nodes, DiagramNode{ID: from, Label: w.SignalName + " (no producer)"})
				producer[w.SignalName] = from
			}
			d.Edges = append(d.Edges, DiagramEdge{From: from, To: x.node, Label: w.SignalName})
		}
	}
	sort.SliceStable(d.Edges, func(i, j int) bool { return d.Edges[i].From < d.Edges[j].From })
	return d
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' {
			return r
		}
		return '_'
	}, s)
}

// DOT renders the diagram for Graphviz.
func (d Diagram) DOT() string {
	var b strings.Builder
	fmt.Fprintf(&b, "digraph %q {\n  rankdir=LR;\n  node [shape=box];\n", d.Policy)
	for _, n := range d.Nodes {
		shape := ""
		if strings.HasPrefix(n.ID, "k") {
			shape = ", shape=plaintext"
		}
		fmt.Fprintf(&b, "  %s [label=%q%s];\n", n.ID, n.Label, shape)
	}
	for _, e := range d.Edges {
		fmt.Fprintf(&b, "  %s -> %s [label=%q];\n", e.From, e.To, e.Label)
	}
	b.WriteString("}\n")
	return b.String()
}

// Mermaid renders the diagram as a Mermaid flowchart.
func (d Diagram) Mermaid() string {
	var b strings.Builder
	b.WriteString("flowchart LR\n")
	for _, n := range d.Nodes {
		label := strings.ReplaceAll(n.Label, `"`, "'")
		if strings.HasPrefix(n.ID, "k") {
			fmt.Fprintf(&b, "  %s([\"%s\"])\n", n.ID, label)
		} else {
			fmt.Fprintf(&b, "  %s[\"%s\"]\n", n.ID, label)
		}
	}
	for _, e := range d.Edges {
		fmt.Fprintf(&b, "  %s -->|%s| %s\n", e.From, strings.ReplaceAll(e.Label, "|", "/"), e.To)
	}
	return b.String()
}
