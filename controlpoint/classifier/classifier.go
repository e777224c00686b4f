package classifier

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/fluxgate/fluxgate/policies"
)

// Classifier is a compiled policies.Classifier. It is immutable and safe
// for concurrent use.
type Classifier struct {
	rules []rule     // sorted by label
	rego  *regoQuery // nil without rego
	size  int        // how many labels it can produce
}

// UsesRego reports whether Classify evaluates a Rego module: a call that
// may take long enough that an event loop must not wait for it.
func (c *Classifier) UsesRego() bool { return c.rego != nil }

// rule computes one label with an extractor.
type rule struct {
	label string
	ex    extractor
}

// extractor computes a label value from a flow's labels. ok is false when
// there is no value; err says why the source could not be read.
type extractor interface {
	extract(labels map[string]string) (value string, ok bool, err error)
}

// New compiles c. It validates c first (policies.Classifier.Validate), so
// a classifier built in Go gets the checks a parsed one gets; everything
// that can fail, fails here.
func New(c *policies.Classifier) (*Classifier, error) {
	if c == nil {
		return nil, errors.New("classifier: nil classifier")
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("classifier: %w", err)
	}
	cl := &Classifier{}
	for label, r := range c.Rules {
		ex, err := newExtractor(r.Extractor)
		if err != nil {
			return nil, fmt.Errorf("classifier: rule %q: %w", label, err)
		}
		cl.rules = append(cl.rules, rule{label: label, ex: ex})
	}
	slices.SortFunc(cl.rules, func(a, b rule) int { return cmp.Compare(a.label, b.label) })
	cl.size = len(cl.rules)
	if c.Rego != nil {
		q, err := newRegoQuery(c.Rego)
		if err != nil {
			return nil, err
		}
		cl.rego = q
		cl.size += len(q.labels)
	}
	return cl, nil
}

// newExtractor compiles a validated extractor.
func newExtractor(e *policies.Extractor) (extractor, error) {
	switch {
	case e.From != "":
		return fromExtractor(e.From), nil
	case e.JSON != nil:
		return newJSONExtractor(e.JSON)
	case e.Address != nil:
		return addressExtractor(e.Address.From), nil
	case e.PathTemplates != nil:
		return newPathTemplates(e.PathTemplates)
	}
	return nil, errors.New("extractor sets none of from, json, address, path_templates")
}

// Classify returns the labels the classifier computes for a flow at
// controlPoint with labels. It does not modify labels. The map is never
// nil; it holds the labels that could be computed even when the error is
// not nil, which joins one error per failing rule and at most one for the
// Rego module. An error leaves the flow's decision unaffected: the caller
// reports it and goes on.
func (c *Classifier) Classify(ctx context.Context, controlPoint string, labels map[string]string) (map[string]string, error) {
	out := make(map[string]string, c.size)
	var errs []error
	for i := range c.rules {
		r := &c.rules[i]
		v, ok, err := r.ex.extract(labels)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("classifier: label %q: %w", r.label, err))
		case ok:
			out[r.label] = v
		}
	}
	if c.rego != nil {
		if err := c.rego.eval(ctx, controlPoint, labels, out); err != nil {
			errs = append(errs, err)
		}
	}
	return out, errors.Join(errs...)
}
