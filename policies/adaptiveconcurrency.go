package policies

import (
	"fmt"
	"time"
)

func init() {
	RegisterComponent("flow_control.adaptive_concurrency", func() any { return &AdaptiveConcurrency{} })
}

// AdaptiveConcurrency is the flow_control.adaptive_concurrency component:
// service protection decided in the data path. It bounds the flows in
// flight to the selected service and learns the bound from the flows'
// latencies as they end (the built-in gateway and the Go middleware
// report ends themselves; other clients call the check API's FlowEnd).
// It needs no circuit: a circuit may steer it through its optional in
// ports. Flows beyond the bound wait in a weighted fair queue, by
// workload, for at most the queue delay (by default the service's
// learned no-load latency), then are rejected with
// REJECT_REASON_NO_TOKENS. The package doc of controlpoint/concurrency
// describes the estimator.
type AdaptiveConcurrency struct {
	Selectors  []Selector                    `yaml:"selectors"`
	InPorts    AdaptiveConcurrencyInPorts    `yaml:"in_ports,omitempty"`
	Parameters AdaptiveConcurrencyParameters `yaml:"parameters,omitempty"`
	DryRun     bool                          `yaml:"dry_run,omitempty"`
}

// AdaptiveConcurrencyInPorts are optional signals from a circuit, the
// outer loop: a latency objective in milliseconds (instead of the learned
// no-load latency × latency_tolerance) and bounds of the limit. A port
// without a valid value leaves the parameter in charge.
type AdaptiveConcurrencyInPorts struct {
	LatencyObjectiveMs *InPort `yaml:"latency_objective_ms,omitempty"`
	MinConcurrency     *InPort `yaml:"min_concurrency,omitempty"`
	MaxConcurrency     *InPort `yaml:"max_concurrency,omitempty"`
}

// AdaptiveConcurrencyParameters tune the limiter; every field has a
// default that works from services of 10 req/s of 500 ms to 10,000 req/s
// of 1 ms.
type AdaptiveConcurrencyParameters struct {
	// InitialConcurrency is the limit before anything is learned (16).
	InitialConcurrency float64 `yaml:"initial_concurrency,omitempty"`
	// MinConcurrency and MaxConcurrency bound the limit (1 and 10,000).
	MinConcurrency float64 `yaml:"min_concurrency,omitempty"`
	MaxConcurrency float64 `yaml:"max_concurrency,omitempty"`
	// LatencyTolerance: the limit shrinks while latency is above the
	// no-load latency × this (1.5).
	LatencyTolerance float64 `yaml:"latency_tolerance,omitempty"`
	// MaxQueueDelay is the longest a flow of the highest-priority workload
	// waits for a slot (lower priorities wait down to half of it, by
	// weight); 0 means the learned no-load latency, within 1ms..1s.
	MaxQueueDelay time.Duration `yaml:"max_queue_delay,omitempty"`
	// ProbeInterval: how long the limit may bind without seeing the
	// service idle before it probes for the no-load latency (30s).
	ProbeInterval time.Duration `yaml:"probe_interval,omitempty"`
	// MaxFlowDuration frees the slot of a flow whose end is not reported
	// within it (60s, at most MaxFlowDurationLimit), so a client that
	// crashes cannot leak slots.
	MaxFlowDuration time.Duration `yaml:"max_flow_duration,omitempty"`
	// Workloads share a saturated limiter by priority, as in the
	// load_scheduler; a flow joins the first that matches.
	Workloads                 []Workload         `yaml:"workloads,omitempty"`
	DefaultWorkloadParameters WorkloadParameters `yaml:"default_workload_parameters,omitempty"`
	// DeniedResponseStatusCode is the HTTP status of a rejection (503).
	DeniedResponseStatusCode int `yaml:"denied_response_status_code,omitempty"`
}

// DefaultMaxFlowDuration is how long an admitted flow holds its slot when
// its end is never reported.
const DefaultMaxFlowDuration = time.Minute

// MaxFlowDurationLimit bounds max_flow_duration. The limiter learns from
// flows that are requests: a window needs 8 of them to end, and common
// proxy timeouts end a request within a minute or two (nginx and AWS ALB
// 60 s, Cloudflare 100 s). Until a flow expires its slot is taken, so a
// client that crashes while holding flows shrinks the service's limit,
// and the flow table keeps the flows of dry-run components, for up to
// max_flow_duration: ten times the default bounds that to minutes, not
// hours. Connections that stay open longer (streams, websockets) are not
// flows this limiter can learn from.
const MaxFlowDurationLimit = 10 * time.Minute

// Validate implements the component registry's validation hook.
func (a *AdaptiveConcurrency) Validate() []error {
	var errs []error
	errs = checkSelectors(errs, a.Selectors)
	errs = checkInPort(errs, "latency_objective_ms", a.InPorts.LatencyObjectiveMs, false)
	errs = checkInPort(errs, "min_concurrency", a.InPorts.MinConcurrency, false)
	errs = checkInPort(errs, "max_concurrency", a.InPorts.MaxConcurrency, false)
	p := a.Parameters
	for _, f := range []struct {
		name string
		v    float64
	}{{"initial_concurrency", p.InitialConcurrency}, {"min_concurrency", p.MinConcurrency}, {"max_concurrency", p.MaxConcurrency}} {
		if f.v < 0 {
			errs = append(errs, fmt.Errorf("parameters.%s must not be negative, got %v", f.name, f.v))
		}
	}
	if p.MaxConcurrency > 0 && p.MinConcurrency > p.MaxConcurrency {
		errs = append(errs, fmt.Errorf("parameters.min_concurrency (%v) must not be above max_concurrency (%v)", p.MinConcurrency, p.MaxConcurrency))
	}
	if p.LatencyTolerance != 0 && p.LatencyTolerance < 1 {
		errs = append(errs, fmt.Errorf("parameters.latency_tolerance must be at least 1 (target = no-load latency × latency_tolerance), got %v", p.LatencyTolerance))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"max_queue_delay", p.MaxQueueDelay}, {"probe_interval", p.ProbeInterval}, {"max_flow_duration", p.MaxFlowDuration}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("parameters.%s must not be negative, got %s", d.name, d.v))
		}
	}
	if p.MaxFlowDuration > MaxFlowDurationLimit {
		errs = append(errs, fmt.Errorf("parameters.max_flow_duration must be at most %s (a flow whose end is never reported holds its slot that long), got %s", MaxFlowDurationLimit, p.MaxFlowDuration))
	}
	errs = checkWorkloads(errs, p.Workloads, p.DefaultWorkloadParameters)
	if p.DefaultWorkloadParameters.Tokens != 0 {
		errs = append(errs, fmt.Errorf("parameters.default_workload_parameters.tokens: adaptive_concurrency counts flows, not tokens"))
	}
	for i, w := range p.Workloads {
		if w.Parameters.Tokens != 0 {
			errs = append(errs, fmt.Errorf("parameters.workloads[%d].parameters.tokens: adaptive_concurrency counts flows, not tokens", i))
		}
	}
	return checkStatus(errs, "parameters.denied_response_status_code", p.DeniedResponseStatusCode)
}
