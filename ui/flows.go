package ui

import (
	"math"
	"sort"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/fluxgate/fluxgate/metricnames"
)

// Metric families the flows view reads from the agent's registry.
const (
	decisionsFamily = metricnames.FlowDecisionsTotal
	fluxMeterFamily = metricnames.FluxMeter
)

// Flows is the body of GET /v1/ui/flows: the agent's decision counters and
// flux meter histograms as they stand. They are cumulative; the page
// turns successive answers into rates and percentiles.
type Flows struct {
	NowMs      int64       `json:"now_ms"`
	Decisions  []Decisions `json:"decisions"`
	FluxMeters []FluxMeter `json:"flux_meters"`
}

// Decisions counts the decisions of one policy's component at one control
// point of one type and reason.
type Decisions struct {
	ControlPoint string  `json:"control_point"`
	Policy       string  `json:"policy"`
	Component    string  `json:"component"`
	DecisionType string  `json:"decision_type"`
	Reason       string  `json:"reason"`
	Count        float64 `json:"count"`
}

// FluxMeter is one flux meter's histogram, summed over its other labels
// (policy, decision, status).
type FluxMeter struct {
	Name    string   `json:"name"`
	Count   float64  `json:"count"`
	Sum     float64  `json:"sum"`
	Buckets []Bucket `json:"buckets"` // cumulative, by upper bound; +Inf left out
}

// Bucket is a cumulative histogram bucket.
type Bucket struct {
	LE    float64 `json:"le"`
	Count float64 `json:"count"`
}

// readFlows gathers the decision and flux meter families from g.
func readFlows(g prometheus.Gatherer, nowMs int64) (Flows, error) {
	out := Flows{NowMs: nowMs, Decisions: []Decisions{}, FluxMeters: []FluxMeter{}}
	if g == nil {
		return out, nil
	}
	mfs, err := g.Gather()
	if err != nil && len(mfs) == 0 {
		return out, err
	}
	meters := map[string]*FluxMeter{}
	for _, mf := range mfs {
		switch mf.GetName() {
		case decisionsFamily:
			for _, m := range mf.GetMetric() {
				l := labels(m)
				out.Decisions = append(out.Decisions, Decisions{
					ControlPoint: l[metricnames.LabelControlPoint], Policy: l[metricnames.LabelPolicyName], Component: l[metricnames.LabelComponentID],
					DecisionType: l[metricnames.LabelDecisionType], Reason: l[metricnames.LabelReason], Count: m.GetCounter().GetValue(),
				})
			}
		case fluxMeterFamily:
			for _, m := range mf.GetMetric() {
				name := labels(m)[metricnames.LabelFluxMeterName]
				fm := meters[name]
				if fm == nil {
					fm = &FluxMeter{Name: name}
					meters[name] = fm
				}
				h := m.GetHistogram()
				fm.Count += float64(h.GetSampleCount())
				fm.Sum += h.GetSampleSum()
				for _, b := range h.GetBucket() {
					if math.IsInf(b.GetUpperBound(), 0) {
						continue // JSON has no +Inf; Count is that bucket
					}
					fm.add(b.GetUpperBound(), float64(b.GetCumulativeCount()))
				}
			}
		}
	}
	for _, fm := range meters {
		sort.Slice(fm.Buckets, func(i, j int) bool { return fm.Buckets[i].LE < fm.Buckets[j].LE })
		out.FluxMeters = append(out.FluxMeters, *fm)
	}
	sort.Slice(out.FluxMeters, func(i, j int) bool { return out.FluxMeters[i].Name < out.FluxMeters[j].Name })
	return out, nil
}

func (fm *FluxMeter) add(le, count float64) {
	for i := range fm.Buckets {
		if fm.Buckets[i].LE == le {
			fm.Buckets[i].Count += count
			return
		}
	}
	fm.Buckets = append(fm.Buckets, Bucket{LE: le, Count: count})
}

func labels(m *dto.Metric) map[string]string {
	out := make(map[string]string, len(m.GetLabel()))
	for _, lp := range m.GetLabel() {
		out[lp.GetName()] = lp.GetValue()
	}
	return out
}
