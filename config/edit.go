package config

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"unicode"

	"gopkg.in/yaml.v3"
)

// editor sets one scalar in a YAML document. It edits the node tree, which
// is the reference result, and then tries to make the same change to the
// original text so that blank lines and spacing (which yaml.v3 does not
// keep) survive. The text edit is used only if it decodes to exactly what
// the edited tree does.
type editor struct {
	name   string // prefixes errors
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
		return nil, fmt.Errorf("%s: config file must be a mapping of sections, got %s at line %d", e.name, nodeKindName(root), root.Line)
	}
	if err := e.set(root, e.path, !created); err != nil {
		return nil, err
	}
	tree, err := e.encodeYAML(doc, detectIndent(e.data))
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
	val, err := e.encodeYAML(e.scalar, 2)
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

func (e *editor) encodeYAML(n *yaml.Node, indent int) ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(indent)
	if err := enc.Encode(n); err != nil {
		return nil, fmt.Errorf("%s: encode config: %w", e.name, err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("%s: encode config: %w", e.name, err)
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
