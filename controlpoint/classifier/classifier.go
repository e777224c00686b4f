// Package classifier computes flow labels at a control point from a
// policy's classifier resource: declarative extractor rules and Rego
// modules.
package classifier

import (
	"context"
	"fmt"

	"github.com/fluxgate/fluxgate/policies"
)

// Classifier is a compiled policies.Classifier. It is safe for concurrent
// use.
type Classifier struct {
	rules map[string]*policies.Rule
}

// New compiles c. Everything that can fail is checked here, at load.
func New(c *policies.Classifier) (*Classifier, error) {
	for label, r := range c.Rules {
		if r.Extractor == nil || r.Extractor.From == "" {
			return nil, fmt.Errorf("classifier rule %q: extractor.from is required", label)
		}
	}
	return &Classifier{rules: c.Rules}, nil
}

// Classify returns the labels the classifier computes for a flow at
// controlPoint with labels. It does not modify labels. An error leaves the
// flow's decision unaffected: the caller reports it and goes on.
func (c *Classifier) Classify(ctx context.Context, controlPoint string, labels map[string]string) (map[string]string, error) {
	out := make(map[string]string, len(c.rules))
	for label, r := range c.rules {
		if v, ok := labels[r.Extractor.From]; ok {
			out[label] = v
		}
	}
	return out, nil
}
