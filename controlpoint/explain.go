package controlpoint

import (
	"context"
	"maps"
	"time"

	"github.com/fluxgate/fluxgate/api"
	"github.com/fluxgate/fluxgate/controlpoint/classifier"
	"github.com/fluxgate/fluxgate/controlpoint/flow"
)

// Explain reports which classifiers, flux meters and flow-control
// components apply to the flow in req and what each would decide. It
// changes no state: no tokens are taken and no metric moves. req.Labels is
// not modified.
func (e *Engine) Explain(ctx context.Context, now time.Time, req *Request) *api.Explanation {
	labels := maps.Clone(req.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	x := &api.Explanation{ControlPoint: req.ControlPoint, Labels: labels, Accepted: true, Reason: flow.ReasonLabel(ReasonNone),
		Classifiers: []api.ExplainedClassifier{}, FluxMeters: []string{}, Components: []api.ExplainedComponent{}}
	pt := e.snap.Load().points[req.ControlPoint]
	if pt == nil {
		x.NoPolicy = true
		return x
	}
	ctx = classifier.WithBudget(ctx) // one Rego budget, as in Check
	for i := range pt.classifiers {
		ref := &pt.classifiers[i]
		ec := api.ExplainedClassifier{Policy: ref.policy.key.String(), Index: ref.index, Matched: anyMatch(ref.sels, labels)}
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
		ec := api.ExplainedComponent{
			Policy:        info.policyNamespace + "/" + info.policyName,
			ComponentID:   info.id,
			ComponentType: info.typ,
			DryRun:        info.dryRun,
			Matched:       anyMatch(ref.sels, labels),
			Unreached:     !x.Accepted,
		}
		if ec.Matched {
			var ld LimiterDecision
			ref.c.decide(ctx, now, labels, tokens, false, &ld) // take false: holds nothing
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
