package policies

import (
	"regexp"
	"slices"
	"strings"
)

// APIVersion is the only apiVersion this package accepts.
const APIVersion = "fluxgate.io/v1beta1"

// DefaultNamespace is the namespace of objects that do not name one.
const DefaultNamespace = "default"

// Kinds of objects.
const (
	KindPolicy        = "Policy"
	KindTrafficPolicy = "TrafficPolicy"
)

// objectKinds maps a kind to a constructor for its object, pre-filled with
// defaults.
var objectKinds = map[string]func() Object{
	KindPolicy:        func() Object { return newPolicy() },
	KindTrafficPolicy: func() Object { return newTrafficPolicy() },
}

func objectKindNames() string {
	names := make([]string, 0, len(objectKinds))
	for k := range objectKinds {
		names = append(names, k)
	}
	slices.Sort(names)
	return strings.Join(names, " or ")
}

// Object is a top-level policy document: *Policy or *TrafficPolicy.
type Object interface {
	ObjectHeader() *Header
}

// Header is the part common to every object.
type Header struct {
	APIVersion string   `yaml:"apiVersion"`
	Kind       string   `yaml:"kind"`
	Metadata   Metadata `yaml:"metadata"`
}

// Metadata names an object.
type Metadata struct {
	Name      string            `yaml:"name" required:"true"`
	Namespace string            `yaml:"namespace,omitempty"` // default "default"
	Labels    map[string]string `yaml:"labels,omitempty"`
}

// Key identifies an object among all loaded objects.
type Key struct{ Namespace, Name string }

// String returns "namespace/name".
func (k Key) String() string { return k.Namespace + "/" + k.Name }

// ObjectHeader returns h, so that types embedding Header implement Object.
func (h *Header) ObjectHeader() *Header { return h }

// Key returns the object's namespace and name.
func (h *Header) Key() Key { return Key{Namespace: h.Metadata.Namespace, Name: h.Metadata.Name} }

// setDefaults fills the zero fields of h with defaults.
func (h *Header) setDefaults(kind string) {
	if h.APIVersion == "" {
		h.APIVersion = APIVersion
	}
	if h.Kind == "" {
		h.Kind = kind
	}
	if h.Metadata.Namespace == "" {
		h.Metadata.Namespace = DefaultNamespace
	}
}

// nameRE is what names and namespaces may look like: they become URL path
// segments and file names.
var nameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`)

const maxNameLen = 253

func checkName(v *validator, p fieldPath, what, s string) {
	if len(s) > maxNameLen || !nameRE.MatchString(s) {
		v.add(p, "invalid %s %q: must be lowercase letters, digits, '-' and '.', start and end with a letter or digit, at most %d characters", what, s, maxNameLen)
	}
}

// validate checks the header. wantKind is the kind of the Go type holding
// it, or "" when the kind is not known (then any object kind is accepted).
func (h *Header) validate(v *validator, wantKind string) {
	switch {
	case h.APIVersion == "":
		v.add(fieldPath{"apiVersion"}, `missing required field "apiVersion"`)
	case h.APIVersion != APIVersion:
		v.add(fieldPath{"apiVersion"}, "unsupported apiVersion %q; want %s", h.APIVersion, APIVersion)
	}
	_, known := objectKinds[h.Kind]
	switch {
	case h.Kind == "":
		v.add(fieldPath{"kind"}, `missing required field "kind"`)
	case !known:
		v.add(fieldPath{"kind"}, "unsupported kind %q; want %s", h.Kind, objectKindNames())
	case wantKind != "" && h.Kind != wantKind:
		v.add(fieldPath{"kind"}, "kind %q does not match Go type %s", h.Kind, wantKind)
	}
	m := fieldPath{"metadata"}
	if h.Metadata.Name == "" {
		v.missing(m, "name")
	} else {
		checkName(v, m.key("name"), "name", h.Metadata.Name)
	}
	checkName(v, m.key("namespace"), "namespace", h.Metadata.Namespace)
	for k := range h.Metadata.Labels {
		if k == "" {
			v.add(m.key("labels"), "label names must not be empty")
		}
	}
}

// unknownObject holds a document whose kind is not known, so that its
// header can still be checked.
type unknownObject struct {
	Header `yaml:",inline"`
	Spec   any `yaml:"spec"`
}

func (o *unknownObject) validate(v *validator, _ validateMode) { o.Header.validate(v, "") }
func (o *unknownObject) afterDecode()                          {}

// validatable is implemented by every object.
type validatable interface {
	// afterDecode fills defaults the decoder could not pre-fill.
	afterDecode()
	validate(v *validator, mode validateMode)
}
