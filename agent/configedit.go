package agent

import (
	"bytes"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"gopkg.in/yaml.v3"
)

// ConfigKey describes one key of fluxgate.yaml.
type ConfigKey struct {
	Key     string // dotted, e.g. "metrics.port"
	Type    string // bool, int, uint, float, string, duration, list or map
	Default string // the default as it would be written in YAML; `""` for an empty string
	Env     string // the overriding environment variable, e.g. FLUXGATE_METRICS_PORT
	Desc    string // one line; ends with the allowed values where they are a fixed set
}

// ConfigKeys lists every key of Config in struct order.
func ConfigKeys() []ConfigKey {
	def := reflect.ValueOf(DefaultConfig())
	var keys []ConfigKey
	for _, f := range configFields() {
		d := formatValue(def.FieldByIndex(f.index))
		if d == "" {
			d = `""`
		}
		desc := f.desc
		if allowed := f.allowed(); allowed != nil {
			desc = strings.TrimSpace(desc + " One of: " + strings.Join(allowed, ", ") + ".")
		}
		keys = append(keys, ConfigKey{Key: f.key, Type: f.typeName(), Default: d, Env: f.env, Desc: desc})
	}
	return keys
}

// GetConfigValue returns the value of key in cfg as it would be written in
// YAML, without quotes for strings; lists and maps are in YAML flow style.
func GetConfigValue(cfg Config, key string) (string, error) {
	f, err := lookupKey(key)
	if err != nil {
		return "", err
	}
	return formatValue(reflect.ValueOf(cfg).FieldByIndex(f.index)), nil
}

// SetConfigValue returns data, a fluxgate.yaml document, with key set to
// value. value is parsed with the key's type and must pass the key's
// validation; unknown keys, keys holding lists or maps and wrong types are
// refused. Comments, key order and the rest of the text are kept: the value
// is replaced in place, and a missing key is added at the end of its
// section (a missing section at the end of the file). An empty data
// creates the document.
func SetConfigValue(data []byte, key, value string) ([]byte, error) {
	f, err := lookupKey(key)
	if err != nil {
		return nil, err
	}
	if !f.scalar() {
		return nil, fmt.Errorf("%s: is a %s; edit the file to change it", key, f.typeName())
	}
	v, err := parseScalar(f.typ, value)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	if errs := f.validate(v); len(errs) > 0 {
		return nil, errs[0]
	}
	scalar := scalarNode(v)

	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("agent: config file is not valid YAML: %w", err)
	}
	e := &editor{data: data, path: strings.Split(key, "."), scalar: scalar}
	out, err := e.apply(&doc)
	if err != nil {
		return nil, err
	}
	// Refuse what the loader would refuse (LoadConfig: defaults < file,
	// then Validate), environment aside: the rules across keys and
	// sections (gateway.listen is host:port, for one) hold too.
	cfg := DefaultConfig()
	if err := decodeConfig("config", out, &cfg); err != nil {
		return nil, fmt.Errorf("agent: %s %q: %w", key, value, err)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("agent: %s %q: the configuration would not load: %w", key, value, err)
	}
	return out, nil
}

// editor sets one scalar in a YAML document. It edits the node tree, which
// is the reference result, and then tries to make the same change to the
// original text so that blank lines and spacing (which yaml.v3 does not
// keep) survive. The text edit is used only if it decodes to exactly what
// the edited tree does.
type editor struct {
	data   []byte
	path   []string
	scalar *yaml.Node

	// What the tree edit did, for the text edit.
	replaced *yaml.Node // the value node that was overwritten, if any
	oldLine  int        // its position before the edit
	oldCol   int
	inFlow   bool       // the replaced value is in a flow mapping
	parent   *yaml.Node // else the existing mapping that got a new key
	rest     []string   // the keys added under parent, outermost first
	noText   bool       // the text edit cannot be attempted
}

func (e *editor) apply(doc *yaml.Node) ([]byte, error) {
	created := doc.Kind == 0 || len(doc.Content) == 0
	if created {
		// Empty or comments only.
		*doc = yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{{Kind: yaml.MappingNode, Tag: "!!map"}}}
		e.rest = e.path
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		*root = yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		e.noText = true
	}
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("agent: config file must be a mapping of sections, got %s at line %d", nodeKindName(root), root.Line)
	}
	if err := e.set(root, e.path, !created); err != nil {
		return nil, err
	}
	tree, err := encodeYAML(doc, detectIndent(e.data))
	if err != nil {
		return nil, err
	}
	if e.noText {
		return tree, nil
	}
	text, ok := e.textEdit()
	if !ok || !sameYAML(text, tree) {
		return tree, nil
	}
	return text, nil
}

// set walks m along path, creating what is missing, and sets the leaf.
// fromFile tells whether m exists in the original text.
func (e *editor) set(m *yaml.Node, path []string, fromFile bool) error {
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if k.Value != path[0] {
			continue
		}
		if v.Kind == yaml.AliasNode {
			return fmt.Errorf("%s: the file sets it through an alias; edit the file to change it", strings.Join(e.path, "."))
		}
		if len(path) == 1 {
			e.replaced, e.oldLine, e.oldCol = v, v.Line, v.Column
			e.inFlow = m.Style&yaml.FlowStyle != 0
			if v.Kind != yaml.ScalarNode {
				e.noText = true
			}
			// Keep the comments attached to the old value.
			s := *e.scalar
			s.HeadComment, s.LineComment, s.FootComment = v.HeadComment, v.LineComment, v.FootComment
			s.Line, s.Column = v.Line, v.Column
			if s.Tag == "!!str" && v.Kind == yaml.ScalarNode && v.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0 {
				s.Style = v.Style // keep the user's quoting
			}
			*v = s
			out := s
			out.HeadComment, out.LineComment, out.FootComment = "", "", ""
			e.scalar = &out
			return nil
		}
		if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
			// "metrics:" with nothing under it.
			*v = yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", HeadComment: v.HeadComment, LineComment: v.LineComment, FootComment: v.FootComment}
			e.noText = true
			return e.set(v, path[1:], false)
		}
		if v.Kind != yaml.MappingNode {
			prefix := strings.Join(e.path[:len(e.path)-len(path)+1], ".")
			return fmt.Errorf("%s: the file has %s here, not a mapping; fix it by hand first", prefix, nodeKindName(v))
		}
		return e.set(v, path[1:], fromFile)
	}
	// Missing: append path under m.
	if fromFile && e.parent == nil && e.rest == nil {
		e.parent, e.rest = m, path
		if m.Style&yaml.FlowStyle != 0 {
			e.noText = true
		}
	}
	cur := m
	for _, name := range path[:len(path)-1] {
		next := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		cur.Content = append(cur.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: name}, next)
		cur = next
	}
	leaf := *e.scalar
	cur.Content = append(cur.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: path[len(path)-1]}, &leaf)
	return nil
}

// textEdit makes the tree edit's change to the original text.
func (e *editor) textEdit() ([]byte, bool) {
	val, err := encodeYAML(e.scalar, 2)
	if err != nil {
		return nil, false
	}
	val = bytes.TrimSuffix(val, []byte("\n"))
	if bytes.Contains(val, []byte("\n")) {
		return nil, false // block scalars need the tree encoder
	}
	nl := "\n"
	if bytes.Contains(e.data, []byte("\r\n")) {
		nl = "\r\n"
	}
	lines := bytes.SplitAfter(e.data, []byte("\n"))
	switch {
	case e.replaced != nil:
		start, ok := offsetOf(lines, e.oldLine, e.oldCol)
		if !ok {
			return nil, false
		}
		end, ok := scalarEnd(e.data, start, e.inFlow)
		if !ok {
			return nil, false
		}
		out := append([]byte{}, e.data[:start]...)
		out = append(out, val...)
		return append(out, e.data[end:]...), true

	case e.parent == nil:
		// New document or new top-level content in a file with no mapping
		// text of its own (comments only).
		out := append([]byte{}, e.data...)
		if len(out) > 0 && !bytes.HasSuffix(out, []byte("\n")) {
			out = append(out, nl...)
		}
		return append(out, nestedLines(e.rest, 0, detectIndent(e.data), val, nl)...), true

	default:
		m := e.parent
		if len(m.Content) == 0 {
			return nil, false
		}
		indent := m.Content[0].Column - 1
		last := lastLine(m)
		if last < 1 || last > len(lines) {
			return nil, false
		}
		var out []byte
		for _, l := range lines[:last] {
			out = append(out, l...)
		}
		if !bytes.HasSuffix(out, []byte("\n")) {
			out = append(out, nl...)
		}
		out = append(out, nestedLines(e.rest, indent, detectIndent(e.data), val, nl)...)
		for _, l := range lines[last:] {
			out = append(out, l...)
		}
		return out, true
	}
}

// nestedLines renders "a:\n  b: val\n" for path [a b] at the given indent.
func nestedLines(path []string, indent, step int, val []byte, nl string) []byte {
	var b bytes.Buffer
	for i, name := range path {
		b.WriteString(strings.Repeat(" ", indent+i*step))
		b.WriteString(name)
		b.WriteString(":")
		if i == len(path)-1 {
			b.WriteString(" ")
			b.Write(val)
		}
		b.WriteString(nl)
	}
	return b.Bytes()
}

// offsetOf converts a 1-based line and column (in runes) to a byte offset.
func offsetOf(lines [][]byte, line, col int) (int, bool) {
	if line < 1 || line > len(lines) {
		return 0, false
	}
	off := 0
	for _, l := range lines[:line-1] {
		off += len(l)
	}
	runes := []rune(string(lines[line-1]))
	if col < 1 || col-1 > len(runes) {
		return 0, false
	}
	return off + len(string(runes[:col-1])), true
}

// scalarEnd returns the end offset of the single-line scalar starting at
// start. A mistake here is caught by the comparison in apply.
func scalarEnd(data []byte, start int, flow bool) (int, bool) {
	if start >= len(data) {
		return 0, false
	}
	switch data[start] {
	case '"':
		for i := start + 1; i < len(data) && data[i] != '\n'; i++ {
			switch data[i] {
			case '\\':
				i++
			case '"':
				return i + 1, true
			}
		}
		return 0, false
	case '\'':
		for i := start + 1; i < len(data) && data[i] != '\n'; i++ {
			if data[i] == '\'' {
				if i+1 < len(data) && data[i+1] == '\'' {
					i++
					continue
				}
				return i + 1, true
			}
		}
		return 0, false
	case '|', '>', '[', '{', '&', '*', '!':
		return 0, false
	}
	end := start
	for ; end < len(data) && data[end] != '\n' && data[end] != '\r'; end++ {
		if data[end] == '#' && end > start && (data[end-1] == ' ' || data[end-1] == '\t') {
			break
		}
		if flow && (data[end] == ',' || data[end] == '}' || data[end] == ']') {
			break
		}
	}
	return start + len(bytes.TrimRight(data[start:end], " \t")), true
}

// lastLine is the greatest line number used by n or its descendants, or -1
// if a block scalar spans lines that the node positions do not show.
func lastLine(n *yaml.Node) int {
	if n.Kind == yaml.ScalarNode && (n.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0 || strings.Contains(n.Value, "\n")) {
		return -1
	}
	l := n.Line
	for _, c := range n.Content {
		cl := lastLine(c)
		if cl < 0 {
			return -1
		}
		l = max(l, cl)
	}
	return l
}

// sameYAML tells whether a and b decode to the same data.
func sameYAML(a, b []byte) bool {
	var x, y any
	if yaml.Unmarshal(a, &x) != nil || yaml.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

// detectIndent returns the indentation step of data's block mappings, 2 if
// there is none.
func detectIndent(data []byte) int {
	for _, l := range strings.Split(string(data), "\n") {
		t := strings.TrimLeft(l, " ")
		if n := len(l) - len(t); n > 0 && t != "" && !strings.HasPrefix(t, "#") && !strings.HasPrefix(t, "- ") {
			return n
		}
	}
	return 2
}

func encodeYAML(n *yaml.Node, indent int) ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(indent)
	if err := enc.Encode(n); err != nil {
		return nil, fmt.Errorf("agent: encode config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("agent: encode config: %w", err)
	}
	return b.Bytes(), nil
}

// scalarNode is the YAML scalar for a parsed value. Strings are tagged
// !!str so that the encoder quotes those that would read as another type.
func scalarNode(v reflect.Value) *yaml.Node {
	n := &yaml.Node{Kind: yaml.ScalarNode, Value: formatValue(v)}
	switch {
	case v.Type() == durationType, v.Kind() == reflect.String:
		n.Tag = "!!str"
		if strings.ContainsFunc(n.Value, func(r rune) bool { return !unicode.IsPrint(r) && r != ' ' }) {
			// yaml.v3 writes these as block scalars, some of which it
			// does not read back the same (a lone "\n").
			n.Style = yaml.DoubleQuotedStyle
		}
	case v.Kind() == reflect.Bool:
		n.Tag = "!!bool"
	case v.CanInt(), v.CanUint():
		n.Tag = "!!int"
	case v.CanFloat():
		n.Tag = "!!float"
	}
	return n
}

// configField is one key of Config, found by reflection.
type configField struct {
	key   string // dotted
	env   string // FLUXGATE_SECTION_KEY
	index []int  // for reflect.Value.FieldByIndex from Config
	typ   reflect.Type
	desc  string
	rules string // the validate tag
}

var durationType = reflect.TypeFor[time.Duration]()

// configFields walks Config once: sections and nested structs become
// dotted prefixes, everything else is a key.
var configFields = sync.OnceValue(func() []configField {
	var out []configField
	var walk func(t reflect.Type, prefix string, index []int)
	walk = func(t reflect.Type, prefix string, index []int) {
		for i := range t.NumField() {
			sf := t.Field(i)
			name := yamlName(sf)
			if name == "" {
				continue
			}
			key := joinKey(prefix, name)
			idx := append(append([]int{}, index...), i)
			if isStruct(sf.Type) {
				walk(sf.Type, key, idx)
				continue
			}
			out = append(out, configField{
				key:   key,
				env:   EnvPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_")),
				index: idx,
				typ:   sf.Type,
				desc:  sf.Tag.Get("desc"),
				rules: sf.Tag.Get("validate"),
			})
		}
	}
	walk(reflect.TypeFor[Config](), "", nil)
	return out
})

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

func fieldByKey(key string) configField {
	for _, f := range configFields() {
		if f.key == key {
			return f
		}
	}
	return configField{}
}

// lookupKey finds key or explains which keys exist.
func lookupKey(key string) (configField, error) {
	if f := fieldByKey(key); f.key != "" {
		return f, nil
	}
	return configField{}, unknownKeyError(key)
}

// unknownKeyError lists the keys under the longest known prefix of key, or
// the sections if no prefix is known.
func unknownKeyError(key string) error {
	parts := strings.Split(key, ".")
	for n := len(parts); n > 0; n-- {
		prefix := strings.Join(parts[:n], ".") + "."
		var valid []string
		for _, f := range configFields() {
			if strings.HasPrefix(f.key, prefix) {
				valid = append(valid, f.key)
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
	for _, f := range configFields() {
		s, _, _ := strings.Cut(f.key, ".")
		if !contains(sections, s) {
			sections = append(sections, s)
		}
	}
	return fmt.Errorf("unknown key %q; valid sections: %s", key, strings.Join(sections, ", "))
}

func (f configField) scalar() bool {
	switch f.typ.Kind() {
	case reflect.Slice, reflect.Array, reflect.Map, reflect.Struct, reflect.Interface, reflect.Pointer:
		return false
	}
	return true
}

func (f configField) typeName() string {
	t := f.typ
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
func (f configField) allowed() []string {
	for _, rule := range strings.Split(f.rules, ",") {
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
		return v, fmt.Errorf("expected %s, got %q", configField{typ: t}.typeName(), s)
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

// ConfigReference renders ConfigKeys as the markdown table of docs/configuration.md's
// configuration reference.
func ConfigReference() string {
	var b strings.Builder
	b.WriteString("| key | type | default | env var | description |\n")
	b.WriteString("|---|---|---|---|---|\n")
	for _, k := range ConfigKeys() {
		fmt.Fprintf(&b, "| `%s` | %s | `%s` | `%s` | %s |\n", k.Key, k.Type, k.Default, k.Env, strings.ReplaceAll(k.Desc, "|", `\|`))
	}
	return b.String()
}
