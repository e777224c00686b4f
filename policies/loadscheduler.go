package policies

import (
	"fmt"
	"time"
)

func init() {
	RegisterComponent("flow_control.load_scheduler", func() any { return &LoadScheduler{} })
}

// LoadScheduler is the flow_control.load_scheduler component: adaptive
// service protection. Its load_multiplier input (from a circuit, e.g. a
// gradient controller on latency) scales the rate at which flows are
// admitted relative to the rate at which they arrive: 0.8 admits 80% of
// the incoming token rate, 1 or more (or no valid value) admits all.
// Flows beyond the rate wait in a weighted fair queue, by workload, up to
// their workload's queue_timeout (and never past the caller's deadline),
// and are then rejected with REJECT_REASON_NO_TOKENS.
type LoadScheduler struct {
	Selectors  []Selector              `yaml:"selectors"`
	InPorts    LoadSchedulerInPorts    `yaml:"in_ports"`
	Parameters LoadSchedulerParameters `yaml:"parameters,omitempty"`
	DryRun     bool                    `yaml:"dry_run,omitempty"`
}

// LoadSchedulerInPorts are the load scheduler's inputs.
type LoadSchedulerInPorts struct {
	LoadMultiplier *InPort `yaml:"load_multiplier"`
}

// LoadSchedulerParameters configure the queue.
type LoadSchedulerParameters struct {
	// Workloads are tried in order; a flow joins the first that matches,
	// else the default workload.
	Workloads                 []Workload         `yaml:"workloads,omitempty"`
	DefaultWorkloadParameters WorkloadParameters `yaml:"default_workload_parameters,omitempty"`
	// TokensLabelKey names a flow label holding the flow's cost.
	TokensLabelKey string `yaml:"tokens_label_key,omitempty"`
	// FairnessLabelKey names a flow label whose values share their
	// workload's turns fairly while its flows wait (as in
	// SchedulerParameters).
	FairnessLabelKey string `yaml:"fairness_label_key,omitempty"`
	// DeniedResponseStatusCode is the HTTP status of a rejection (default 503).
	DeniedResponseStatusCode int `yaml:"denied_response_status_code,omitempty"`
}

// Workload is a class of flows with its own share of the queue.
type Workload struct {
	Name         string             `yaml:"name,omitempty"`
	LabelMatcher *LabelMatcher      `yaml:"label_matcher"`
	Parameters   WorkloadParameters `yaml:"parameters,omitempty"`
}

// WorkloadParameters set a workload's share and patience.
type WorkloadParameters struct {
	// Priority 0..255: a workload's share of a saturated queue is
	// proportional to 1+priority. Default 0.
	Priority float64 `yaml:"priority,omitempty"`
	// QueueTimeout is the longest a flow waits (default 1s).
	QueueTimeout time.Duration `yaml:"queue_timeout,omitempty"`
	// Tokens is the cost of a flow of the workload when its
	// tokens_label_key label does not say (0: the check request's tokens,
	// 1 by default). The adaptive_concurrency component counts flows, not
	// tokens, and refuses it.
	Tokens float64 `yaml:"tokens,omitempty"`
}

// Validate implements the component registry's validation hook.
func (l *LoadScheduler) Validate() []error {
	var errs []error
	errs = checkSelectors(errs, l.Selectors)
	errs = checkInPort(errs, "load_multiplier", l.InPorts.LoadMultiplier, true)
	errs = checkWorkloads(errs, l.Parameters.Workloads, l.Parameters.DefaultWorkloadParameters)
	return checkStatus(errs, "parameters.denied_response_status_code", l.Parameters.DeniedResponseStatusCode)
}

// checkWorkloads validates a scheduler's workloads and its default one.
func checkWorkloads(errs []error, workloads []Workload, def WorkloadParameters) []error {
	check := func(where string, p WorkloadParameters) {
		if p.Priority < 0 || p.Priority > 255 {
			errs = append(errs, fmt.Errorf("%s.priority must be within 0..255, got %v", where, p.Priority))
		}
		if p.QueueTimeout < 0 {
			errs = append(errs, fmt.Errorf("%s.queue_timeout must not be negative", where))
		}
		errs = checkTokens(errs, where, p.Tokens)
	}
	check("parameters.default_workload_parameters", def)
	for i, w := range workloads {
		where := fmt.Sprintf("parameters.workloads[%d]", i)
		if w.LabelMatcher == nil {
			errs = append(errs, fmt.Errorf("%s.label_matcher is required", where))
		}
		check(where+".parameters", w.Parameters)
	}
	return errs
}
