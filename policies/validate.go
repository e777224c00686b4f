package policies

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/fluxgate/fluxgate/policies/strictyaml"
)

// FieldError is a validation problem in one field of an object.
type FieldError struct {
	// Path locates the field from the object's root: mapping keys, and
	// sequence indexes written "[i]", for example
	// ["spec", "circuit", "components", "[2]"].
	Path []string
	Msg  string
}

// Error returns "path: msg", such as "spec.rateLimit.burstSize: ...".
func (e *FieldError) Error() string {
	if len(e.Path) == 0 {
		return e.Msg
	}
	return fieldPath(e.Path).String() + ": " + e.Msg
}

// fieldPath is a FieldError path under construction.
type fieldPath []string

// String is the path as a user writes it: "spec.circuit.components[2]".
func (p fieldPath) String() string {
	var b strings.Builder
	for i, s := range p {
		if i > 0 && !strings.HasPrefix(s, "[") {
			b.WriteByte('.')
		}
		b.WriteString(s)
	}
	return b.String()
}

func (p fieldPath) key(k string) fieldPath { return append(p[:len(p):len(p)], k) }

func (p fieldPath) index(i int) fieldPath {
	return append(p[:len(p):len(p)], "["+strconv.Itoa(i)+"]")
}

// validateMode says how much to check.
type validateMode int

const (
	// validateAll checks everything: for objects built in Go.
	validateAll validateMode = iota
	// validateParsed skips what the decoder already checked while decoding
	// (component kinds and specs).
	validateParsed
)

type validator struct {
	errs []*FieldError // at most maxValidatorErrors
}

// maxValidatorErrors bounds what one validation keeps: twice what a
// document reports (parseDocument drops those where decoding already
// failed), so that a body of a million bad fields costs no more to
// refuse than a thousand (issue 14).
const maxValidatorErrors = 2 * maxDocumentErrors

func (v *validator) add(p fieldPath, format string, args ...any) {
	if len(v.errs) >= maxValidatorErrors {
		return
	}
	v.errs = append(v.errs, &FieldError{Path: p, Msg: fmt.Sprintf(format, args...)})
}

// missing reports an absent required field with the decoder's wording, so
// that the two reports of one problem collapse into one.
func (v *validator) missing(parent fieldPath, field string) {
	in := parent.String()
	if in == "" {
		in = "the document"
	}
	v.add(parent.key(field), "missing required field %q in %s", field, in)
}

func (v *validator) err() error {
	if len(v.errs) == 0 {
		return nil
	}
	errs := make([]error, len(v.errs))
	for i, e := range v.errs {
		errs[i] = e
	}
	return errors.Join(errs...)
}

// nodeAt returns the node that best locates path under root: the value at
// the path, or the deepest mapping or sequence on the way to it when the
// rest is absent (or a null mapping value).
func nodeAt(root *yaml.Node, path []string) *yaml.Node {
	n := deref(root)
	for _, seg := range path {
		var next *yaml.Node
		switch n.Kind {
		case yaml.MappingNode:
			next = mappingValue(n, seg, 0)
		case yaml.SequenceNode:
			if i, err := strconv.Atoi(strings.Trim(seg, "[]")); err == nil && i >= 0 && i < len(n.Content) {
				next = n.Content[i]
			}
		}
		if next == nil {
			return n
		}
		next = deref(next)
		if strictyaml.IsNull(next) && n.Kind == yaml.MappingNode {
			return n // a null value counts as absent, as for the decoder
		}
		n = next
	}
	return n
}

func deref(n *yaml.Node) *yaml.Node {
	for i := 0; i < 100 && n.Kind == yaml.AliasNode && n.Alias != nil; i++ {
		n = n.Alias
	}
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		return deref(n.Content[0])
	}
	return n
}

// mappingValue returns the value of key in mapping n, looking through
// merge keys.
func mappingValue(n *yaml.Node, key string, depth int) *yaml.Node {
	if depth > 4 {
		return nil
	}
	var merged []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := deref(n.Content[i])
		if k.Kind != yaml.ScalarNode {
			continue
		}
		if k.ShortTag() == "!!merge" {
			merged = append(merged, n.Content[i+1])
			continue
		}
		if k.Value == key {
			return n.Content[i+1]
		}
	}
	for _, m := range merged {
		m = deref(m)
		srcs := []*yaml.Node{m}
		if m.Kind == yaml.SequenceNode {
			srcs = m.Content
		}
		for _, s := range srcs {
			if s = deref(s); s.Kind == yaml.MappingNode {
				if val := mappingValue(s, key, depth+1); val != nil {
					return val
				}
			}
		}
	}
	return nil
}
