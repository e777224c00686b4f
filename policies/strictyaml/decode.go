package strictyaml

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"
)

// Limits that keep hostile input cheap.
const (
	// maxDepth is the deepest nesting of collections decoded.
	maxDepth = 1000
	// maxExpanded caps the nodes decoded through aliases and merge keys,
	// which is where "billion laughs" documents multiply their size.
	maxExpanded = 1_000_000
	// maxErrors is the number of errors collected before giving up.
	maxErrors = 1000
)

// Unmarshaler is implemented by types that decode themselves. The method is
// called on a pointer with the node (aliases already resolved) and reports
// problems through d.Errorf; it may call d.Decode for its parts.
type Unmarshaler interface {
	UnmarshalStrictYAML(d *Decoder, n *yaml.Node)
}

// Decoder decodes nodes and collects the errors found. The zero value is
// ready to use; set File to have it appear in errors.
type Decoder struct {
	File string

	errs     ErrorList
	depth    int
	inAlias  int                // > 0 while decoding the target of an alias
	expanded int                // nodes decoded while inAlias > 0
	active   map[*yaml.Node]int // alias targets being decoded, to catch cycles
	stopped  bool               // a limit was hit: decode nothing more
	path     []string           // keys and "[i]" down to the value being decoded, for messages
}

// where names the mapping being decoded in the document's own words, its
// path of keys ("spec.circuit.components[2]"), for messages.
func (d *Decoder) where() string {
	if len(d.path) == 0 {
		return "the document"
	}
	var b strings.Builder
	for i, p := range d.path {
		if i > 0 && !strings.HasPrefix(p, "[") {
			b.WriteByte('.')
		}
		b.WriteString(p)
	}
	return b.String()
}

// DecodeAt is Decode for a value that sits at key under the value being
// decoded (a dotted key for nested mappings), as an Unmarshaler that
// decodes a child node itself says, so that messages name its path.
func (d *Decoder) DecodeAt(key string, n *yaml.Node, v any) {
	d.path = append(d.path, key)
	d.Decode(n, v)
	d.path = d.path[:len(d.path)-1]
}

// Errors returns the errors collected so far, sorted by position.
func (d *Decoder) Errors() ErrorList {
	d.errs.Sort()
	return d.errs
}

// ErrorCount returns the number of errors collected so far.
func (d *Decoder) ErrorCount() int { return len(d.errs) }

// Err returns the collected errors as an ErrorList, or nil if there are none.
func (d *Decoder) Err() error { return d.Errors().Err() }

// Errorf adds an error positioned at n (no position when n is nil).
func (d *Decoder) Errorf(n *yaml.Node, format string, args ...any) {
	if d.stopped {
		return
	}
	line, col := 0, 0
	if n != nil {
		line, col = n.Line, n.Column
	}
	if len(d.errs) == maxErrors {
		d.errs = append(d.errs, errorf(d.File, line, col, "too many errors; stopped after %d", maxErrors))
		d.stopped = true
		return
	}
	d.errs = append(d.errs, errorf(d.File, line, col, format, args...))
}

// Unmarshal decodes the single YAML document in data into v, which must be
// a non-nil pointer. Empty input (no document) leaves v unchanged. The
// error, if any, is an ErrorList.
func Unmarshal(file string, data []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := safeParse(dec, &doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		return ErrorList{syntaxError(file, err)}
	}
	var extra yaml.Node
	switch err := safeParse(dec, &extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return ErrorList{syntaxError(file, err)}
	case !isEmptyDocument(&extra):
		return ErrorList{errorf(file, extra.Line, extra.Column, "expected a single YAML document, found another")}
	}
	return Decode(file, &doc, v)
}

// Decode decodes n into v, which must be a non-nil pointer. The error, if
// any, is an ErrorList.
func Decode(file string, n *yaml.Node, v any) error {
	d := &Decoder{File: file}
	d.Decode(n, v)
	return d.Err()
}

// safeParse runs the yaml.v3 parser, turning a panic into an error.
func safeParse(dec *yaml.Decoder, n *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: %v", r)
		}
	}()
	return dec.Decode(n)
}

func isEmptyDocument(n *yaml.Node) bool {
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return true
		}
		n = n.Content[0]
	}
	return n.Kind == 0 || isNull(n)
}

// Decode decodes n into v, which must be a non-nil pointer, adding every
// problem found to d's error list.
func (d *Decoder) Decode(n *yaml.Node, v any) {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		d.Errorf(n, "strictyaml: Decode needs a non-nil pointer, got %T", v)
		return
	}
	if n == nil {
		return
	}
	d.decode(n, rv.Elem())
}

var (
	durationType    = reflect.TypeFor[time.Duration]()
	unmarshalerType = reflect.TypeFor[Unmarshaler]()
	yamlUnmarshaler = reflect.TypeFor[yaml.Unmarshaler]()
)

func (d *Decoder) decode(n *yaml.Node, v reflect.Value) {
	if d.stopped {
		return
	}
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return
		}
		n = n.Content[0]
	}
	if n.Kind == yaml.AliasNode {
		d.decodeAlias(n, v)
		return
	}
	if !d.countExpanded(n) {
		return
	}
	d.depth++
	defer func() { d.depth-- }()
	if d.depth > maxDepth {
		d.Errorf(n, "nesting deeper than %d levels", maxDepth)
		d.stopped = true
		return
	}

	if d.unmarshalSelf(n, v) {
		return
	}

	switch v.Kind() {
	case reflect.Pointer:
		if isNull(n) {
			v.SetZero()
			return
		}
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, v.Elem())
		return
	case reflect.Interface:
		d.decodeInterface(n, v)
		return
	}
	if isNull(n) {
		return // null leaves the current value
	}
	d.decodeValue(n, v)
}

// decodeValue decodes a non-null node into a value that is neither a
// pointer nor an interface.
func (d *Decoder) decodeValue(n *yaml.Node, v reflect.Value) {
	if v.Type() == durationType {
		d.decodeDuration(n, v)
		return
	}
	switch v.Kind() {
	case reflect.String:
		if d.expectScalar(n, "!!str", "string") {
			v.SetString(n.Value)
		}
	case reflect.Bool:
		if d.expectScalar(n, "!!bool", "bool") {
			v.SetBool(strings.EqualFold(n.Value, "true"))
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		d.decodeInt(n, v)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		d.decodeUint(n, v)
	case reflect.Float32, reflect.Float64:
		d.decodeFloat(n, v)
	case reflect.Slice:
		d.decodeSlice(n, v)
	case reflect.Map:
		d.decodeMap(n, v)
	case reflect.Struct:
		d.decodeStruct(n, v)
	default:
		d.Errorf(n, "cannot decode into Go type %s", v.Type())
	}
}

// countExpanded counts a node decoded through an alias against
// maxExpanded and reports whether decoding goes on.
func (d *Decoder) countExpanded(n *yaml.Node) bool {
	if d.inAlias > 0 {
		if d.expanded++; d.expanded > maxExpanded {
			d.Errorf(n, "too many nodes expanded from aliases (more than %d)", maxExpanded)
			d.stopped = true
			return false
		}
	}
	return !d.stopped
}

// unmarshalSelf lets a value that implements Unmarshaler or
// yaml.Unmarshaler decode n itself, and reports whether it did.
func (d *Decoder) unmarshalSelf(n *yaml.Node, v reflect.Value) bool {
	if v.Kind() == reflect.Pointer || !v.CanAddr() {
		return false
	}
	pt := v.Addr().Type()
	if pt.Implements(unmarshalerType) {
		v.Addr().Interface().(Unmarshaler).UnmarshalStrictYAML(d, n)
		return true
	}
	if pt.Implements(yamlUnmarshaler) {
		if err := v.Addr().Interface().(yaml.Unmarshaler).UnmarshalYAML(n); err != nil {
			d.Errorf(n, "%s", strings.TrimPrefix(err.Error(), "yaml: "))
		}
		return true
	}
	return false
}

func (d *Decoder) decodeAlias(n *yaml.Node, v reflect.Value) {
	target := n.Alias
	if target == nil {
		d.Errorf(n, "unknown anchor %q", n.Value)
		return
	}
	if d.active[target] > 0 {
		d.Errorf(n, "alias *%s refers to a value that contains it", n.Value)
		return
	}
	if d.active == nil {
		d.active = make(map[*yaml.Node]int)
	}
	d.active[target]++
	d.inAlias++
	d.decode(target, v)
	d.inAlias--
	d.active[target]--
}

// resolve follows aliases to the node they name. A dangling alias is
// returned as is.
func (d *Decoder) resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// Describe says what kind of YAML value n is, for error messages:
// "mapping", "sequence", or the scalar's type and (shortened) value, such as
// `string "abc"` or `int 5`.
func Describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.DocumentNode:
		return "document"
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "sequence"
	case yaml.AliasNode:
		return "alias *" + n.Value
	}
	val := n.Value
	if len(val) > 40 {
		val = val[:37] + "..."
	}
	switch tag := n.ShortTag(); tag {
	case "!!null":
		return "null"
	case "!!str":
		return "string " + strconv.Quote(val)
	default:
		return strings.TrimPrefix(tag, "!!") + " " + val
	}
}

func (d *Decoder) expectScalar(n *yaml.Node, tag, want string) bool {
	if n.Kind == yaml.ScalarNode && n.ShortTag() == tag {
		return true
	}
	d.Errorf(n, "expected %s, got %s", want, Describe(n))
	return false
}

func (d *Decoder) decodeInt(n *yaml.Node, v reflect.Value) {
	if !d.expectScalar(n, "!!int", "int") {
		return
	}
	i, err := strconv.ParseInt(n.Value, 0, 64)
	if err != nil || v.OverflowInt(i) {
		d.Errorf(n, "value %s out of range for %s", n.Value, v.Type())
		return
	}
	v.SetInt(i)
}

func (d *Decoder) decodeUint(n *yaml.Node, v reflect.Value) {
	if !d.expectScalar(n, "!!int", "int") {
		return
	}
	u, err := strconv.ParseUint(strings.TrimPrefix(n.Value, "+"), 0, 64)
	if err != nil || v.OverflowUint(u) {
		d.Errorf(n, "value %s out of range for %s", n.Value, v.Type())
		return
	}
	v.SetUint(u)
}

func (d *Decoder) decodeFloat(n *yaml.Node, v reflect.Value) {
	var f float64
	switch tag := n.ShortTag(); {
	case n.Kind == yaml.ScalarNode && tag == "!!int":
		i, err := strconv.ParseInt(n.Value, 0, 64)
		if err != nil {
			u, uerr := strconv.ParseUint(strings.TrimPrefix(n.Value, "+"), 0, 64)
			if uerr != nil {
				d.Errorf(n, "invalid number %s", n.Value)
				return
			}
			f = float64(u)
		} else {
			f = float64(i)
		}
	case n.Kind == yaml.ScalarNode && tag == "!!float":
		switch strings.ToLower(strings.TrimPrefix(n.Value, "+")) {
		case ".inf":
			f = math.Inf(1)
		case "-.inf":
			f = math.Inf(-1)
		case ".nan":
			f = math.NaN()
		default:
			var err error
			if f, err = strconv.ParseFloat(strings.ReplaceAll(n.Value, "_", ""), 64); err != nil {
				d.Errorf(n, "invalid number %s", n.Value)
				return
			}
		}
	default:
		d.Errorf(n, "expected float, got %s", Describe(n))
		return
	}
	if v.Kind() == reflect.Float32 && !math.IsInf(f, 0) && math.Abs(f) > math.MaxFloat32 {
		d.Errorf(n, "value %s out of range for %s", n.Value, v.Type())
		return
	}
	v.SetFloat(f)
}

func (d *Decoder) decodeDuration(n *yaml.Node, v reflect.Value) {
	if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!str" && n.ShortTag() != "!!int") {
		d.Errorf(n, "expected duration, got %s", Describe(n))
		return
	}
	dur, err := time.ParseDuration(n.Value)
	if err != nil {
		d.Errorf(n, "invalid duration %q: want a number with a unit, such as 100ms or 1m30s", n.Value)
		return
	}
	if dur < 0 {
		d.Errorf(n, "invalid duration %q: must not be negative", n.Value)
		return
	}
	v.SetInt(int64(dur))
}

func (d *Decoder) decodeInterface(n *yaml.Node, v reflect.Value) {
	if v.NumMethod() != 0 {
		d.Errorf(n, "cannot decode into Go interface type %s", v.Type())
		return
	}
	var x any
	if err := safeNodeDecode(n, &x); err != nil {
		d.Errorf(n, "%s", strings.TrimPrefix(err.Error(), "yaml: "))
		return
	}
	if x == nil {
		v.SetZero()
		return
	}
	v.Set(reflect.ValueOf(x))
}

func safeNodeDecode(n *yaml.Node, x any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: %v", r)
		}
	}()
	return n.Decode(x)
}

func (d *Decoder) decodeSlice(n *yaml.Node, v reflect.Value) {
	if n.Kind != yaml.SequenceNode {
		d.Errorf(n, "expected sequence, got %s", Describe(n))
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		d.path = append(d.path, "["+strconv.Itoa(i)+"]")
		d.decode(item, s.Index(i))
		d.path = d.path[:len(d.path)-1]
	}
	v.Set(s)
}

// pair is one key/value entry of a mapping, after merge keys are applied.
type pair struct{ key, value *yaml.Node }

// pairs returns the entries of mapping n: its own keys in order, then the
// keys merged in with "<<" that n does not define itself. It reports
// duplicate and non-scalar keys.
func (d *Decoder) pairs(n *yaml.Node) []pair {
	if d.active == nil {
		d.active = make(map[*yaml.Node]int)
	}
	d.active[n]++
	defer func() { d.active[n]-- }()
	var own, merged []pair
	first := make(map[string]*yaml.Node)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := d.resolve(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.Errorf(n.Content[i], "mapping key must be a scalar, got %s", Describe(n.Content[i]))
			continue
		}
		if k.ShortTag() == "!!merge" {
			merged = append(merged, d.mergePairs(val, 0)...)
			continue
		}
		if prev, dup := first[k.Value]; dup {
			d.Errorf(n.Content[i], "duplicate key %q, first defined at line %d", k.Value, prev.Line)
			continue
		}
		first[k.Value] = n.Content[i]
		own = append(own, pair{n.Content[i], val})
	}
	for _, p := range merged {
		k := d.resolve(p.key)
		if _, ok := first[k.Value]; ok {
			continue // overridden by the mapping itself or an earlier merge
		}
		first[k.Value] = k
		own = append(own, p)
	}
	return own
}

// mergePairs returns the pairs that the value of a "<<" key merges in: a
// mapping or a sequence of mappings, usually aliases.
func (d *Decoder) mergePairs(val *yaml.Node, depth int) []pair {
	target := d.resolve(val)
	if depth > 1 {
		d.Errorf(val, "merge key value must be a mapping or a sequence of mappings")
		return nil
	}
	if d.expanded += len(target.Content); d.expanded > maxExpanded {
		d.Errorf(val, "too many nodes expanded from aliases (more than %d)", maxExpanded)
		d.stopped = true
		return nil
	}
	if d.active[target] > 0 {
		d.Errorf(val, "merge key value contains the mapping it is merged into")
		return nil
	}
	switch target.Kind {
	case yaml.MappingNode:
		if d.active == nil {
			d.active = make(map[*yaml.Node]int)
		}
		d.active[target]++
		defer func() { d.active[target]-- }()
		return d.pairs(target)
	case yaml.SequenceNode:
		var out []pair
		for _, item := range target.Content {
			out = append(out, d.mergePairs(item, depth+1)...)
		}
		return out
	}
	d.Errorf(val, "merge key value must be a mapping or a sequence of mappings, got %s", Describe(target))
	return nil
}

func (d *Decoder) decodeMap(n *yaml.Node, v reflect.Value) {
	if n.Kind != yaml.MappingNode {
		d.Errorf(n, "expected mapping, got %s", Describe(n))
		return
	}
	t := v.Type()
	if v.IsNil() {
		v.Set(reflect.MakeMap(t))
	}
	for _, p := range d.pairs(n) {
		if d.stopped {
			return
		}
		k := reflect.New(t.Key()).Elem()
		if t.Key().Kind() == reflect.String {
			k.SetString(d.resolve(p.key).Value)
		} else {
			before := len(d.errs)
			d.decode(p.key, k)
			if len(d.errs) > before {
				continue
			}
		}
		e := reflect.New(t.Elem()).Elem()
		if old := v.MapIndex(k); old.IsValid() {
			e.Set(old)
		}
		d.path = append(d.path, d.resolve(p.key).Value)
		d.decode(p.value, e)
		d.path = d.path[:len(d.path)-1]
		v.SetMapIndex(k, e)
	}
}

// field is a decodable struct field, possibly inside inline structs.
type field struct {
	name     string
	index    []int
	required bool
}

type structInfo struct {
	fields map[string]*field
	names  []string // sorted
	err    string   // a problem with the Go type itself
}

var structCache sync.Map // reflect.Type → *structInfo

func infoFor(t reflect.Type) *structInfo {
	if si, ok := structCache.Load(t); ok {
		return si.(*structInfo)
	}
	si := &structInfo{fields: make(map[string]*field)}
	si.collect(t, nil)
	for name := range si.fields {
		si.names = append(si.names, name)
	}
	slices.Sort(si.names)
	structCache.Store(t, si)
	return si
}

func (si *structInfo) collect(t reflect.Type, index []int) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		if tag == "-" {
			continue
		}
		name, flags, _ := strings.Cut(tag, ",")
		idx := append(slices.Clip(index), i)
		if slices.Contains(strings.Split(flags, ","), "inline") {
			if f.Type.Kind() != reflect.Struct {
				si.err = fmt.Sprintf("inline field %s of %s must be a struct", f.Name, t)
				continue
			}
			si.collect(f.Type, idx)
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		if _, dup := si.fields[name]; dup {
			si.err = fmt.Sprintf("duplicate YAML key %q in %s", name, t)
			continue
		}
		si.fields[name] = &field{name: name, index: idx, required: f.Tag.Get("required") == "true"}
	}
}

func (d *Decoder) decodeStruct(n *yaml.Node, v reflect.Value) {
	if n.Kind != yaml.MappingNode {
		d.Errorf(n, "expected mapping, got %s", Describe(n))
		return
	}
	si := infoFor(v.Type())
	if si.err != "" {
		d.Errorf(n, "strictyaml: %s", si.err)
		return
	}
	present := make(map[string]bool)
	for _, p := range d.pairs(n) {
		if d.stopped {
			return
		}
		key := d.resolve(p.key)
		f, ok := si.fields[key.Value]
		if !ok {
			d.Errorf(p.key, "unknown field %q in %s; valid fields: %s",
				key.Value, d.where(), strings.Join(si.names, ", "))
			continue
		}
		present[f.name] = !isNull(d.resolve(p.value))
		d.path = append(d.path, key.Value)
		d.decode(p.value, v.FieldByIndex(f.index))
		d.path = d.path[:len(d.path)-1]
	}
	for _, name := range si.names {
		if f := si.fields[name]; f.required && !present[name] {
			d.Errorf(n, "missing required field %q in %s", name, d.where())
		}
	}
}

// Documents parses every document in data and returns the non-empty ones
// (an empty document or one holding only null is skipped). Parsing stops at
// a syntax error, which is returned with the documents read before it.
func Documents(file string, data []byte) ([]*yaml.Node, *Error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []*yaml.Node
	for {
		n := new(yaml.Node)
		err := safeParse(dec, n)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return docs, syntaxError(file, err)
		}
		if !isEmptyDocument(n) {
			docs = append(docs, n)
		}
	}
}

// IsNull reports whether n is a null scalar ("", "~", "null").
func IsNull(n *yaml.Node) bool { return isNull(n) }
