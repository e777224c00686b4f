package controlpoint

import (
	"context"
	"maps"
	"time"

	"github.com/fluxgate/fluxgate/controlpoint/classifier"
	"github.com/fluxgate/fluxgate/controlpoint/flow"
)

// Explanation says what the engine would do with a flow and why, without
// taking tokens or counting anything.
type Explanation struct {
	ControlPoint string `json:"control_point"`
	// Labels are the flow's labels after classifiers ran.
	Labels      map[string]string     `json:"labels"`
	Accepted    bool                  `json:"accepted"`
	Reason      string                `json:"reason"`
	Classifiers []ExplainedClassifier `json:"classifiers"`
	FluxMeters  []string              `json:"flux_meters"`
	Components  []ExplainedComponent  `json:"components"`
	// NoPolicy is true when no policy has anything at this control point.
	NoPolicy bool `json:"no_policy"`
}

// ExplainedClassifier is a classifier at the control point.
type ExplainedClassifier struct {
	Policy  string            `json:"policy"`
	Index   int               `json:"index"`
	Matched bool              `json:"matched"`
	Labels  map[string]string `json:"labels,omitempty"`
	Error   string            `json:"error,omitempty"`
}

// ExplainedComponent is a flow-control component at the control point and
// what it would decide.
type ExplainedComponent struct {
	Policy        string `json:"policy"`
	ComponentID   string `json:"component_id"`
	ComponentType string `json:"component_type"`
	// Matched is false when the component's selectors skip the flow.
	Matched bool `json:"matched"`
	DryRun  bool `json:"dry_run"`
	// WouldReject is true when the component would reject the flow (with
	// dry_run it would only count it).
	WouldReject bool    `json:"would_reject"`
	Reason      string  `json:"reason,omitempty"`
	PassThrough bool    `json:"pass_through,omitempty"`
	LimitKey    string  `json:"limit_key,omitempty"`
	Remaining   float64 `json:"remaining"`
	Limit       float64 `json:"limit"`
	WaitSeconds float64 `json:"wait_seconds,omitempty"`
	// Unreached is true when an earlier component would already reject the
	// flow, so this one would not be asked.
	Unreached bool `json:"unreached,omitempty"`
}

// Explain reports which classifiers, flux meters and flow-control
// components apply to the flow in req and what each would decide. It
// changes no state: no tokens are taken and no metric moves. req.Labels is
// not modified.
func (e *Engine) Explain(ctx context.Context, now time.Time, req *Request) *Explanation {
	labels := maps.Clone(req.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	x := &Explanation{ControlPoint: req.ControlPoint, Labels: labels, Accepted: true, Reason: flow.ReasonLabel(ReasonNone),
		Classifiers: []ExplainedClassifier{}, FluxMeters: []string{}, Components: []ExplainedComponent{}}
	pt := e.snap.Load().points[req.ControlPoint]
	if pt == nil {
		x.NoPolicy = true
		return x
	}
	ctx = classifier.WithBudget(ctx) // one Rego budget, as in Check
	for i := range pt.classifiers {
		ref := &pt.classifiers[i]
		ec := ExplainedClassifier{Policy: ref.policy.key.String(), Index: ref.index, Matched: anyMatch(ref.sels, labels)}
		if ec.Matched {
			out, err := ref.c.Classify(ctx, req.ControlPoint, labels)
			if err != nil {
				ec.Error = err.Error()
			}
			ec.Labels = out
			maps.Copy(labels, out)
		}
		x.Classifiers = append(x.Classifiers, ec)
	}
	for i := range pt.fluxMeters {
		if anyMatch(pt.fluxMeters[i].sels, labels) {
			x.FluxMeters = append(x.FluxMeters, pt.fluxMeters[i].name)
		}
	}
	tokens := req.Tokens
	if tokens <= 0 {
		tokens = 1
	}
	for i := range pt.components {
		ref := &pt.components[i]
		info := ref.info
		ec := ExplainedComponent{
			Policy:        info.policyNamespace + "/" + info.policyName,
			ComponentID:   info.id,
			ComponentType: info.typ,
			DryRun:        info.dryRun,
			Matched:       anyMatch(ref.sels, labels),
			Unreached:     !x.Accepted,
		}
		if ec.Matched {
			var ld LimiterDecision
			ref.c.decide(ctx, now, labels, tokens, false, &ld)
			ec.WouldReject, ec.PassThrough, ec.LimitKey = ld.Dropped, ld.PassThrough, ld.LimitKey
			ec.Remaining, ec.Limit, ec.WaitSeconds = ld.Remaining, ld.Limit, ld.Wait.Seconds()
			if ld.Dropped {
				ec.Reason = flow.ReasonLabel(ld.Reason)
				if !ld.DryRun && x.Accepted {
					x.Accepted, x.Reason = false, ec.Reason
				}
			}
		}
		x.Components = append(x.Components, ec)
	}
	return x
}
