package policies

import (
	"fmt"
	"math"
)

// SchedulerParameters configure the weighted fair queue of the
// flow_control.quota_scheduler and flow_control.concurrency_scheduler
// components (Aperture's Scheduler): which workload a flow joins, its
// priority (share of a saturated queue: 1 + priority), its cost in tokens
// and how long it may wait.
type SchedulerParameters struct {
	// Workloads are tried in order; a flow joins the first that matches,
	// else the default workload.
	Workloads                 []Workload         `yaml:"workloads,omitempty"`
	DefaultWorkloadParameters WorkloadParameters `yaml:"default_workload_parameters,omitempty"`
	// WorkloadLabelKey names a flow label whose value names the flow's
	// workload: the workload of that name when one is listed, else a
	// workload of its own with the default parameters. It wins over the
	// label matchers.
	WorkloadLabelKey string `yaml:"workload_label_key,omitempty"`
	// PriorityLabelKey names a flow label holding the flow's priority, a
	// number within 0..255 (others are ignored), instead of its
	// workload's.
	PriorityLabelKey string `yaml:"priority_label_key,omitempty"`
	// TokensLabelKey names a flow label holding the flow's cost, instead
	// of its workload's tokens (a label from baggage never counts).
	TokensLabelKey string `yaml:"tokens_label_key,omitempty"`
	// FairnessLabelKey names a flow label whose values share their
	// workload's turns fairly while its flows wait: a value with many
	// flows waiting does not hold up the others. Without it, flows of a
	// workload wait in arrival order.
	FairnessLabelKey string `yaml:"fairness_label_key,omitempty"`
	// DeniedResponseStatusCode is the HTTP status of a rejection (503).
	DeniedResponseStatusCode int `yaml:"denied_response_status_code,omitempty"`
}

// checkScheduler validates scheduler parameters at field (e.g. "scheduler").
func checkScheduler(errs []error, field string, s SchedulerParameters) []error {
	before := len(errs)
	errs = checkWorkloads(errs, s.Workloads, s.DefaultWorkloadParameters)
	for i := before; i < len(errs); i++ {
		errs[i] = fmt.Errorf("%s.%s", field, trimParameters(errs[i].Error()))
	}
	seen := map[string]bool{}
	for i, w := range s.Workloads {
		if w.Name == "" {
			continue
		}
		if seen[w.Name] {
			errs = append(errs, fmt.Errorf("%s.workloads[%d].name: %q is used twice", field, i, w.Name))
		}
		seen[w.Name] = true
	}
	return checkStatus(errs, field+".denied_response_status_code", s.DeniedResponseStatusCode)
}

// trimParameters drops checkWorkloads' "parameters." prefix.
func trimParameters(s string) string {
	const p = "parameters."
	if len(s) > len(p) && s[:len(p)] == p {
		return s[len(p):]
	}
	return s
}

// checkTokens validates a workload's tokens.
func checkTokens(errs []error, where string, tokens float64) []error {
	if tokens < 0 || math.IsNaN(tokens) || math.IsInf(tokens, 0) {
		errs = append(errs, fmt.Errorf("%s.tokens must be a finite number ≥ 0, got %v", where, tokens))
	}
	return errs
}
