package classifier

import (
	"errors"
	"fmt"
	"strings"

	"github.com/fluxgate/fluxgate/policies"
)

// pathTemplates maps the path in a flow label to the value of the most
// specific template it matches (policies.PathTemplateMatcher). Templates
// are stored in a trie of segments; lookup walks it depth first, trying a
// literal child before the parameter child before the node's "*", which
// yields the most specific match first.
type pathTemplates struct {
	from string
	root *pathNode
}

type pathNode struct {
	literals map[string]*pathNode
	param    *pathNode // {name}
	end      *string   // value of the template that ends here
	rest     *string   // value of the template that ends here with "*"
}

func newPathTemplates(m *policies.PathTemplateMatcher) (*pathTemplates, error) {
	pt := &pathTemplates{from: m.From, root: &pathNode{}}
	if pt.from == "" {
		pt.from = policies.DefaultPathTemplatesFrom
	}
	if len(m.TemplateValues) == 0 {
		return nil, errors.New("path_templates: no templates")
	}
	for tmpl, value := range m.TemplateValues {
		if err := pt.root.add(tmpl, value); err != nil {
			return nil, fmt.Errorf("path template %q: %w", tmpl, err)
		}
	}
	return pt, nil
}

// add inserts a template. It checks what matching relies on; the full
// syntax is checked by policies validation.
func (n *pathNode) add(tmpl, value string) error {
	if !strings.HasPrefix(tmpl, "/") {
		return errors.New("must start with '/'")
	}
	rest := tmpl[1:]
	for rest != "" {
		seg, after, more := strings.Cut(rest, "/")
		rest = after
		switch {
		case seg == "":
			return errors.New("empty segment")
		case seg == "*":
			if more {
				return errors.New("'*' must be the last segment")
			}
			if n.rest != nil {
				return errors.New("duplicate template")
			}
			n.rest = &value
			return nil
		case seg[0] == '{':
			if n.param == nil {
				n.param = &pathNode{}
			}
			n = n.param
		default:
			if n.literals == nil {
				n.literals = map[string]*pathNode{}
			}
			c := n.literals[seg]
			if c == nil {
				c = &pathNode{}
				n.literals[seg] = c
			}
			n = c
		}
		if more && rest == "" {
			return errors.New("empty segment")
		}
	}
	if n.end != nil {
		return errors.New("duplicate template")
	}
	n.end = &value
	return nil
}

func (pt *pathTemplates) extract(labels map[string]string) (string, bool, error) {
	target, ok := labels[pt.from]
	if !ok {
		return "", false, nil
	}
	path, ok := requestPath(target)
	if !ok {
		return "", false, nil
	}
	v, ok := pt.root.match(path)
	return v, ok, nil
}

// requestPath returns the path of a request target: origin form
// ("/a/b?q") or absolute form ("http://host/a/b?q"), without query or
// fragment. ok is false for other forms ("*", "host:port", "").
func requestPath(target string) (string, bool) {
	if i := strings.IndexAny(target, "?#"); i >= 0 {
		target = target[:i]
	}
	if strings.HasPrefix(target, "/") {
		return target, true
	}
	_, hier, ok := strings.Cut(target, "://")
	if !ok || strings.Contains(target[:len(target)-len(hier)-3], "/") {
		return "", false
	}
	if i := strings.IndexByte(hier, '/'); i >= 0 {
		return hier[i:], true
	}
	return "/", true
}

// nextSegment splits the first non-empty segment off a path.
func nextSegment(path string) (seg, rest string) {
	path = strings.TrimLeft(path, "/")
	if i := strings.IndexByte(path, '/'); i >= 0 {
		return path[:i], path[i:]
	}
	return path, ""
}

// match returns the value of the most specific template under n matching
// path.
func (n *pathNode) match(path string) (string, bool) {
	seg, rest := nextSegment(path)
	if seg == "" {
		switch {
		case n.end != nil:
			return *n.end, true
		case n.rest != nil:
			return *n.rest, true
		}
		return "", false
	}
	if c := n.literals[seg]; c != nil {
		if v, ok := c.match(rest); ok {
			return v, true
		}
	}
	if n.param != nil {
		if v, ok := n.param.match(rest); ok {
			return v, true
		}
	}
	if n.rest != nil {
		return *n.rest, true
	}
	return "", false
}
