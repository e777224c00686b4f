package policies

import (
	"bytes"
	"fmt"

	"gopkg.in/yaml.v3"

	"github.com/fluxgate/fluxgate/policies/strictyaml"
)

// maxDocumentErrors caps the validation errors reported for one document.
const maxDocumentErrors = 1000

// Document is one object read from a file.
type Document struct {
	Object Object // *Policy or *TrafficPolicy
	File   string
	Line   int // where the document's content starts
	// Source is the document's YAML, re-encoded from its node (comments
	// kept, 2-space indentation). Parsing it again gives an equal object.
	// For an Aperture document it is the translated, native form.
	Source []byte
	// Form is what the document was written in: FormNative or
	// FormAperture.
	Form string
	// Warnings name what an Aperture document holds that FluxGate ignores;
	// they refuse nothing. Each starts with "warning: ".
	Warnings strictyaml.ErrorList
}

// Parse reads every YAML document of a file (separated by ---), skipping
// empty ones, and decodes and validates each as a Policy or TrafficPolicy.
// All problems of all documents are returned together as a
// strictyaml.ErrorList, sorted by position; then the documents are nil.
// A file with no documents is valid: Parse returns nil, nil.
func Parse(file string, data []byte) ([]*Document, error) {
	nodes, syntaxErr := strictyaml.Documents(file, data)
	var errs strictyaml.ErrorList
	if syntaxErr != nil {
		errs = append(errs, syntaxErr)
	}
	var docs []*Document
	first := make(map[Key]int) // key → line of its first document
	for _, n := range nodes {
		doc, derrs := parseDocument(file, n)
		errs = append(errs, derrs...)
		if doc == nil {
			continue
		}
		key := doc.Object.ObjectHeader().Key()
		if line, dup := first[key]; dup {
			at := nodeAt(n, []string{"metadata", "name"})
			errs = append(errs, &strictyaml.Error{File: file, Line: at.Line, Column: at.Column,
				Msg: fmt.Sprintf("duplicate object %s, first defined at line %d", key, line)})
			continue
		}
		first[key] = doc.Line
		docs = append(docs, doc)
	}
	if len(errs) > 0 {
		return nil, errs.Dedup()
	}
	return docs, nil
}

// parseDocument decodes and validates one document node. It returns the
// document when its header is sound enough to identify it, even if there are
// errors, so that duplicates can still be found.
func parseDocument(file string, n *yaml.Node) (*Document, strictyaml.ErrorList) {
	root := deref(n)
	if root.Kind != yaml.MappingNode {
		return nil, strictyaml.ErrorList{{File: file, Line: root.Line, Column: root.Column,
			Msg: "expected a mapping with apiVersion, kind, metadata and spec, got " + strictyaml.Describe(root)}}
	}
	if e := apertureValuesFile(file, root); e != nil {
		return nil, strictyaml.ErrorList{e}
	}
	form := FormNative
	var aperture, warns strictyaml.ErrorList
	var original *yaml.Node
	if isAperture(root) {
		native, errs, w := translateAperture(file, root)
		if native == nil {
			return nil, errs
		}
		form, original, root, n, warns, aperture = FormAperture, root, native, native, w, errs
	}
	var obj interface {
		Object
		validatable
	} = &unknownObject{Header: Header{Metadata: Metadata{Namespace: DefaultNamespace}}}
	if k := mappingValue(root, "kind", 0); k != nil {
		if newObj, ok := objectKinds[deref(k).Value]; ok && deref(k).Kind == yaml.ScalarNode {
			obj = newObj().(interface {
				Object
				validatable
			})
		}
	}
	d := &strictyaml.Decoder{File: file}
	d.Decode(root, obj)
	obj.afterDecode()
	errs := d.Errors()
	if original != nil {
		errs = apertureDecodeErrors(original, errs)
	}

	// Validation errors at a position where decoding already failed are
	// consequences of that failure (a zero value left behind): drop them.
	type pos struct{ line, col int }
	decodeFailed := make(map[pos]bool)
	for _, e := range errs {
		decodeFailed[pos{e.Line, e.Column}] = true
	}
	var v validator
	obj.validate(&v, validateParsed)
	for _, fe := range v.errs {
		if len(errs) >= maxDocumentErrors {
			break
		}
		at := nodeAt(root, fe.Path)
		if decodeFailed[pos{at.Line, at.Column}] {
			continue
		}
		errs = append(errs, &strictyaml.Error{File: file, Line: at.Line, Column: at.Column, Msg: fe.Msg})
	}
	errs = append(errs, aperture...)
	if _, unknown := obj.(*unknownObject); unknown {
		return nil, errs
	}
	doc := &Document{Object: obj, File: file, Line: root.Line, Form: form, Warnings: warns}
	if len(errs) == 0 { // a refused document is never kept: encoding it would cost most of the parse (issue 14)
		doc.Source = encode(n)
	}
	return doc, errs
}

// encode re-encodes a document node. yaml.v3 reports encoder failures by
// panicking in places; those give a nil Source rather than a crash.
func encode(n *yaml.Node) (out []byte) {
	defer func() {
		if recover() != nil {
			out = nil
		}
	}()
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(n); err != nil {
		return nil
	}
	if err := enc.Close(); err != nil {
		return nil
	}
	return buf.Bytes()
}

// apertureValuesFile reports a document that is an Aperture blueprint's
// values file (top-level blueprint and policy, no apiVersion), which
// aperturectl renders into a policy: read as a policy it would only get
// "unknown field" errors for blueprint, uri and policy.
func apertureValuesFile(file string, root *yaml.Node) *strictyaml.Error {
	bp := mappingValue(root, "blueprint", 0)
	if bp == nil || mappingValue(root, "policy", 0) == nil || mappingValue(root, "apiVersion", 0) != nil {
		return nil
	}
	name := deref(bp).Value
	return &strictyaml.Error{File: file, Line: bp.Line, Column: bp.Column, Msg: fmt.Sprintf(
		"this is the values file of Aperture's blueprint %q, not a policy: render it with aperturectl blueprints generate "+
			"and load the Policy it writes (Aperture's format loads as it is), or start from a FluxGate blueprint (fluxgate blueprints list)", name)}
}
