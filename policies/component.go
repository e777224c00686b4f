package policies

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"

	"github.com/fluxgate/fluxgate/policies/strictyaml"
)

// Component is one item of a circuit's component list: its kind, such as
// "ema" or "flow_control.rate_limiter", and its spec, the value returned by
// the kind's registered constructor, decoded.
//
// In YAML an item is a mapping with one key, the kind; a kind with a dot is
// written nested one level: {flow_control: {rate_limiter: SPEC}}.
type Component struct {
	Kind         string
	Spec         any
	Line, Column int // position in the file; 0 when not parsed
}

var (
	registryMu sync.RWMutex
	registry   = map[string]func() any{} // guarded by registryMu
	groups     = map[string]bool{}       // first parts of dotted kinds; guarded by registryMu
)

// RegisterComponent makes a component kind known to the parser. newSpec
// returns a pointer to a new spec, holding the kind's defaults; if the spec
// has a method Validate() []error it is called after decoding. A kind is
// snake_case, with at most one dot.
//
// RegisterComponent is meant for init functions and panics on a programmer
// error: an empty, malformed or duplicate kind, or a bad newSpec.
func RegisterComponent(kind string, newSpec func() any) {
	group, name, dotted := strings.Cut(kind, ".")
	if kind == "" || strings.Count(kind, ".") > 1 || (dotted && (group == "" || name == "")) {
		panic(fmt.Sprintf("policies: RegisterComponent: malformed kind %q", kind))
	}
	if newSpec == nil {
		panic(fmt.Sprintf("policies: RegisterComponent(%q): nil newSpec", kind))
	}
	if s := newSpec(); s == nil || reflect.TypeOf(s).Kind() != reflect.Pointer || reflect.ValueOf(s).IsNil() {
		panic(fmt.Sprintf("policies: RegisterComponent(%q): newSpec must return a non-nil pointer, got %T", kind, s))
	}
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, dup := registry[kind]; dup {
		panic(fmt.Sprintf("policies: RegisterComponent: kind %q registered twice", kind))
	}
	if dotted && registry[group] != nil {
		panic(fmt.Sprintf("policies: RegisterComponent(%q): %q is a kind, it cannot also be a group", kind, group))
	}
	if !dotted && groups[kind] {
		panic(fmt.Sprintf("policies: RegisterComponent(%q): already a group of dotted kinds", kind))
	}
	registry[kind] = newSpec
	if dotted {
		groups[group] = true
	}
}

// ComponentKinds returns the registered kinds, sorted.
func ComponentKinds() []string {
	registryMu.RLock()
	defer registryMu.RUnlock()
	kinds := make([]string, 0, len(registry))
	for k := range registry {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	return kinds
}

func lookupKind(kind string) (newSpec func() any, isGroup bool) {
	registryMu.RLock()
	defer registryMu.RUnlock()
	return registry[kind], groups[kind]
}

func unknownKindMsg(kind string) string {
	kinds := ComponentKinds()
	if len(kinds) == 0 {
		return fmt.Sprintf("unknown component kind %q (no component kinds are registered)", kind)
	}
	return fmt.Sprintf("unknown component kind %q; registered kinds: %s", kind, strings.Join(kinds, ", "))
}

// specValidator is implemented by component specs that check themselves.
type specValidator interface {
	Validate() []error
}

// UnmarshalStrictYAML decodes a component list item: it finds the kind,
// decodes the spec strictly into a new spec of that kind and validates it.
func (c *Component) UnmarshalStrictYAML(d *strictyaml.Decoder, n *yaml.Node) {
	c.Line, c.Column = n.Line, n.Column
	key, specNode, ok := singleKey(d, n, "a component")
	if !ok {
		return
	}
	kind := key.Value
	newSpec, isGroup := lookupKind(kind)
	switch {
	case isGroup:
		var inner *yaml.Node
		if inner, specNode, ok = singleKey(d, specNode, kind); !ok {
			return
		}
		key, kind = inner, kind+"."+inner.Value
		newSpec, _ = lookupKind(kind)
	case newSpec != nil && strings.Contains(kind, "."):
		group, name, _ := strings.Cut(kind, ".")
		d.Errorf(key, "component kind %q must be written nested: %s: {%s: ...}", kind, group, name)
		return
	}
	if newSpec == nil {
		d.Errorf(key, "%s", unknownKindMsg(kind))
		return
	}
	c.Kind = kind
	c.Spec = newSpec()
	before := d.ErrorCount()
	d.DecodeAt(kind, specNode, c.Spec)
	if d.ErrorCount() > before {
		return // validating a half-decoded spec would only add noise
	}
	if sv, ok := c.Spec.(specValidator); ok {
		for _, err := range sv.Validate() {
			d.Errorf(n, "%s: %v", kind, err)
		}
	}
}

// singleKey returns the key and value of n, which must be a mapping with
// exactly one scalar key.
func singleKey(d *strictyaml.Decoder, n *yaml.Node, what string) (key, value *yaml.Node, ok bool) {
	for i := 0; i < 100 && n.Kind == yaml.AliasNode && n.Alias != nil; i++ {
		n = n.Alias
	}
	if n.Kind != yaml.MappingNode {
		d.Errorf(n, "expected %s to be a mapping with one key, the component kind; got %s", what, strictyaml.Describe(n))
		return nil, nil, false
	}
	if len(n.Content) != 2 {
		var keys []string
		for i := 0; i+1 < len(n.Content); i += 2 {
			keys = append(keys, n.Content[i].Value)
		}
		d.Errorf(n, "%s must have exactly one key, the component kind; got %d: %s", what, len(keys), strings.Join(keys, ", "))
		return nil, nil, false
	}
	key = n.Content[0]
	if key.Kind != yaml.ScalarNode || key.ShortTag() != "!!str" {
		d.Errorf(key, "expected a component kind, got %s", strictyaml.Describe(key))
		return nil, nil, false
	}
	return key, n.Content[1], true
}

// MarshalYAML writes the component in its YAML shape, nested for dotted
// kinds.
func (c Component) MarshalYAML() (any, error) {
	if group, name, dotted := strings.Cut(c.Kind, "."); dotted {
		return map[string]any{group: map[string]any{name: c.Spec}}, nil
	}
	return map[string]any{c.Kind: c.Spec}, nil
}

// validate checks a component built in Go.
func (c *Component) validate(v *validator, p fieldPath) {
	newSpec, _ := lookupKind(c.Kind)
	if newSpec == nil {
		v.add(p, "%s", unknownKindMsg(c.Kind))
		return
	}
	if c.Spec == nil {
		v.add(p, "%s: spec must not be nil", c.Kind)
		return
	}
	if want, got := reflect.TypeOf(newSpec()), reflect.TypeOf(c.Spec); want != got {
		v.add(p, "%s: spec has type %s, want %s", c.Kind, got, want)
		return
	}
	if sv, ok := c.Spec.(specValidator); ok {
		for _, err := range sv.Validate() {
			v.add(p, "%s: %v", c.Kind, err)
		}
	}
}
