package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Key describes one key of the file.
type Key struct {
	Key     string // dotted, e.g. "metrics.port"
	Type    string // bool, int, uint, float, string, duration, list or map
	Default string // the default as it would be written in YAML; `""` for an empty string
	Env     string // the overriding environment variable, e.g. FLUXGATE_METRICS_PORT
	Desc    string // one line; ends with the allowed values where they are a fixed set
}

// Field is one key of T, found by reflection.
type Field struct {
	Key   string // dotted
	Env   string // EnvPrefix + SECTION_KEY
	Index []int  // for reflect.Value.FieldByIndex from T
	Type  reflect.Type
	Desc  string
	Rules string // the validate tag
}

// Fields lists every key of T in struct order.
func (s *Schema[T]) Fields() []Field { return s.fields() }

// Keys lists every key of T in struct order, with its default.
func (s *Schema[T]) Keys() []Key {
	def := reflect.ValueOf(s.defaults())
	var keys []Key
	for _, f := range s.fields() {
		d := formatValue(def.FieldByIndex(f.Index))
		if d == "" {
			d = `""`
		}
		desc := f.Desc
		if allowed := f.allowed(); allowed != nil {
			desc = strings.TrimSpace(desc + " One of: " + strings.Join(allowed, ", ") + ".")
		}
		keys = append(keys, Key{Key: f.Key, Type: f.TypeName(), Default: d, Env: f.Env, Desc: desc})
	}
	return keys
}

// Get returns the value of key in cfg as it would be written in YAML,
// without quotes for strings; lists and maps are in YAML flow style.
func (s *Schema[T]) Get(cfg T, key string) (string, error) {
	f, err := s.Lookup(key)
	if err != nil {
		return "", err
	}
	return formatValue(reflect.ValueOf(cfg).FieldByIndex(f.Index)), nil
}

// Set returns data, a document of the file, with key set to value. value
// is parsed with the key's type and must pass the key's validation;
// unknown keys, keys holding lists or maps and wrong types are refused.
// Comments, key order and the rest of the text are kept: the value is
// replaced in place, and a missing key is added at the end of its section
// (a missing section at the end of the file). An empty data creates the
// document.
func (s *Schema[T]) Set(data []byte, key, value string) ([]byte, error) {
	return s.SetFile("config", data, key, value)
}

// SetFile is Set for data read from file: a problem the loader would find
// in the edited document is reported as file:line:col, where line and
// column are those of the document as it would be written.
func (s *Schema[T]) SetFile(file string, data []byte, key, value string) ([]byte, error) {
	f, err := s.Lookup(key)
	if err != nil {
		return nil, err
	}
	if !f.scalar() {
		return nil, fmt.Errorf("%s: is a %s; edit the file to change it", key, f.TypeName())
	}
	v, err := parseScalar(f.Type, value)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	if errs := f.validate(v); len(errs) > 0 {
		return nil, errs[0]
	}
	scalar := scalarNode(v)

	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: config file is not valid YAML: %w", s.opts.Name, err)
	}
	e := &editor{name: s.opts.Name, data: data, path: strings.Split(key, "."), scalar: scalar}
	out, err := e.apply(&doc)
	if err != nil {
		return nil, err
	}
	// Refuse what the loader would refuse (Load: defaults < file, then
	// Validate), environment aside: the rules across keys and sections
	// hold too.
	cfg := s.defaults()
	if err := s.Decode(file, out, &cfg); err != nil {
		return nil, fmt.Errorf("%s: %s %q: %w", s.opts.Name, key, value, err)
	}
	if err := s.Validate(&cfg); err != nil {
		return nil, fmt.Errorf("%s: %s %q: the configuration would not load: %w", s.opts.Name, key, value, err)
	}
	return out, nil
}

// Reference renders Keys as a markdown table: key, type, default, env var,
// description.
func (s *Schema[T]) Reference() string {
	var b strings.Builder
	b.WriteString("| key | type | default | env var | description |\n")
	b.WriteString("|---|---|---|---|---|\n")
	for _, k := range s.Keys() {
		fmt.Fprintf(&b, "| `%s` | %s | `%s` | `%s` | %s |\n", k.Key, k.Type, k.Default, k.Env, strings.ReplaceAll(k.Desc, "|", `\|`))
	}
	return b.String()
}

// walkFields walks t: sections and nested structs become dotted prefixes,
// inline structs add their fields to the level they are in, everything else
// is a key.
func walkFields(t reflect.Type, envPrefix string) []Field {
	var out []Field
	var walk func(t reflect.Type, prefix string, index []int)
	walk = func(t reflect.Type, prefix string, index []int) {
		for i := range t.NumField() {
			sf := t.Field(i)
			idx := append(append([]int{}, index...), i)
			if inline(sf) {
				walk(sf.Type, prefix, idx)
				continue
			}
			name := yamlName(sf)
			if name == "" {
				continue
			}
			key := joinKey(prefix, name)
			if isStruct(sf.Type) {
				walk(sf.Type, key, idx)
				continue
			}
			out = append(out, Field{
				Key:   key,
				Env:   envPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_")),
				Index: idx,
				Type:  sf.Type,
				Desc:  sf.Tag.Get("desc"),
				Rules: sf.Tag.Get("validate"),
			})
		}
	}
	walk(t, "", nil)
	return out
}

// inline reports a struct field tagged `yaml:",inline"`.
func inline(sf reflect.StructField) bool {
	_, opts, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
	return sf.IsExported() && sf.Type.Kind() == reflect.Struct && contains(strings.Split(opts, ","), "inline")
}

func yamlName(sf reflect.StructField) string {
	if !sf.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
	if name == "-" {
		return ""
	}
	if name == "" {
		name = strings.ToLower(sf.Name)
	}
	return name
}

func isStruct(t reflect.Type) bool { return t.Kind() == reflect.Struct && t != durationType }

// Lookup finds key or explains which keys exist.
func (s *Schema[T]) Lookup(key string) (Field, error) {
	for _, f := range s.fields() {
		if f.Key == key {
			return f, nil
		}
	}
	return Field{}, s.unknownKeyError(key)
}

// unknownKeyError lists the keys under the longest known prefix of key, or
// the sections if no prefix is known.
func (s *Schema[T]) unknownKeyError(key string) error {
	parts := strings.Split(key, ".")
	for n := len(parts); n > 0; n-- {
		prefix := strings.Join(parts[:n], ".") + "."
		var valid []string
		for _, f := range s.fields() {
			if strings.HasPrefix(f.Key, prefix) {
				valid = append(valid, f.Key)
			}
		}
		if valid == nil {
			continue
		}
		if n == len(parts) {
			return fmt.Errorf("%q is a section, not a key; valid keys: %s", key, strings.Join(valid, ", "))
		}
		return fmt.Errorf("unknown key %q; valid keys: %s", key, strings.Join(valid, ", "))
	}
	var sections []string
	for _, f := range s.fields() {
		sec, _, _ := strings.Cut(f.Key, ".")
		if !contains(sections, sec) {
			sections = append(sections, sec)
		}
	}
	return fmt.Errorf("unknown key %q; valid sections: %s", key, strings.Join(sections, ", "))
}

func (f Field) scalar() bool {
	switch f.Type.Kind() {
	case reflect.Slice, reflect.Array, reflect.Map, reflect.Struct, reflect.Interface, reflect.Pointer:
		return false
	}
	return true
}

// TypeName is the key's type as ConfigKey reports it: bool, int, uint,
// float, string, duration, list or map.
func (f Field) TypeName() string {
	t := f.Type
	switch {
	case t == durationType:
		return "duration"
	case t.Kind() == reflect.Bool:
		return "bool"
	case t.Kind() == reflect.String:
		return "string"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		return "int"
	case t.Kind() >= reflect.Uint && t.Kind() <= reflect.Uintptr:
		return "uint"
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		return "float"
	case t.Kind() == reflect.Slice || t.Kind() == reflect.Array:
		return "list"
	case t.Kind() == reflect.Map || t.Kind() == reflect.Struct:
		return "map"
	}
	return t.String()
}

// allowed returns the values of a oneof rule, or nil.
func (f Field) allowed() []string {
	for _, rule := range strings.Split(f.Rules, ",") {
		if arg, ok := strings.CutPrefix(rule, "oneof="); ok {
			return strings.Split(arg, "|")
		}
	}
	return nil
}

// parseScalar parses s as a value of type t.
func parseScalar(t reflect.Type, s string) (reflect.Value, error) {
	v := reflect.New(t).Elem()
	var err error
	switch {
	case t == durationType:
		var d time.Duration
		if d, err = time.ParseDuration(s); err == nil {
			v.SetInt(int64(d))
		}
	case t.Kind() == reflect.String:
		v.SetString(s)
	case t.Kind() == reflect.Bool:
		var b bool
		if b, err = strconv.ParseBool(s); err == nil {
			v.SetBool(b)
		}
	case v.CanInt():
		var i int64
		if i, err = strconv.ParseInt(s, 10, t.Bits()); err == nil {
			v.SetInt(i)
		}
	case v.CanUint():
		var u uint64
		if u, err = strconv.ParseUint(s, 10, t.Bits()); err == nil {
			v.SetUint(u)
		}
	case v.CanFloat():
		var x float64
		if x, err = strconv.ParseFloat(s, t.Bits()); err == nil {
			v.SetFloat(x)
		}
	default:
		return v, fmt.Errorf("cannot parse a %s from text", t)
	}
	if err != nil {
		return v, fmt.Errorf("expected %s, got %q", Field{Type: t}.TypeName(), s)
	}
	return v, nil
}

// formatValue writes v as it would appear in YAML, strings unquoted.
func formatValue(v reflect.Value) string {
	switch {
	case v.Type() == durationType:
		return time.Duration(v.Int()).String()
	case v.Kind() == reflect.String:
		return v.String()
	case v.Kind() == reflect.Bool:
		return strconv.FormatBool(v.Bool())
	case v.CanInt():
		return strconv.FormatInt(v.Int(), 10)
	case v.CanUint():
		return strconv.FormatUint(v.Uint(), 10)
	case v.CanFloat():
		return strconv.FormatFloat(v.Float(), 'g', -1, v.Type().Bits())
	}
	// Lists and maps: one line of flow YAML.
	var n yaml.Node
	if err := n.Encode(v.Interface()); err != nil {
		return fmt.Sprint(v.Interface())
	}
	setFlow(&n)
	b, err := yaml.Marshal(&n)
	if err != nil {
		return fmt.Sprint(v.Interface())
	}
	return strings.TrimSpace(string(b))
}

func setFlow(n *yaml.Node) {
	n.Style |= yaml.FlowStyle
	for _, c := range n.Content {
		setFlow(c)
	}
}
