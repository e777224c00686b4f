package policies

import (
	"time"
)

// DefaultEvaluationInterval is how often a circuit runs unless it says.
const DefaultEvaluationInterval = time.Second

// MinEvaluationInterval is the shortest evaluation interval accepted.
const MinEvaluationInterval = 10 * time.Millisecond

// Policy is a flow-control policy in the Aperture style: resources
// (flux meters, classifiers) and a circuit.
type Policy struct {
	Header `yaml:",inline"`
	Spec   PolicySpec `yaml:"spec"`
}

// PolicySpec is the body of a Policy.
type PolicySpec struct {
	Resources Resources `yaml:"resources,omitempty"`
	Circuit   Circuit   `yaml:"circuit,omitempty"`
}

// Resources are the measurements and labels a policy sets up at control
// points.
type Resources struct {
	FluxMeters  map[string]*FluxMeter `yaml:"flux_meters,omitempty"`
	Classifiers []*Classifier         `yaml:"classifiers,omitempty"`
}

// Circuit is a dataflow graph of components evaluated every
// EvaluationInterval.
type Circuit struct {
	EvaluationInterval time.Duration `yaml:"evaluation_interval,omitempty"` // default 1s, at least 10ms
	Components         []*Component  `yaml:"components"`
}

// newPolicy returns a Policy holding the defaults that apply when a key is
// absent; Parse decodes onto it.
func newPolicy() *Policy {
	p := &Policy{}
	p.Header.setDefaults(KindPolicy)
	p.APIVersion, p.Kind = "", "" // these must be written
	p.Spec.Circuit.EvaluationInterval = DefaultEvaluationInterval
	return p
}

// SetDefaults fills every zero field that has a default: apiVersion, kind,
// namespace, evaluation interval, selectors' agent group, flux meters'
// attribute key.
func (p *Policy) SetDefaults() {
	p.Header.setDefaults(KindPolicy)
	if p.Spec.Circuit.EvaluationInterval == 0 {
		p.Spec.Circuit.EvaluationInterval = DefaultEvaluationInterval
	}
	p.setNestedDefaults()
}

// setNestedDefaults fills defaults inside values that the decoder allocates
// (map values and slice elements), which cannot be pre-filled.
func (p *Policy) setNestedDefaults() {
	for _, fm := range p.Spec.Resources.FluxMeters {
		if fm != nil {
			fm.setDefaults()
		}
	}
	for _, c := range p.Spec.Resources.Classifiers {
		if c != nil {
			setSelectorDefaults(c.Selectors)
		}
	}
}

func (p *Policy) afterDecode() { p.setNestedDefaults() }

// Validate checks the policy, including component kinds and specs. The
// error joins *FieldError values.
func (p *Policy) Validate() error {
	var v validator
	p.validate(&v, validateAll)
	return v.err()
}

func (p *Policy) validate(v *validator, mode validateMode) {
	p.Header.validate(v, KindPolicy)
	spec := fieldPath{"spec"}
	res := spec.key("resources")
	for _, name := range sortedKeys(p.Spec.Resources.FluxMeters) {
		fp := res.key("flux_meters").key(name)
		checkFluxMeterName(v, fp, name)
		if fm := p.Spec.Resources.FluxMeters[name]; fm == nil {
			v.add(fp, "flux meter %q must not be empty", name)
		} else {
			fm.validate(v, fp)
		}
	}
	for i, c := range p.Spec.Resources.Classifiers {
		cp := res.key("classifiers").index(i)
		if c == nil {
			v.add(cp, "classifier must not be empty")
			continue
		}
		c.validate(v, cp)
	}
	circ := spec.key("circuit")
	if ei := p.Spec.Circuit.EvaluationInterval; ei < MinEvaluationInterval {
		v.add(circ.key("evaluation_interval"), "evaluation_interval must be at least %s, got %s", MinEvaluationInterval, ei)
	}
	for i, c := range p.Spec.Circuit.Components {
		cp := circ.key("components").index(i)
		switch {
		case c == nil:
			v.add(cp, "component must not be empty")
		case mode == validateAll: // else the decoder checked kind and spec
			c.validate(v, cp)
		}
	}
}
