package policies

import (
	"fmt"
	"time"
)

func init() {
	RegisterComponent("flow_control.concurrency_limiter", func() any { return &ConcurrencyLimiter{} })
	RegisterComponent("flow_control.concurrency_scheduler", func() any { return &ConcurrencyScheduler{} })
}

// ConcurrencyLimiter is the flow_control.concurrency_limiter component
// (Aperture's concurrency limiter): at most max_concurrency flows (tokens,
// with tokens_label_key) in flight per value of limit_by_label_key. An
// admitted flow holds its slot until its end is reported (the check
// answer's flow id to FlowEnd, POST /v1/flow/end or Aperture's FlowEnd)
// or max_inflight_duration passes. A flow that finds its key full is
// rejected at once with REJECT_REASON_NO_TOKENS; a check that cannot
// report the end (nginx auth_request, Envoy ext_authz) passes through.
type ConcurrencyLimiter struct {
	Selectors         []Selector                          `yaml:"selectors"`
	InPorts           ConcurrencyLimiterInPorts           `yaml:"in_ports"`
	Parameters        ConcurrencyLimiterParameters        `yaml:"parameters,omitempty"`
	RequestParameters ConcurrencyLimiterRequestParameters `yaml:"request_parameters,omitempty"`
	// DryRun admits every flow and counts those the limit would have
	// rejected (the flows that fit still hold their slots).
	DryRun bool `yaml:"dry_run,omitempty"`
}

// ConcurrencyLimiterInPorts are the concurrency limiter's inputs. Without
// a valid max_concurrency (a signal not produced yet, NaN) every flow
// passes through.
type ConcurrencyLimiterInPorts struct {
	MaxConcurrency *InPort `yaml:"max_concurrency"`
	// PassThrough, while true (valid and not 0), admits every flow the
	// component selects at once, holding no slot (Aperture's
	// pass_through).
	PassThrough *InPort `yaml:"pass_through,omitempty"`
}

// ConcurrencyLimiterParameters key the limit and bound a flow's hold.
type ConcurrencyLimiterParameters struct {
	// LimitByLabelKey counts flows per value of this flow label; flows
	// without it share the key "unknown". Unset: one count.
	LimitByLabelKey string `yaml:"limit_by_label_key,omitempty"`
	// MaxInflightDuration frees the slot of a flow whose end is not
	// reported within it (default 60s); expiry runs every second.
	MaxInflightDuration time.Duration `yaml:"max_inflight_duration,omitempty"`
}

// ConcurrencyLimiterRequestParameters set a flow's cost and the answer of a
// rejection.
type ConcurrencyLimiterRequestParameters struct {
	// TokensLabelKey names a flow label holding how many slots the flow
	// takes (else the check request's tokens, 1 by default).
	TokensLabelKey string `yaml:"tokens_label_key,omitempty"`
	// DeniedResponseStatusCode is the HTTP status of a rejection (429).
	DeniedResponseStatusCode int `yaml:"denied_response_status_code,omitempty"`
}

// Validate implements the component registry's validation hook.
func (c *ConcurrencyLimiter) Validate() []error {
	var errs []error
	errs = checkSelectors(errs, c.Selectors)
	errs = checkMaxConcurrency(errs, c.InPorts)
	errs = checkInflight(errs, "parameters", c.Parameters)
	return checkStatus(errs, "request_parameters.denied_response_status_code", c.RequestParameters.DeniedResponseStatusCode)
}

func checkMaxConcurrency(errs []error, in ConcurrencyLimiterInPorts) []error {
	errs = checkInPort(errs, "max_concurrency", in.MaxConcurrency, true)
	errs = checkInPort(errs, "pass_through", in.PassThrough, false)
	if v, ok := in.MaxConcurrency.Constant(); ok && v < 0 {
		errs = append(errs, fmt.Errorf("in_ports.max_concurrency.constant_signal must not be negative, got %v", v))
	}
	return errs
}

func checkInflight(errs []error, field string, p ConcurrencyLimiterParameters) []error {
	if p.MaxInflightDuration < 0 {
		errs = append(errs, fmt.Errorf("%s.max_inflight_duration must not be negative", field))
	}
	return errs
}

// ConcurrencyScheduler is the flow_control.concurrency_scheduler component
// (Aperture's concurrency scheduler): the concurrency limiter's slots
// handed out by a weighted fair queue. A flow that finds its key full
// waits, behind the flows of its key by workload priority, until a slot
// is freed for it (a flow's end, or its max_inflight_duration) or its
// workload's queue_timeout passes (never past the caller's deadline);
// then it is rejected with REJECT_REASON_NO_TOKENS. Under contention the
// workloads share the slots in proportion to 1 + priority.
type ConcurrencyScheduler struct {
	Selectors          []Selector                   `yaml:"selectors"`
	InPorts            ConcurrencyLimiterInPorts    `yaml:"in_ports"`
	ConcurrencyLimiter ConcurrencyLimiterParameters `yaml:"concurrency_limiter,omitempty"`
	Scheduler          SchedulerParameters          `yaml:"scheduler,omitempty"`
	// DryRun admits every flow at once and counts those that would have
	// waited for a slot.
	DryRun bool `yaml:"dry_run,omitempty"`
}

// Validate implements the component registry's validation hook.
func (c *ConcurrencyScheduler) Validate() []error {
	var errs []error
	errs = checkSelectors(errs, c.Selectors)
	errs = checkMaxConcurrency(errs, c.InPorts)
	errs = checkInflight(errs, "concurrency_limiter", c.ConcurrencyLimiter)
	return checkScheduler(errs, "scheduler", c.Scheduler)
}
