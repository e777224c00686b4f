package circuit

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/fluxgate/fluxgate/metricnames"
	"github.com/fluxgate/fluxgate/policies"
	"github.com/fluxgate/fluxgate/policies/strictyaml"
)

// fluxMeterName finds the flux meter a query reads.
var fluxMeterName = regexp.MustCompile(`flux_meter_name\s*=\s*"([^"]+)"`)

// Lint returns warnings about a circuit that loads but may not do what its
// author meant; they never refuse a policy. Today it checks one thing: a
// decider that compares a flux meter quantile (a query.promql output using
// histogram_quantile over one of the policy's flux meters) with a constant
// that is not one of that meter's bucket boundaries. histogram_quantile
// interpolates inside a bucket, so such a threshold flips at an imprecise
// value. Warnings are positioned at the decider, without a file name.
func Lint(p *policies.Policy) strictyaml.ErrorList {
	quantiles := map[string]string{} // signal → flux meter name
	for _, c := range p.Spec.Circuit.Components {
		q, ok := specOf[*PromQL](c)
		if !ok || !strings.Contains(q.QueryString, "histogram_quantile") || !strings.Contains(q.QueryString, metricnames.FluxMeterBucket) {
			continue
		}
		m := fluxMeterName.FindStringSubmatch(q.QueryString)
		if m == nil || q.OutPorts.Output == nil {
			continue
		}
		if _, ours := p.Spec.Resources.FluxMeters[m[1]]; ours {
			quantiles[q.OutPorts.Output.SignalName] = m[1]
		}
	}
	var out strictyaml.ErrorList
	for _, c := range p.Spec.Circuit.Components {
		d, ok := specOf[*Decider](c)
		if !ok {
			continue
		}
		for _, pair := range [][2]*policies.InPort{{d.InPorts.LHS, d.InPorts.RHS}, {d.InPorts.RHS, d.InPorts.LHS}} {
			sig, other := pair[0], pair[1]
			if sig == nil || other == nil || other.ConstantSignal == nil {
				continue
			}
			meter, ok := quantiles[sig.SignalName]
			if !ok {
				continue
			}
			threshold := other.ConstantSignal.Float()
			buckets := p.Spec.Resources.FluxMeters[meter].Buckets()
			if containsFloat(buckets, threshold) {
				continue
			}
			out = append(out, &strictyaml.Error{Line: c.Line, Column: c.Column, Msg: fmt.Sprintf(
				"warning: decider compares %s, a quantile of flux meter %q, with %v, which is not one of its bucket boundaries (%s); histogram_quantile interpolates inside a bucket, so add %v to the meter's buckets",
				sig.SignalName, meter, threshold, formatFloats(buckets), threshold)})
		}
	}
	return out
}

// specOf returns a component's spec as T.
func specOf[T any](c *policies.Component) (T, bool) {
	var zero T
	if c == nil {
		return zero, false
	}
	s, ok := c.Spec.(T)
	return s, ok
}

func containsFloat(xs []float64, x float64) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

func formatFloats(xs []float64) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.FormatFloat(x, 'g', -1, 64)
	}
	return strings.Join(s, ", ")
}
