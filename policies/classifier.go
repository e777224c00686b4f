package policies

import (
	"regexp"
	"strings"
)

// Classifier adds flow labels at the control points its selectors pick,
// computed by extractor rules, by a Rego module, or both (each label by
// one of them).
type Classifier struct {
	Selectors []Selector       `yaml:"selectors"`
	Rules     map[string]*Rule `yaml:"rules,omitempty"` // label name → rule
	Rego      *Rego            `yaml:"rego,omitempty"`
}

// Rule computes one flow label.
type Rule struct {
	Extractor *Extractor `yaml:"extractor"`
	// Telemetry makes the label appear in traces and flux meter metrics.
	Telemetry bool `yaml:"telemetry,omitempty"`
}

// Extractor says how a label value is computed from the flow's labels.
// Exactly one field is set. A source label that is absent, or a value the
// extractor does not match, gives no label.
type Extractor struct {
	// From copies the value of a flow label, such as "http.method".
	From string `yaml:"from,omitempty"`
	// JSON reads a value out of a label holding a JSON document.
	JSON *JSONExtractor `yaml:"json,omitempty"`
	// Address reads the IP address out of a label holding "ip:port" or an
	// IP address.
	Address *AddressExtractor `yaml:"address,omitempty"`
	// PathTemplates maps a request path to the value of the most specific
	// template it matches.
	PathTemplates *PathTemplateMatcher `yaml:"path_templates,omitempty"`
}

// JSONExtractor reads the value at an RFC 6901 JSON pointer (such as
// "/user/id"; "~1" stands for '/' and "~0" for '~' in a key) from the JSON
// document held in label From. An empty pointer means the whole document.
// Strings are used as they are; other values as compact JSON text.
type JSONExtractor struct {
	From    string `yaml:"from" required:"true"`
	Pointer string `yaml:"pointer,omitempty"`
}

// AddressExtractor reads the IP address of label From, which holds
// "ip:port", "[ipv6]:port" or a bare IP address, normalised (IPv4-mapped
// IPv6 addresses become IPv4, zones are dropped).
type AddressExtractor struct {
	From string `yaml:"from" required:"true"`
}

// DefaultPathTemplatesFrom is the label path templates read when From is
// empty: the request target of HTTP control points.
const DefaultPathTemplatesFrom = "http.target"

// PathTemplateMatcher matches the path in label From (default
// DefaultPathTemplatesFrom; a query or fragment is ignored) against
// templates and gives the value of the most specific one that matches.
//
// A template is "/" (only the root path) or a sequence of "/segment"s,
// each a literal, a parameter "{name}" that matches any one segment, or,
// as the last segment only, "*", which matches any rest of the path,
// including none. Empty path segments are ignored. Comparing two matching
// templates segment by segment from the left, the first difference
// decides: a literal beats a parameter, which beats the end of the
// template, which beats "*".
type PathTemplateMatcher struct {
	From           string            `yaml:"from,omitempty"`
	TemplateValues map[string]string `yaml:"template_values" required:"true"` // template → label value
}

// Rego computes labels with a Rego module (Rego v1 syntax). Each label is
// the value of the rule of the same name in the module's package; a label
// name with dots ("user.tier") names a rule with a ref head (user.tier).
type Rego struct {
	Module string                `yaml:"module" required:"true"`
	Labels map[string]*RegoLabel `yaml:"labels"`
	// RegoVersion is the syntax of Module: v1 (the default) or v0, the
	// syntax before OPA 1.0 that Aperture's policies are written in.
	RegoVersion string `yaml:"rego_version,omitempty"`
}

// RegoLabel is one label computed by a Rego module.
type RegoLabel struct {
	Telemetry bool `yaml:"telemetry,omitempty"`
}

// Validate checks a classifier on its own. The error joins *FieldError
// values whose paths start at the classifier.
func (c *Classifier) Validate() error {
	var v validator
	c.validate(&v, nil)
	return v.err()
}

func (c *Classifier) validate(v *validator, p fieldPath) {
	validateSelectors(v, p.key("selectors"), c.Selectors)
	if len(c.Rules) == 0 && c.Rego == nil {
		v.add(p, "a classifier needs rules or rego")
	}
	for _, name := range sortedKeys(c.Rules) {
		rp := p.key("rules").key(name)
		checkResourceName(v, rp, "label", name)
		switch r := c.Rules[name]; {
		case r == nil || r.Extractor == nil:
			v.add(rp, "rule %q needs an extractor", name)
		default:
			r.Extractor.validate(v, rp.key("extractor"))
		}
	}
	if r := c.Rego; r != nil {
		rp := p.key("rego")
		if r.Module == "" {
			v.missing(rp, "module")
		}
		if r.RegoVersion != "" && r.RegoVersion != "v0" && r.RegoVersion != "v1" {
			v.add(rp.key("rego_version"), "rego_version %q is not one of v0, v1", r.RegoVersion)
		}
		if len(r.Labels) == 0 {
			v.add(rp, "rego needs at least one label")
		}
		for _, name := range sortedKeys(r.Labels) {
			lp := rp.key("labels").key(name)
			checkResourceName(v, lp, "label", name)
			if !regoLabelRE.MatchString(name) {
				v.add(lp, "invalid rego label name %q: must be a Rego rule name (letters, digits and '_', not starting with a digit), or several joined by '.'", name)
			}
			if _, dup := c.Rules[name]; dup {
				v.add(lp, "label %q is computed by both a rule and rego", name)
			}
		}
	}
}

// regoLabelRE is what Rego label names look like: rule names, possibly
// joined by dots into a ref.
var regoLabelRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$`)

func (e *Extractor) validate(v *validator, p fieldPath) {
	var set []string
	if e.From != "" {
		set = append(set, "from")
	}
	if j := e.JSON; j != nil {
		set = append(set, "json")
		jp := p.key("json")
		if j.From == "" {
			v.missing(jp, "from")
		}
		if msg := checkJSONPointer(j.Pointer); msg != "" {
			v.add(jp.key("pointer"), "%s", msg)
		}
	}
	if a := e.Address; a != nil {
		set = append(set, "address")
		if a.From == "" {
			v.missing(p.key("address"), "from")
		}
	}
	if t := e.PathTemplates; t != nil {
		set = append(set, "path_templates")
		t.validate(v, p.key("path_templates"))
	}
	if len(set) != 1 {
		v.add(p, "an extractor must set exactly one of from, json, address, path_templates; got %s", orNone(set))
	}
}

func (t *PathTemplateMatcher) validate(v *validator, p fieldPath) {
	vp := p.key("template_values")
	if len(t.TemplateValues) == 0 {
		if t.TemplateValues == nil {
			v.missing(p, "template_values")
		} else {
			v.add(vp, "template_values needs at least one template")
		}
		return
	}
	seen := make(map[string]string, len(t.TemplateValues)) // shape → template
	for _, tmpl := range sortedKeys(t.TemplateValues) {
		if msg := checkPathTemplate(tmpl); msg != "" {
			v.add(vp.key(tmpl), "%s", msg)
			continue
		}
		shape := templateShape(tmpl)
		if first, dup := seen[shape]; dup {
			v.add(vp.key(tmpl), "path template %q matches the same paths as %q", tmpl, first)
			continue
		}
		seen[shape] = tmpl
	}
}

// checkJSONPointer returns why p is not an RFC 6901 JSON pointer, or "".
func checkJSONPointer(p string) string {
	if p != "" && p[0] != '/' {
		return `invalid JSON pointer "` + p + `": must be empty or start with '/'`
	}
	for i := 0; i < len(p); i++ {
		if p[i] == '~' && (i+1 == len(p) || (p[i+1] != '0' && p[i+1] != '1')) {
			return `invalid JSON pointer "` + p + `": '~' must be followed by 0 or 1`
		}
	}
	return ""
}

// templateParamRE is what a path template parameter looks like.
var templateParamRE = regexp.MustCompile(`^\{[A-Za-z_][A-Za-z0-9_]*\}$`)

// checkPathTemplate returns why t is not a path template (see
// PathTemplateMatcher), or "".
func checkPathTemplate(t string) string {
	bad := func(why string) string { return `invalid path template "` + t + `": ` + why }
	switch {
	case t == "/":
		return ""
	case !strings.HasPrefix(t, "/"):
		return bad("must start with '/'")
	case strings.ContainsAny(t, "?#"):
		return bad("must not contain '?' or '#'")
	}
	segs := strings.Split(t[1:], "/")
	for i, s := range segs {
		switch {
		case s == "":
			return bad("empty segment")
		case s == "*":
			if i != len(segs)-1 {
				return bad("'*' must be the last segment")
			}
		case strings.Contains(s, "*"):
			return bad("'*' must be a whole segment")
		case strings.HasPrefix(s, "{"):
			if !templateParamRE.MatchString(s) {
				return bad("invalid parameter " + s + ": want {name}, name made of letters, digits and '_'")
			}
		case strings.ContainsAny(s, "{}"):
			return bad("'{' and '}' may only enclose a whole segment")
		}
	}
	return ""
}

// templateShape returns a valid template with parameter names erased: two
// templates with the same shape match the same paths.
func templateShape(t string) string {
	segs := strings.Split(t, "/")
	for i, s := range segs {
		if strings.HasPrefix(s, "{") {
			segs[i] = "{}"
		}
	}
	return strings.Join(segs, "/")
}
