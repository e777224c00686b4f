package controlpoint

import (
	"fmt"
	"strconv"
	"time"

	"github.com/fluxgate/fluxgate/controlpoint/scheduler"
	"github.com/fluxgate/fluxgate/policies"
)

// schedWorkloads places flows into the workloads of a quota or
// concurrency scheduler (policies.SchedulerParameters): by
// workload_label_key, else the first label matcher that matches, else the
// default workload; priority_label_key and tokens_label_key override the
// workload's priority and tokens.
type schedWorkloads struct {
	list        []workload
	byName      map[string]*workload
	fallback    workload
	workloadKey string
	priorityKey string
	tokensKey   string
	fairnessKey string
}

// flowShare is where a flow waits and what it costs.
type flowShare struct {
	workload string
	priority float64
	weight   float64
	timeout  time.Duration
	tokens   float64
	fairness string // the fairness label's value
}

func newSchedWorkloads(p policies.SchedulerParameters) (*schedWorkloads, error) {
	s := &schedWorkloads{
		byName:      map[string]*workload{},
		fallback:    newWorkload("default", p.DefaultWorkloadParameters),
		workloadKey: p.WorkloadLabelKey,
		priorityKey: p.PriorityLabelKey,
		tokensKey:   p.TokensLabelKey,
		fairnessKey: p.FairnessLabelKey,
	}
	for i, w := range p.Workloads {
		m, err := compileLabelMatcher(w.LabelMatcher)
		if err != nil {
			return nil, fmt.Errorf("scheduler.workloads[%d]: %w", i, err)
		}
		name := w.Name
		if name == "" {
			name = strconv.Itoa(i)
		}
		wl := newWorkload(name, w.Parameters)
		wl.match = m
		s.list = append(s.list, wl)
	}
	for i := range s.list {
		s.byName[s.list[i].name] = &s.list[i]
	}
	return s, nil
}

// share places a flow of the given request tokens (1 by default).
func (s *schedWorkloads) share(labels map[string]string, tokens float64) flowShare {
	w := s.pick(labels)
	f := flowShare{workload: w.name, priority: w.weight - 1, weight: w.weight, timeout: w.timeout, tokens: tokens}
	if s.workloadKey != "" {
		if v, ok := labels[s.workloadKey]; ok && s.byName[v] == nil {
			f.workload = v // a workload of its own, with the default parameters
		}
	}
	if s.priorityKey != "" {
		// A priority from baggage would let any client raise its own.
		if v, ok := labels[s.priorityKey]; ok && !fromBaggage(labels, s.priorityKey, v) {
			if p, err := strconv.ParseFloat(v, 64); err == nil && p >= 0 && p <= 255 {
				f.priority, f.weight = p, 1+p
			}
		}
	}
	if w.tokens > 0 {
		f.tokens = w.tokens
	}
	f.tokens = labelCost(labels, s.tokensKey, f.tokens)
	if s.fairnessKey != "" {
		f.fairness = labels[s.fairnessKey]
	}
	return f
}

// gateRequest is the flow's request to a scheduler.Gate on key.
func (f flowShare) gateRequest(key string) scheduler.GateRequest {
	return scheduler.GateRequest{Key: key, Workload: f.workload, Weight: f.weight, Tokens: f.tokens, Timeout: f.timeout, Fairness: f.fairness}
}

func (s *schedWorkloads) pick(labels map[string]string) *workload {
	if s.workloadKey != "" {
		if v, ok := labels[s.workloadKey]; ok {
			if w := s.byName[v]; w != nil {
				return w
			}
			return &s.fallback
		}
	}
	for i := range s.list {
		if s.list[i].match.matches(labels) {
			return &s.list[i]
		}
	}
	return &s.fallback
}
