package policies

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/fluxgate/fluxgate/policies/strictyaml"
)

// ApertureAPIVersion is the apiVersion of FluxNinja Aperture's policies
// (and of its operator's Policy custom resource). Parse reads such a
// document in Aperture's policy language and translates it into a native
// Policy: see translateAperture.
const ApertureAPIVersion = "fluxninja.com/v1alpha1"

// Forms a document can be read from.
const (
	FormNative   = "native"   // apiVersion fluxgate.io/v1beta1
	FormAperture = "aperture" // apiVersion fluxninja.com/v1alpha1, translated
)

// maxApertureNodes bounds the nodes of an Aperture document once its
// aliases are expanded for translation.
const maxApertureNodes = 200_000

// apertureTranslator turns one Aperture Policy document into the node tree
// of the equivalent native Policy. It works on a copy of the document's
// nodes, so every value the user wrote keeps its position: the native
// decoder's errors point into the Aperture file. Components it generates
// carry the position of the Aperture component they come from.
type apertureTranslator struct {
	file   string
	errs   strictyaml.ErrorList
	warns  strictyaml.ErrorList
	policy string // metadata.name, for generated queries
	nodes  int
	// out collects the translated top-level components, so that generated
	// queries can name an actuator's final index.
	out []*yaml.Node
}

func (t *apertureTranslator) unsupported(at *yaml.Node, construct string) {
	t.errs = append(t.errs, &strictyaml.Error{File: t.file, Line: at.Line, Column: at.Column,
		Msg: fmt.Sprintf("Aperture construct %s is not supported yet", construct)})
}

func (t *apertureTranslator) warn(at *yaml.Node, format string, args ...any) {
	t.warns = append(t.warns, &strictyaml.Error{File: t.file, Line: at.Line, Column: at.Column,
		Msg: "warning: " + fmt.Sprintf(format, args...)})
}

func (t *apertureTranslator) errorf(at *yaml.Node, format string, args ...any) {
	t.errs = append(t.errs, &strictyaml.Error{File: t.file, Line: at.Line, Column: at.Column,
		Msg: fmt.Sprintf(format, args...)})
}

// isAperture reports whether a document root declares Aperture's apiVersion.
func isAperture(root *yaml.Node) bool {
	if root.Kind != yaml.MappingNode {
		return false
	}
	v := mappingValue(root, "apiVersion", 0)
	return v != nil && deref(v).Kind == yaml.ScalarNode && deref(v).Value == ApertureAPIVersion
}

// translateAperture returns the native form of an Aperture document root.
// Errors are constructs it cannot translate; warnings name what it drops.
func translateAperture(file string, root *yaml.Node) (*yaml.Node, strictyaml.ErrorList, strictyaml.ErrorList) {
	t := &apertureTranslator{file: file}
	root = t.clone(root)
	if t.nodes > maxApertureNodes {
		return nil, strictyaml.ErrorList{{File: file, Line: root.Line, Column: root.Column,
			Msg: fmt.Sprintf("document too large: more than %d nodes once aliases are expanded", maxApertureNodes)}}, nil
	}
	t.serviceSelectors(root, map[string]bool{})
	if name := mappingValue(root, "metadata", 0); name != nil {
		if n := mappingValue(name, "name", 0); n != nil {
			t.policy = n.Value
		}
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		switch k.Value {
		case "apiVersion":
			root.Content[i+1] = scalarAt(v, "!!str", APIVersion)
		case "kind":
			if v.Kind != yaml.ScalarNode || v.Value != KindPolicy {
				t.unsupported(v, fmt.Sprintf("kind %q (only Policy)", v.Value))
				return nil, t.errs, nil
			}
		case "spec":
			t.spec(v)
		case "status":
			// The operator's custom resource status: not policy content.
			root.Content = append(root.Content[:i], root.Content[i+2:]...)
			i -= 2
		}
	}
	return root, t.errs, t.warns
}

// serviceSelectors warns once per service name that selectors under n
// name: Aperture's agents find a flow's service by Kubernetes service
// discovery, FluxGate matches the flow label service, which the caller
// must set, so such a selector matches nothing until it does.
func (t *apertureTranslator) serviceSelectors(n *yaml.Node, seen map[string]bool) {
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if k, v := n.Content[i], n.Content[i+1]; k.Value == "selectors" && v.Kind == yaml.SequenceNode {
				for _, sel := range v.Content {
					svc := mappingValue(sel, "service", 0)
					if svc == nil || svc.Kind != yaml.ScalarNode || svc.Value == "" || svc.Value == "any" || seen[svc.Value] {
						continue
					}
					seen[svc.Value] = true
					t.warn(svc, "Aperture selector service %q matches only flows labelled service=%s: FluxGate discovers no services, so callers must set that label (in the check's labels or W3C baggage; for flux meters, a span attribute)", svc.Value, svc.Value)
				}
			}
		}
	}
	for _, c := range n.Content {
		t.serviceSelectors(c, seen)
	}
}

// clone deep-copies a node tree, expanding aliases and dropping anchors,
// so that the translation can edit it freely and encode it without
// aliases.
func (t *apertureTranslator) clone(n *yaml.Node) *yaml.Node {
	t.nodes++
	if t.nodes > maxApertureNodes {
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: n.Line, Column: n.Column}
	}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		c := t.clone(n.Alias)
		c.Line, c.Column = n.Line, n.Column
		return c
	}
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		return t.clone(n.Content[0])
	}
	c := *n
	c.Anchor = ""
	c.Content = make([]*yaml.Node, len(n.Content))
	for i, m := range n.Content {
		c.Content[i] = t.clone(m)
	}
	return &c
}

// spec translates spec: resources.flow_control moves up into resources,
// infra_meters is dropped with a warning, and each circuit component is
// translated.
func (t *apertureTranslator) spec(spec *yaml.Node) {
	if spec.Kind != yaml.MappingNode {
		return // the native decoder reports it
	}
	if res := mappingValue(spec, "resources", 0); res != nil && res.Kind == yaml.MappingNode {
		var content []*yaml.Node
		for i := 0; i+1 < len(res.Content); i += 2 {
			k, v := res.Content[i], res.Content[i+1]
			switch k.Value {
			case "flow_control":
				if v.Kind == yaml.MappingNode {
					content = append(content, v.Content...)
					continue
				}
			case "infra_meters":
				if v.Kind == yaml.MappingNode && len(v.Content) > 0 {
					var names []string
					for j := 0; j < len(v.Content); j += 2 {
						names = append(names, v.Content[j].Value)
					}
					t.warn(k, "Aperture construct resources.infra_meters is ignored (%s): FluxGate runs no OpenTelemetry collector; queries over their metrics find nothing unless another exporter provides them", strings.Join(names, ", "))
				}
				continue
			}
			content = append(content, k, v)
		}
		res.Content = content
		if cls := mappingValue(res, "classifiers", 0); cls != nil && cls.Kind == yaml.SequenceNode {
			for _, c := range cls.Content {
				// Aperture's Rego modules are written in OPA's v0 syntax.
				if r := mappingValue(c, "rego", 0); r != nil && r.Kind == yaml.MappingNode && mappingValue(r, "rego_version", 0) == nil {
					r.Content = append(r.Content, strNode(r, "rego_version"), strNode(r, "v0"))
				}
			}
		}
	}
	circ := mappingValue(spec, "circuit", 0)
	if circ == nil || circ.Kind != yaml.MappingNode {
		return
	}
	comps := mappingValue(circ, "components", 0)
	if comps == nil || comps.Kind != yaml.SequenceNode {
		return
	}
	t.out = nil
	for _, c := range comps.Content {
		t.component(c, true)
	}
	comps.Content = t.out
}

// componentKind splits a component list item into its kind ("decider",
// "flow_control.rate_limiter"), the node of the kind's last key, and its
// spec. ok is false for an item that is not a one-key mapping (the native
// decoder reports it).
func componentKind(c *yaml.Node) (kind string, key, spec *yaml.Node, ok bool) {
	if c.Kind != yaml.MappingNode || len(c.Content) != 2 {
		return "", nil, nil, false
	}
	key, spec = c.Content[0], c.Content[1]
	kind = key.Value
	switch kind {
	case "flow_control", "auto_scale", "query":
		if spec.Kind != yaml.MappingNode || len(spec.Content) != 2 {
			return kind, key, spec, true
		}
		key, spec = spec.Content[0], spec.Content[1]
		kind += "." + key.Value
	}
	return kind, key, spec, true
}

// apertureUnsupported are Aperture component kinds FluxGate does not have.
var apertureUnsupported = map[string]bool{
	"flow_control.range_driven_load_scheduler": true,
	"flow_control.adaptive_load_scheduler":     true,
	"flow_control.private":                     true,
	"load_ramp_series":                         true,
	"signal_generator_series":                  true,
	"private":                                  true,
}

// emit appends a translated component. Top-level components go to t.out;
// nested ones to the list being built.
type emitter func(*yaml.Node)

// component translates one component list item. top says whether it is in
// the policy's own list (flow-control components are refused inside
// nested circuits anyway).
func (t *apertureTranslator) component(c *yaml.Node, top bool) {
	t.componentTo(c, func(n *yaml.Node) { t.out = append(t.out, n) }, top)
}

func (t *apertureTranslator) componentTo(c *yaml.Node, emit emitter, top bool) {
	kind, key, spec, ok := componentKind(c)
	if !ok {
		emit(c)
		return
	}
	switch {
	case apertureUnsupported[kind]:
		t.unsupported(key, kind)
		return
	case strings.HasPrefix(kind, "auto_scale."):
		t.warn(key, "Aperture construct %s is ignored: FluxGate does not scale workloads; the component is dropped and its out ports are not produced", kind)
		return
	case kind == "flow_control.aimd_load_scheduler", kind == "flow_control.aiad_load_scheduler":
		t.loadMultiplierScheduler(kind, key, spec, emit)
		return
	case kind == "flow_control.rate_limiter":
		t.rateLimiter(key, spec, emit, top)
		return
	case kind == "flow_control.quota_scheduler":
		t.quotaScheduler(key, spec, emit, top)
		return
	case kind == "flow_control.concurrency_limiter", kind == "flow_control.concurrency_scheduler":
		t.concurrencyLimiter(kind, key, spec, emit, top)
		return
	case kind == "flow_control.sampler":
		t.sampler(key, spec, emit, top)
		return
	case kind == "flow_control.load_ramp":
		t.loadRamp(key, spec, emit)
		return
	case kind == "flow_control.load_scheduler":
		ls := t.loadScheduler(key, spec)
		t.moveDryRun(spec, ls)
		if outs := mappingValue(spec, "out_ports", 0); outs != nil {
			t.unsupported(outs, "flow_control.load_scheduler.out_ports (observed_load_multiplier)")
		}
		if ins := mappingValue(spec, "in_ports", 0); ins != nil {
			ls.Content = append(ls.Content, strNode(key, "in_ports"), ins)
		}
		emit(component(c, "flow_control", "load_scheduler", ls))
		return
	case kind == "or" || kind == "and":
		t.logicInputs(kind, spec)
	case kind == "nested_circuit":
		if inner := mappingValue(spec, "components", 0); inner != nil && inner.Kind == yaml.SequenceNode {
			var out []*yaml.Node
			for _, ic := range inner.Content {
				t.componentTo(ic, func(n *yaml.Node) { out = append(out, n) }, false)
			}
			inner.Content = out
		}
	}
	emit(c)
}

// logicInputs gives an or (and) with no inputs the one constant input that
// yields Aperture's answer for an empty list: false (true).
func (t *apertureTranslator) logicInputs(kind string, spec *yaml.Node) {
	if spec.Kind != yaml.MappingNode {
		return
	}
	ins := mappingValue(spec, "in_ports", 0)
	var inputs *yaml.Node
	if ins != nil {
		inputs = mappingValue(ins, "inputs", 0)
	}
	if inputs != nil && !(inputs.Kind == yaml.SequenceNode && len(inputs.Content) == 0) && !strictyaml.IsNull(inputs) {
		return
	}
	v := 0.0
	if kind == "and" {
		v = 1
	}
	one := seqAt(spec, mapAt(spec, "constant_signal", mapAt(spec, "value", floatNode(spec, v))))
	switch {
	case ins == nil || strictyaml.IsNull(ins):
		setKey(spec, "in_ports", mapAt(spec, "inputs", one))
	case ins.Kind == yaml.MappingNode:
		setKey(ins, "inputs", one)
	}
}

// --- node helpers ---

func scalarAt(at *yaml.Node, tag, v string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: v, Line: at.Line, Column: at.Column}
}

func strNode(at *yaml.Node, v string) *yaml.Node { return scalarAt(at, "!!str", v) }

// floatNode is a float scalar written so that it reads back as a float
// without an explicit tag (1.0, not 1).
func floatNode(at *yaml.Node, f float64) *yaml.Node {
	v := strconv.FormatFloat(f, 'g', -1, 64)
	if !strings.ContainsAny(v, ".eIN") {
		v += ".0"
	}
	return scalarAt(at, "!!float", v)
}

// mapAt builds a mapping from alternating keys (strings) and values (nodes).
func mapAt(at *yaml.Node, kv ...any) *yaml.Node {
	m := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: at.Line, Column: at.Column}
	for i := 0; i+1 < len(kv); i += 2 {
		v := kv[i+1].(*yaml.Node)
		if v == nil {
			continue
		}
		m.Content = append(m.Content, strNode(at, kv[i].(string)), v)
	}
	return m
}

func seqAt(at *yaml.Node, items ...*yaml.Node) *yaml.Node {
	return &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Line: at.Line, Column: at.Column, Content: items}
}

// setKey sets key in mapping m, replacing its value if present.
func setKey(m *yaml.Node, key string, v *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content[i+1] = v
			return
		}
	}
	m.Content = append(m.Content, strNode(m, key), v)
}

// takeKey removes key from mapping m and returns its key and value nodes,
// or nils.
func takeKey(m *yaml.Node, key string) (k, v *yaml.Node) {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil, nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			k, v = m.Content[i], m.Content[i+1]
			m.Content = append(m.Content[:i:i], m.Content[i+2:]...)
			return k, v
		}
	}
	return nil, nil
}

// component wraps a spec as a component list item, nested for a group.
func component(at *yaml.Node, group, kind string, spec *yaml.Node) *yaml.Node {
	if group == "" {
		return mapAt(at, kind, spec)
	}
	return mapAt(at, group, mapAt(at, kind, spec))
}

// unknownFieldRE matches the decoder's report of a key no Go field takes.
var unknownFieldRE = regexp.MustCompile(`^unknown field "([^"]*)" in [^;]*(?:; valid fields: (.*))?$`)

// apertureDecodeErrors rewrites the native decoder's reports of unknown
// fields, which name Go types, into "Aperture construct PATH is not
// supported yet", PATH being the field's path in the Aperture document from
// its component kind (or from spec). A field one or two letters from one
// FluxGate reads there is a typo, not a construct: it is reported as an
// unknown field with the name meant.
func apertureDecodeErrors(original *yaml.Node, errs strictyaml.ErrorList) strictyaml.ErrorList {
	for i, e := range errs {
		m := unknownFieldRE.FindStringSubmatch(e.Msg)
		if m == nil {
			continue
		}
		path := keyPath(original, e.Line, e.Column, nil)
		if path == nil {
			path = []string{m[1]}
		}
		c := *e
		c.Msg = fmt.Sprintf("Aperture construct %s is not supported yet", strings.Join(path, "."))
		if near := nearestField(m[1], strings.Split(m[2], ", ")); near != "" {
			c.Msg = fmt.Sprintf("unknown field %q in %s; did you mean %q?", m[1], strings.Join(path[:len(path)-1], "."), near)
			if len(path) == 1 {
				c.Msg = fmt.Sprintf("unknown field %q; did you mean %q?", m[1], near)
			}
		}
		errs[i] = &c
	}
	return errs
}

// keyPath returns the path to the mapping key at line:col under n, starting
// after the last component list index, or nil.
func keyPath(n *yaml.Node, line, col int, path []string) []string {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			p := append(path[:len(path):len(path)], k.Value)
			if k.Line == line && k.Column == col {
				return p
			}
			if r := keyPath(n.Content[i+1], line, col, p); r != nil {
				return r
			}
		}
	case yaml.SequenceNode:
		for _, c := range n.Content {
			sub := path
			if len(path) > 0 && path[len(path)-1] == "components" {
				sub = nil // restart at the component's kind
			}
			if r := keyPath(c, line, col, sub); r != nil {
				return r
			}
		}
	}
	return nil
}

// nearestField is the one of fields at most two edits (and a third of
// name's length) from name and closer than any other, or "".
func nearestField(name string, fields []string) string {
	best, bestD := "", 3
	for _, f := range fields {
		d := editDistance(name, f)
		if 3*d > len(name) { // too far for a short name: "burst" is not "bust"'s typo
			continue
		}
		if d < bestD {
			best, bestD = f, d
		} else if d == bestD {
			best = "" // two as near: no guess
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b (bytes).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
