package policies

// Classifier adds flow labels at the control points its selectors pick,
// computed by extractor rules or by a Rego module.
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

// Extractor says where a label value comes from. Only the attribute path is
// defined so far, such as "request.http.headers.user-agent".
type Extractor struct {
	From string `yaml:"from"`
}

// Rego computes labels with a Rego module; each label is a rule of the
// module.
type Rego struct {
	Module string                `yaml:"module" required:"true"`
	Labels map[string]*RegoLabel `yaml:"labels"`
}

// RegoLabel is one label computed by a Rego module.
type RegoLabel struct {
	Telemetry bool `yaml:"telemetry,omitempty"`
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
		case r.Extractor.From == "":
			v.add(rp.key("extractor"), "extractor needs from")
		}
	}
	if r := c.Rego; r != nil {
		rp := p.key("rego")
		if r.Module == "" {
			v.missing(rp, "module", "Rego")
		}
		if len(r.Labels) == 0 {
			v.add(rp, "rego needs at least one label")
		}
		for _, name := range sortedKeys(r.Labels) {
			checkResourceName(v, rp.key("labels").key(name), "label", name)
		}
	}
}
