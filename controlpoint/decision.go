package controlpoint

import (
	"time"

	"github.com/fluxgate/fluxgate/controlpoint/concurrency"
	"github.com/fluxgate/fluxgate/controlpoint/controlpointpb"
)

// Request is one flow asking to pass a control point.
type Request struct {
	// ControlPoint names where the flow is, e.g. "ingress". Required.
	ControlPoint string
	// Labels are the flow's labels. Classifiers add theirs to this map
	// (allocating it when nil), so limiters can select on them.
	Labels map[string]string
	// Tokens is the flow's cost; 0 means 1.
	Tokens float64
	// NoFlowEnd says the caller cannot report the flow's end (nginx
	// auth_request, Envoy ext_authz). Components that hold a slot until
	// the end (adaptive_concurrency) then let the flow pass, marked
	// PassThrough, rather than hold a slot nobody frees.
	NoFlowEnd bool
	// RampMode says the flow must pass a ramp (a sampler with
	// parameters.ramp_mode) to be admitted: with none selecting it, it is
	// rejected with ReasonNoMatchingRamp (Aperture's ramp_mode flag).
	RampMode bool
}

// Reason says why a component rejected a flow.
type Reason = controlpointpb.RejectReason

// Reasons, as in the check API.
const (
	ReasonNone         = controlpointpb.RejectReason_REJECT_REASON_NONE
	ReasonRateLimited  = controlpointpb.RejectReason_REJECT_REASON_RATE_LIMITED
	ReasonNotSampled   = controlpointpb.RejectReason_REJECT_REASON_NOT_SAMPLED
	ReasonNoTokens     = controlpointpb.RejectReason_REJECT_REASON_NO_TOKENS
	ReasonFailedClosed = controlpointpb.RejectReason_REJECT_REASON_FAILED_CLOSED
	// ReasonNoMatchingRamp rejects a RampMode flow that no ramp selected.
	ReasonNoMatchingRamp = controlpointpb.RejectReason_REJECT_REASON_NO_MATCHING_RAMP
)

// LimiterDecision is what one flow-control component decided.
type LimiterDecision struct {
	PolicyName      string
	PolicyNamespace string
	ComponentID     string
	ComponentType   string // rate_limiter, sampler, quota_scheduler, …
	// Dropped is true when the component rejected the flow, or with
	// DryRun would have.
	Dropped bool
	DryRun  bool
	Reason  Reason
	// PassThrough is true when the component let the flow through because
	// an input had no valid value, or its pass_through port was true.
	PassThrough bool
	Remaining   float64
	Limit       float64
	Wait        time.Duration
	Reset       time.Duration
	LimitKey    string
	StatusCode  int // HTTP status of a rejection
	// Failure is set when a global (Redis) rate limiter's store did not
	// decide and its failure_mode did: "fail_open: timeout",
	// "fail_closed: breaker_open", "local_fallback: error".
	Failure string
	// Workload and Priority are the flow's workload and priority in a
	// quota or concurrency scheduler.
	Workload string
	Priority float64

	ref        int                // index of the component in its control point's list
	held       bool               // a slotHolder component holds a slot for the flow
	ticket     concurrency.Ticket // adaptive_concurrency's slot, when held
	slotKey    string             // a concurrency limiter's key, when held
	slotTokens float64            // and how many slots
}

// tookTokens reports whether the component charged the flow: took tokens,
// or holds a slot (a dry-run adaptive_concurrency holds one even for a
// flow it would have rejected).
func (ld *LimiterDecision) tookTokens() bool { return ld.held || !ld.Dropped && !ld.PassThrough }

// ClassifierResult reports one classifier that matched the flow.
type ClassifierResult struct {
	PolicyName      string
	PolicyNamespace string
	Index           int
	Labels          map[string]string
	Error           string
}

// Decision is the engine's answer. Reuse one Decision across checks: Check
// resets it and reuses its slices, which keeps the hot path free of
// allocations.
type Decision struct {
	ControlPoint string
	Accepted     bool
	// Reason, StatusCode and Wait come from the component that rejected
	// the flow (the first enforcing one).
	Reason     Reason
	StatusCode int
	Wait       time.Duration
	// Decider is the index in Limiters of the component that rejected the
	// flow, or -1 (also for a RampMode flow no ramp selected).
	Decider     int
	Limiters    []LimiterDecision
	FluxMeters  []string // "namespace/policy/name"
	Classifiers []ClassifierResult
	// FlowID is nonzero when a component holds a slot for the admitted
	// flow: the caller reports the flow's end with Engine.EndFlow.
	FlowID uint64
}

func (d *Decision) reset(cp string) {
	d.ControlPoint = cp
	d.Accepted = true
	d.Reason = ReasonNone
	d.StatusCode = 0
	d.Wait = 0
	d.Decider = -1
	d.FlowID = 0
	d.Limiters = d.Limiters[:0]
	d.FluxMeters = d.FluxMeters[:0]
	d.Classifiers = d.Classifiers[:0]
}

// Rejector returns the decision of the component that rejected the flow,
// or nil when it was accepted.
func (d *Decision) Rejector() *LimiterDecision {
	if d.Decider < 0 {
		return nil
	}
	return &d.Limiters[d.Decider]
}
