package policies

import (
	"regexp"
	"slices"
	"strings"
)

// DefaultAgentGroup is the agent group of selectors that do not name one.
const DefaultAgentGroup = "default"

// Selector picks the flows a resource or component applies to: those at a
// control point, optionally of one service, in one agent group, with
// matching labels.
type Selector struct {
	ControlPoint string        `yaml:"control_point" required:"true"`
	Service      string        `yaml:"service,omitempty"`
	AgentGroup   string        `yaml:"agent_group,omitempty"` // default "default"
	LabelMatcher *LabelMatcher `yaml:"label_matcher,omitempty"`
}

// LabelMatcher matches flow labels. All of its parts must match; an empty
// matcher matches every flow.
type LabelMatcher struct {
	MatchLabels map[string]string  `yaml:"match_labels,omitempty"`
	MatchList   []MatchRequirement `yaml:"match_list,omitempty"`
	Expression  *MatchExpression   `yaml:"expression,omitempty"`
}

// Label requirement operators.
const (
	OpIn           = "In"
	OpNotIn        = "NotIn"
	OpExists       = "Exists"
	OpDoesNotExist = "DoesNotExist"
)

// MatchRequirement is one requirement on a label, as in Kubernetes label
// selectors.
type MatchRequirement struct {
	Key      string   `yaml:"key" required:"true"`
	Operator string   `yaml:"operator" required:"true"` // In, NotIn, Exists, DoesNotExist
	Values   []string `yaml:"values,omitempty"`
}

// MatchExpression is a boolean expression over labels. Exactly one field is
// set.
type MatchExpression struct {
	Not          *MatchExpression        `yaml:"not,omitempty"`
	All          *MatchExpressionList    `yaml:"all,omitempty"`
	Any          *MatchExpressionList    `yaml:"any,omitempty"`
	LabelExists  string                  `yaml:"label_exists,omitempty"`
	LabelEquals  *EqualsMatchExpression  `yaml:"label_equals,omitempty"`
	LabelMatches *MatchesMatchExpression `yaml:"label_matches,omitempty"`
}

// MatchExpressionList is the operand list of all and any.
type MatchExpressionList struct {
	Of []*MatchExpression `yaml:"of"`
}

// EqualsMatchExpression matches when a label has a value.
type EqualsMatchExpression struct {
	Label string `yaml:"label" required:"true"`
	Value string `yaml:"value,omitempty"`
}

// MatchesMatchExpression matches when a label matches a regular expression
// (Go RE2 syntax).
type MatchesMatchExpression struct {
	Label string `yaml:"label" required:"true"`
	Regex string `yaml:"regex" required:"true"`
}

func setSelectorDefaults(sels []Selector) {
	for i := range sels {
		if sels[i].AgentGroup == "" {
			sels[i].AgentGroup = DefaultAgentGroup
		}
	}
}

func validateSelectors(v *validator, p fieldPath, sels []Selector) {
	if len(sels) == 0 {
		v.add(p, "at least one selector is required")
	}
	for i := range sels {
		sels[i].validate(v, p.index(i))
	}
}

func (s *Selector) validate(v *validator, p fieldPath) {
	if s.ControlPoint == "" {
		v.missing(p, "control_point")
	}
	if s.LabelMatcher != nil {
		s.LabelMatcher.validate(v, p.key("label_matcher"))
	}
}

func (m *LabelMatcher) validate(v *validator, p fieldPath) {
	for k := range m.MatchLabels {
		if k == "" {
			v.add(p.key("match_labels"), "label names must not be empty")
		}
	}
	for i, r := range m.MatchList {
		rp := p.key("match_list").index(i)
		if r.Key == "" {
			v.missing(rp, "key")
		}
		switch r.Operator {
		case OpIn, OpNotIn:
			if len(r.Values) == 0 {
				v.add(rp.key("values"), "operator %s needs at least one value", r.Operator)
			}
		case OpExists, OpDoesNotExist:
			if len(r.Values) > 0 {
				v.add(rp.key("values"), "operator %s takes no values", r.Operator)
			}
		case "":
			v.missing(rp, "operator")
		default:
			v.add(rp.key("operator"), "unknown operator %q; want In, NotIn, Exists or DoesNotExist", r.Operator)
		}
	}
	if m.Expression != nil {
		m.Expression.validate(v, p.key("expression"))
	}
}

func (e *MatchExpression) validate(v *validator, p fieldPath) {
	var set []string
	if e.Not != nil {
		set = append(set, "not")
		e.Not.validate(v, p.key("not"))
	}
	for _, l := range []struct {
		name string
		list *MatchExpressionList
	}{{"all", e.All}, {"any", e.Any}} {
		if l.list == nil {
			continue
		}
		set = append(set, l.name)
		lp := p.key(l.name)
		if len(l.list.Of) == 0 {
			v.add(lp, "%s needs at least one expression in of", l.name)
		}
		for i, sub := range l.list.Of {
			if sub == nil {
				v.add(lp.key("of").index(i), "expression must not be empty")
				continue
			}
			sub.validate(v, lp.key("of").index(i))
		}
	}
	if e.LabelExists != "" {
		set = append(set, "label_exists")
	}
	if eq := e.LabelEquals; eq != nil {
		set = append(set, "label_equals")
		if eq.Label == "" {
			v.missing(p.key("label_equals"), "label")
		}
	}
	if m := e.LabelMatches; m != nil {
		set = append(set, "label_matches")
		mp := p.key("label_matches")
		if m.Label == "" {
			v.missing(mp, "label")
		}
		if m.Regex == "" {
			v.missing(mp, "regex")
		} else if _, err := regexp.Compile(m.Regex); err != nil {
			v.add(mp.key("regex"), "invalid regex %q: %v", m.Regex, err)
		}
	}
	if len(set) != 1 {
		v.add(p, "expression must set exactly one of not, all, any, label_exists, label_equals, label_matches; got %s",
			orNone(set))
	}
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// resourceNameRE is what flux meter and classifier rule names may look
// like: they become metric label values and URL path segments.
var resourceNameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?$`)

func checkResourceName(v *validator, p fieldPath, what, name string) {
	if len(name) > maxNameLen || !resourceNameRE.MatchString(name) {
		v.add(p, "invalid %s name %q: must be letters, digits, '_', '-' and '.', start and end with a letter or digit, at most %d characters", what, name, maxNameLen)
	}
}

// fluxMeterNameRE also takes '/': Aperture's blueprints name flux meters
// "policy/purpose/0". The name is a label value and the last part of
// "namespace/policy/name", never a path segment of its own.
var fluxMeterNameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9_./-]*[A-Za-z0-9])?$`)

func checkFluxMeterName(v *validator, p fieldPath, name string) {
	if len(name) > maxNameLen || !fluxMeterNameRE.MatchString(name) {
		v.add(p, "invalid flux meter name %q: must be letters, digits, '_', '-', '.' and '/', start and end with a letter or digit, at most %d characters", name, maxNameLen)
	}
}
