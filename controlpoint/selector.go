package controlpoint

import (
	"fmt"
	"regexp"
	"sort"

	"github.com/fluxgate/fluxgate/policies"
)

// ServiceLabel is the flow label a selector's service field is matched
// against. FluxGate has no service discovery of its own: callers say which
// service a flow belongs to by setting this label.
const ServiceLabel = "service"

// selector is a compiled policies.Selector: everything is resolved at load
// so that matching a flow reads labels and compares strings, nothing more.
type selector struct {
	controlPoint string
	service      string // "" or "any" matches every flow
	labels       labelMatcher
}

// compileSelectors keeps the selectors of agentGroup and compiles them.
func compileSelectors(sels []policies.Selector, agentGroup string) ([]selector, error) {
	var out []selector
	for i, s := range sels {
		group := s.AgentGroup
		if group == "" {
			group = policies.DefaultAgentGroup
		}
		if group != agentGroup {
			continue
		}
		lm, err := compileLabelMatcher(s.LabelMatcher)
		if err != nil {
			return nil, fmt.Errorf("selectors[%d]: %w", i, err)
		}
		svc := s.Service
		if svc == "any" {
			svc = ""
		}
		out = append(out, selector{controlPoint: s.ControlPoint, service: svc, labels: lm})
	}
	return out, nil
}

// matches reports whether the flow's labels satisfy the selector. The
// control point is matched by the caller, which indexes by it.
func (s *selector) matches(labels map[string]string) bool {
	if s.service != "" && labels[ServiceLabel] != s.service {
		return false
	}
	return s.labels.matches(labels)
}

type labelPair struct{ key, value string }

// labelMatcher is a compiled policies.LabelMatcher. The zero value matches
// every flow.
type labelMatcher struct {
	equals []labelPair
	reqs   []requirement
	expr   *expr
}

type requirement struct {
	key    string
	op     string
	values []string
}

func compileLabelMatcher(m *policies.LabelMatcher) (labelMatcher, error) {
	var lm labelMatcher
	if m == nil {
		return lm, nil
	}
	for k, v := range m.MatchLabels {
		lm.equals = append(lm.equals, labelPair{k, v})
	}
	sort.Slice(lm.equals, func(i, j int) bool { return lm.equals[i].key < lm.equals[j].key })
	for _, r := range m.MatchList {
		lm.reqs = append(lm.reqs, requirement{key: r.Key, op: r.Operator, values: r.Values})
	}
	if m.Expression != nil {
		e, err := compileExpr(m.Expression)
		if err != nil {
			return lm, err
		}
		lm.expr = e
	}
	return lm, nil
}

func (m *labelMatcher) matches(labels map[string]string) bool {
	for _, p := range m.equals {
		if v, ok := labels[p.key]; !ok || v != p.value {
			return false
		}
	}
	for i := range m.reqs {
		if !m.reqs[i].matches(labels) {
			return false
		}
	}
	return m.expr == nil || m.expr.eval(labels)
}

func (r *requirement) matches(labels map[string]string) bool {
	v, ok := labels[r.key]
	switch r.op {
	case policies.OpExists:
		return ok
	case policies.OpDoesNotExist:
		return !ok
	case policies.OpIn:
		return ok && contains(r.values, v)
	case policies.OpNotIn:
		return !ok || !contains(r.values, v)
	}
	return false
}

func contains(vals []string, v string) bool {
	for _, x := range vals {
		if x == v {
			return true
		}
	}
	return false
}

// expr is a compiled policies.MatchExpression.
type expr struct {
	op    exprOp
	args  []*expr
	label string
	value string
	re    *regexp.Regexp
}

type exprOp uint8

const (
	opNot exprOp = iota
	opAll
	opAny
	opExists
	opEquals
	opMatches
)

func compileExpr(m *policies.MatchExpression) (*expr, error) {
	list := func(op exprOp, of []*policies.MatchExpression) (*expr, error) {
		e := &expr{op: op}
		for _, sub := range of {
			c, err := compileExpr(sub)
			if err != nil {
				return nil, err
			}
			e.args = append(e.args, c)
		}
		return e, nil
	}
	switch {
	case m.Not != nil:
		c, err := compileExpr(m.Not)
		if err != nil {
			return nil, err
		}
		return &expr{op: opNot, args: []*expr{c}}, nil
	case m.All != nil:
		return list(opAll, m.All.Of)
	case m.Any != nil:
		return list(opAny, m.Any.Of)
	case m.LabelExists != "":
		return &expr{op: opExists, label: m.LabelExists}, nil
	case m.LabelEquals != nil:
		return &expr{op: opEquals, label: m.LabelEquals.Label, value: m.LabelEquals.Value}, nil
	case m.LabelMatches != nil:
		re, err := regexp.Compile(m.LabelMatches.Regex)
		if err != nil {
			return nil, fmt.Errorf("label_matches %q: %w", m.LabelMatches.Regex, err)
		}
		return &expr{op: opMatches, label: m.LabelMatches.Label, re: re}, nil
	}
	return nil, fmt.Errorf("empty match expression")
}

func (e *expr) eval(labels map[string]string) bool {
	switch e.op {
	case opNot:
		return !e.args[0].eval(labels)
	case opAll:
		for _, a := range e.args {
			if !a.eval(labels) {
				return false
			}
		}
		return true
	case opAny:
		for _, a := range e.args {
			if a.eval(labels) {
				return true
			}
		}
		return false
	case opExists:
		_, ok := labels[e.label]
		return ok
	case opEquals:
		v, ok := labels[e.label]
		return ok && v == e.value
	case opMatches:
		v, ok := labels[e.label]
		return ok && e.re.MatchString(v)
	}
	return false
}
