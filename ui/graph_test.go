package ui

import (
	"strings"
	"testing"

	"github.com/fluxgate/fluxgate/policies"
)

const graphPolicy = `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: g}
spec:
  circuit:
    evaluation_interval: 200ms
    components:
      - variable:
          constant_output: {value: 10}
          config_key: base
          out_ports: {output: {signal_name: BASE}}
      - arithmetic_combinator:
          operator: mul
          in_ports: {lhs: {signal_name: BASE}, rhs: {constant_signal: {value: 2}}}
          out_ports: {output: {signal_name: FILL}}
      - flow_control:
          rate_limiter:
            selectors: [{control_point: api}]
            in_ports:
              bucket_capacity: {constant_signal: {value: 100}}
              fill_amount: {signal_name: FILL}
            parameters: {interval: 1s}
      - arithmetic_combinator:
          operator: div
          in_ports: {lhs: {signal_name: BASE}, rhs: {signal_name: DIVISOR}}
          out_ports: {output: {signal_name: RATIO}}
      - variable:
          constant_output: {value: 0}
          config_key: divisor
          out_ports: {output: {signal_name: DIVISOR}}
`

func parse(t *testing.T, src string) *policies.Policy {
	t.Helper()
	objs, err := policies.Parse("g.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return objs[0].Object.(*policies.Policy)
}

func TestBuildGraph(t *testing.T) {
	g := BuildGraph(parse(t, graphPolicy))
	if g.Policy != "default/g" || g.IntervalMs != 200 {
		t.Fatalf("graph of %q every %d ms", g.Policy, g.IntervalMs)
	}
	nodes := map[string]Node{}
	kinds := map[string]int{}
	for _, n := range g.Nodes {
		nodes[n.ID] = n
		kinds[n.Type+":"+n.Kind]++
	}
	want := map[string]int{"component:variable": 2, "component:arithmetic_combinator": 2, "component:flow_control.rate_limiter": 1, "constant:": 2, "sink:": 1}
	for k, n := range want {
		if kinds[k] != n {
			t.Errorf("%d nodes %s, want %d (all: %v)", kinds[k], k, n, kinds)
		}
	}
	rl := nodes["c2"]
	if !rl.Actuator || rl.Line == 0 || !strings.Contains(rl.Params, "fill_amount") {
		t.Errorf("rate limiter node = %+v", rl)
	}
	if nodes["c1"].Actuator {
		t.Error("arithmetic is not an actuator")
	}
	signals := map[string]Edge{}
	for _, e := range g.Edges {
		if e.Signal != "" {
			signals[e.Signal+":"+e.From+">"+e.To] = e
		}
	}
	for _, s := range []string{"BASE:c0>c1", "BASE:c0>c3", "FILL:c1>c2", "DIVISOR:c4>c3", "RATIO:c3>out_RATIO"} {
		if _, ok := signals[s]; !ok {
			t.Errorf("no edge %s in %v", s, signals)
		}
	}
	// Left to right in signal order: BASE before FILL before the limiter.
	if !(nodes["c0"].Layer < nodes["c1"].Layer && nodes["c1"].Layer < nodes["c2"].Layer && nodes["c3"].Layer < nodes["out_RATIO"].Layer) {
		t.Errorf("layers: %+v", g.Nodes)
	}
	if g.Crossings != 0 {
		t.Errorf("%d crossings", g.Crossings)
	}
	seen := map[[2]int]string{}
	for _, n := range g.Nodes {
		at := [2]int{n.Layer, n.Row}
		if other, dup := seen[at]; dup {
			t.Errorf("%s and %s both at layer %d row %d", n.ID, other, n.Layer, n.Row)
		}
		seen[at] = n.ID
	}
}

func TestLayoutRemovesCrossingsAndSurvivesLoops(t *testing.T) {
	for _, tc := range []struct {
		name      string
		nodes     []string
		edges     [][2]string
		crossings int
	}{
		// Given in the order a,b then y,x: a→x and b→y cross until the
		// sweep swaps x and y.
		{"crossed pair", []string{"a", "b", "y", "x"}, [][2]string{{"a", "x"}, {"b", "y"}}, 0},
		{"feedback loop", []string{"a", "b", "c"}, [][2]string{{"a", "b"}, {"b", "c"}, {"c", "b"}}, 0},
		// K(2,2) crosses once whatever the order.
		{"complete bipartite", []string{"a", "b", "x", "y"}, [][2]string{{"a", "x"}, {"a", "y"}, {"b", "x"}, {"b", "y"}}, 1},
		{"empty", nil, nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var nodes []Node
			for _, id := range tc.nodes {
				nodes = append(nodes, Node{ID: id})
			}
			var edges []Edge
			for _, e := range tc.edges {
				edges = append(edges, Edge{From: e[0], To: e[1]})
			}
			_, crossings := layout(nodes, edges)
			if crossings != tc.crossings {
				t.Fatalf("crossings = %d, want %d (%+v)", crossings, tc.crossings, nodes)
			}
			at := map[string]Node{}
			for _, n := range nodes {
				at[n.ID] = n
			}
			for _, e := range tc.edges {
				if f, to := at[e[0]], at[e[1]]; f.Layer >= to.Layer && !(e[0] == "c" && e[1] == "b") {
					t.Errorf("edge %s→%s goes from layer %d to %d", e[0], e[1], f.Layer, to.Layer)
				}
			}
		})
	}
}
