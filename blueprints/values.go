package blueprints

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"

	"github.com/fluxgate/fluxgate/policies"
	"github.com/fluxgate/fluxgate/policies/strictyaml"
)

// checker collects positioned problems of a decoded values file.
type checker struct {
	file string
	root *yaml.Node
	errs strictyaml.ErrorList
}

// decodeValues decodes data strictly onto v, which holds the defaults, and
// then lets check report semantic problems at the positions of the keys
// they concern. The error is a strictyaml.ErrorList.
func decodeValues(file string, data []byte, v any, check func(*checker)) error {
	if err := strictyaml.Unmarshal(file, data, v); err != nil {
		return err
	}
	var doc yaml.Node
	_ = yaml.Unmarshal(data, &doc) // parsed above
	c := &checker{file: file, root: &doc}
	check(c)
	c.errs.Sort()
	return c.errs.Err()
}

// errorf reports a problem at the value of the key path (or at the nearest
// enclosing key that is present, or at the start of the file). Path
// elements are mapping keys, or "[i]" for sequence items.
func (c *checker) errorf(path string, format string, args ...any) {
	n := c.root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line, col := 1, 1
	if n.Line > 0 {
		line, col = n.Line, n.Column
	}
	for _, key := range strings.Split(path, ".") {
		next := child(n, key)
		if next == nil {
			break
		}
		n = next
		line, col = n.Line, n.Column
	}
	c.errs = append(c.errs, &strictyaml.Error{File: c.file, Line: line, Column: col, Msg: fmt.Sprintf(format, args...)})
}

// child returns the value of key in mapping n, or item [i] of sequence n.
func child(n *yaml.Node, key string) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n == nil {
		return nil
	}
	if strings.HasPrefix(key, "[") && n.Kind == yaml.SequenceNode {
		i, err := strconv.Atoi(strings.Trim(key, "[]"))
		if err != nil || i < 0 || i >= len(n.Content) {
			return nil
		}
		return n.Content[i]
	}
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// nameRE is what metadata.name accepts (see policies), also used for the
// names of flux meters and workloads the blueprints create.
var nameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`)

// checkName reports a name the policy language would refuse.
func (c *checker) checkName(path, what, name string) {
	switch {
	case name == "":
		c.errorf(path, "%s is required", what)
	case len(name) > 253 || !nameRE.MatchString(name):
		c.errorf(path, "%s %q: must be lowercase letters, digits, '-' and '.', start and end with a letter or digit, at most 253 characters", what, name)
	}
}

// checkSelectors reports a missing selector list; the selectors themselves
// are checked with the policy.
func (c *checker) checkSelectors(path string, sels []policies.Selector) {
	if len(sels) == 0 {
		c.errorf(path, "%s: at least one selector is required", path)
	}
}

// promDuration is a Prometheus duration ("5m", "28d", "1w"), as used in
// rule files.
type promDuration model.Duration

// UnmarshalStrictYAML implements strictyaml.Unmarshaler.
func (d *promDuration) UnmarshalStrictYAML(dec *strictyaml.Decoder, n *yaml.Node) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		dec.Errorf(n, "expected a duration such as 28d or 30m, got %s", strictyaml.Describe(n))
		return
	}
	v, err := model.ParseDuration(n.Value)
	if err != nil {
		dec.Errorf(n, "invalid duration %q: %v", n.Value, err)
		return
	}
	*d = promDuration(v)
}

// String formats d the Prometheus way: 28d, 1h30m.
func (d promDuration) String() string { return promDur(time.Duration(d)) }

// funcs are the template helpers. Every value written into a template
// goes through one of them, so values cannot break the YAML around them.
var funcs = template.FuncMap{
	"str":  quote,
	"num":  num,
	"dur":  dur,
	"flow": flow,
}

// quote writes s as a double-quoted YAML scalar (JSON strings are valid
// YAML).
func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// num writes a float in its shortest form: 0.05, 100, 1e-06.
func num(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// dur writes a duration the way a person would: 5s, 2m, 1h30m, 500ms.
func dur(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// flow writes v as YAML on one line, in flow style: selectors and label
// matchers become {control_point: ingress, service: checkout}.
func flow(v any) (string, error) {
	var n yaml.Node
	if err := n.Encode(v); err != nil {
		return "", err
	}
	setFlow(&n)
	out, err := yaml.Marshal(&n)
	if err != nil {
		return "", err
	}
	s := strings.TrimSuffix(string(out), "\n")
	if strings.Contains(s, "\n") {
		return "", fmt.Errorf("flow: %T does not fit on one line", v)
	}
	return s, nil
}

func setFlow(n *yaml.Node) {
	if n.Kind == yaml.MappingNode || n.Kind == yaml.SequenceNode {
		n.Style = yaml.FlowStyle
	}
	for _, c := range n.Content {
		setFlow(c)
	}
}
