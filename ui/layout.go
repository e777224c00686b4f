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
	index := make(map[string]int, n)
	for i, nd := range nodes {
		index[nd.ID] = i
	}
	type arc struct{ from, to int }
	var arcs []arc
	out := make([][]int, n)
	for _, e := range edges {
		f, okf := index[e.From]
		t, okt := index[e.To]
		if !okf || !okt || f == t {
			continue
		}
		out[f] = append(out[f], t)
		arcs = append(arcs, arc{f, t})
	}

	// Back edges: those that reach a node on the DFS stack.
	state := make([]int, n) // 0 new, 1 on stack, 2 done
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
	for i := range nodes {
		if state[i] == 0 {
			visit(i)
		}
	}
	var fwd []arc
	indeg := make([]int, n)
	succ, pred := make([][]int, n), make([][]int, n)
	for _, a := range arcs {
		if back[a] {
			continue
		}
		fwd = append(fwd, a)
		succ[a.from] = append(succ[a.from], a.to)
		pred[a.to] = append(pred[a.to], a.from)
		indeg[a.to]++
	}

	// Longest path from the sources, in topological order.
	layer := make([]int, n)
	queue := []int{}
	for i := range nodes {
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
	// Sources (constants, variables) sit just before their first reader.
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
	for _, l := range layer {
		layers = max(layers, l+1)
	}

	// Virtual nodes for long edges; ids ≥ n.
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
	up, down := make([][]int, len(lay)), make([][]int, len(lay))
	for _, s := range segs {
		down[s.from] = append(down[s.from], s.to)
		up[s.to] = append(up[s.to], s.from)
	}
	order := make([][]int, layers)
	for v, l := range lay { // real nodes in their given order, then virtual ones
		order[l] = append(order[l], v)
	}
	pos := make([]float64, len(lay))
	place := func() {
		for _, ids := range order {
			for i, v := range ids {
				pos[v] = float64(i)
			}
		}
	}
	count := func() int {
		c := 0
		for l := 0; l+1 < layers; l++ {
			var es []arc
			for _, u := range order[l] {
				for _, v := range down[u] {
					es = append(es, arc{u, v})
				}
			}
			for i := range es {
				for j := i + 1; j < len(es); j++ {
					if (pos[es[i].from]-pos[es[j].from])*(pos[es[i].to]-pos[es[j].to]) < 0 {
						c++
					}
				}
			}
		}
		return c
	}
	place()
	best, bestOrder := count(), clone(order)
	for s := 0; s < sweeps && best > 0; s++ {
		from, to, step, nbrs := 1, layers, 1, up
		if s%2 == 1 {
			from, to, step, nbrs = layers-2, -1, -1, down
		}
		for l := from; l != to; l += step {
			bary := make(map[int]float64, len(order[l]))
			for _, v := range order[l] {
				if len(nbrs[v]) == 0 {
					bary[v] = pos[v]
					continue
				}
				sum := 0.0
				for _, w := range nbrs[v] {
					sum += pos[w]
				}
				bary[v] = sum / float64(len(nbrs[v]))
			}
			sort.SliceStable(order[l], func(i, j int) bool { return bary[order[l][i]] < bary[order[l][j]] })
			for i, v := range order[l] {
				pos[v] = float64(i)
			}
		}
		if c := count(); c < best {
			best, bestOrder = c, clone(order)
		}
	}
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

func clone(order [][]int) [][]int {
	out := make([][]int, len(order))
	for i, ids := range order {
		out[i] = append([]int(nil), ids...)
	}
	return out
}
