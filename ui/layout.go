package ui

import "sort"

// sweeps bounds the ordering passes of layout: each orders every layer
// by the mean position of its neighbours in the layer before (down) or
// after (up).
const sweeps = 8

// layout gives each node a layer (column, left to right in signal order)
// and a row, and returns the number of layers and the edge crossings left.
//
// It is the layered drawing of Sugiyama et al. in its simplest form:
// back edges (a circuit's feedback loops) are set aside, each node goes
// to the layer after its furthest producer (longest path), nodes that
// only feed others move right next to their first reader, edges spanning
// several layers get a virtual node in each layer they cross, and the
// rows are ordered by barycentre sweeps, keeping the order with the
// fewest crossings. Rows count real nodes only.
func layout(nodes []Node, edges []Edge) (layers, crossings int) {
	n := len(nodes)
	if n == 0 {
		return 0, 0
	}
	out, arcs := arcsOf(nodes, edges)
	back := backArcs(out)
	var fwd []arc
	succ, pred := make([][]int, n), make([][]int, n)
	for _, a := range arcs {
		if back[a] {
			continue
		}
		fwd = append(fwd, a)
		succ[a.from] = append(succ[a.from], a.to)
		pred[a.to] = append(pred[a.to], a.from)
	}
	layer := longestPath(succ, pred)
	for _, l := range layer {
		layers = max(layers, l+1)
	}
	g := newLayered(layer, fwd, layers)
	best, bestOrder := g.orderRows()
	for l, ids := range bestOrder {
		row := 0
		for _, v := range ids {
			if v < n {
				nodes[v].Layer, nodes[v].Row = l, row
				row++
			}
		}
	}
	return layers, best
}

// arc is an edge between two node indexes.
type arc struct{ from, to int }

// arcsOf indexes the edges between known, distinct nodes: out[i] lists
// the nodes node i feeds.
func arcsOf(nodes []Node, edges []Edge) (out [][]int, arcs []arc) {
	index := make(map[string]int, len(nodes))
	for i, nd := range nodes {
		index[nd.ID] = i
	}
	out = make([][]int, len(nodes))
	for _, e := range edges {
		f, okf := index[e.From]
		t, okt := index[e.To]
		if !okf || !okt || f == t {
			continue
		}
		out[f] = append(out[f], t)
		arcs = append(arcs, arc{f, t})
	}
	return out, arcs
}

// backArcs finds the back edges: those that reach a node on the DFS stack.
func backArcs(out [][]int) map[arc]bool {
	state := make([]int, len(out)) // 0 new, 1 on stack, 2 done
	back := map[arc]bool{}
	var visit func(int)
	visit = func(u int) {
		state[u] = 1
		for _, v := range out[u] {
			switch state[v] {
			case 0:
				visit(v)
			case 1:
				back[arc{u, v}] = true
			}
		}
		state[u] = 2
	}
	for i := range out {
		if state[i] == 0 {
			visit(i)
		}
	}
	return back
}

// longestPath layers an acyclic graph by the longest path from the
// sources, in topological order; then sources (constants, variables) move
// to just before their first reader.
func longestPath(succ, pred [][]int) []int {
	n := len(succ)
	indeg := make([]int, n)
	for u := range pred {
		indeg[u] = len(pred[u])
	}
	layer := make([]int, n)
	queue := []int{}
	for i := range n {
		if indeg[i] == 0 {
			queue = append(queue, i)
		}
	}
	var topo []int
	for len(queue) > 0 {
		u := queue[0]
		queue = queue[1:]
		topo = append(topo, u)
		for _, v := range succ[u] {
			layer[v] = max(layer[v], layer[u]+1)
			if indeg[v]--; indeg[v] == 0 {
				queue = append(queue, v)
			}
		}
	}
	for i := len(topo) - 1; i >= 0; i-- {
		u := topo[i]
		if len(pred[u]) > 0 || len(succ[u]) == 0 {
			continue
		}
		first := -1
		for _, v := range succ[u] {
			if first < 0 || layer[v] < first {
				first = layer[v]
			}
		}
		layer[u] = first - 1
	}
	return layer
}

// layered is a layered graph whose edges each span one layer: a long
// edge goes through a virtual node (id ≥ the number of real nodes) in
// each layer it crosses.
type layered struct {
	up, down [][]int   // neighbours in the layer before and after
	order    [][]int   // node ids by layer, in row order
	pos      []float64 // row of each node in its layer
}

func newLayered(layer []int, fwd []arc, layers int) *layered {
	lay := append([]int(nil), layer...)
	var segs []arc
	for _, a := range fwd {
		u := a.from
		for l := layer[a.from] + 1; l < layer[a.to]; l++ {
			v := len(lay)
			lay = append(lay, l)
			segs = append(segs, arc{u, v})
			u = v
		}
		segs = append(segs, arc{u, a.to})
	}
	g := &layered{up: make([][]int, len(lay)), down: make([][]int, len(lay)), order: make([][]int, layers), pos: make([]float64, len(lay))}
	for _, s := range segs {
		g.down[s.from] = append(g.down[s.from], s.to)
		g.up[s.to] = append(g.up[s.to], s.from)
	}
	for v, l := range lay { // real nodes in their given order, then virtual ones
		g.order[l] = append(g.order[l], v)
	}
	for _, ids := range g.order {
		for i, v := range ids {
			g.pos[v] = float64(i)
		}
	}
	return g
}

// crossings counts the pairs of edges that cross between adjacent layers.
func (g *layered) crossings() int {
	c := 0
	for l := 0; l+1 < len(g.order); l++ {
		var es []arc
		for _, u := range g.order[l] {
			for _, v := range g.down[u] {
				es = append(es, arc{u, v})
			}
		}
		for i := range es {
			for j := i + 1; j < len(es); j++ {
				if (g.pos[es[i].from]-g.pos[es[j].from])*(g.pos[es[i].to]-g.pos[es[j].to]) < 0 {
					c++
				}
			}
		}
	}
	return c
}

// orderRows runs the barycentre sweeps, alternately down and up, and
// returns the fewest crossings seen and the order that had them.
func (g *layered) orderRows() (int, [][]int) {
	layers := len(g.order)
	best, bestOrder := g.crossings(), clone(g.order)
	for s := 0; s < sweeps && best > 0; s++ {
		from, to, step, nbrs := 1, layers, 1, g.up
		if s%2 == 1 {
			from, to, step, nbrs = layers-2, -1, -1, g.down
		}
		for l := from; l != to; l += step {
			g.sortByBarycentre(l, nbrs)
		}
		if c := g.crossings(); c < best {
			best, bestOrder = c, clone(g.order)
		}
	}
	return best, bestOrder
}

// sortByBarycentre orders layer l by the mean row of each node's
// neighbours in nbrs; a node without neighbours keeps its row.
func (g *layered) sortByBarycentre(l int, nbrs [][]int) {
	bary := make(map[int]float64, len(g.order[l]))
	for _, v := range g.order[l] {
		if len(nbrs[v]) == 0 {
			bary[v] = g.pos[v]
			continue
		}
		sum := 0.0
		for _, w := range nbrs[v] {
			sum += g.pos[w]
		}
		bary[v] = sum / float64(len(nbrs[v]))
	}
	sort.SliceStable(g.order[l], func(i, j int) bool { return bary[g.order[l][i]] < bary[g.order[l][j]] })
	for i, v := range g.order[l] {
		g.pos[v] = float64(i)
	}
}

func clone(order [][]int) [][]int {
	out := make([][]int, len(order))
	for i, ids := range order {
		out[i] = append([]int(nil), ids...)
	}
	return out
}
