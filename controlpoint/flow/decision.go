package flow

import (
	"time"

	pb "github.com/fluxgate/fluxgate/controlpoint/controlpointpb"
)

// Request is one flow asking to pass a control point: what a Checker of
// the SDK and the agent's engine (controlpoint.Engine) are asked.
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
	// PassThrough, rather than hold a slot nobody frees. The check API
	// does not carry it: adapters inside the agent set it.
	NoFlowEnd bool
	// RampMode says the flow must pass a ramp (a sampler with
	// parameters.ramp_mode) to be admitted: with none selecting it, it is
	// rejected with ReasonNoMatchingRamp (Aperture's ramp_mode flag). The
	// check API does not carry it: Aperture's adapter sets it.
	RampMode bool
}

// Reason says why a component rejected a flow. Its values are the check
// API's (ReasonLabel names them).
type Reason = pb.RejectReason

// Reasons, as in the check API.
const (
	ReasonNone         = pb.RejectReason_REJECT_REASON_NONE
	ReasonRateLimited  = pb.RejectReason_REJECT_REASON_RATE_LIMITED
	ReasonNotSampled   = pb.RejectReason_REJECT_REASON_NOT_SAMPLED
	ReasonNoTokens     = pb.RejectReason_REJECT_REASON_NO_TOKENS
	ReasonFailedClosed = pb.RejectReason_REJECT_REASON_FAILED_CLOSED
	// ReasonBreakerOpen: the SDK's breaker in front of the agent was open.
	ReasonBreakerOpen = pb.RejectReason_REJECT_REASON_BREAKER_OPEN
	// ReasonNoMatchingRamp rejects a RampMode flow that no ramp selected.
	ReasonNoMatchingRamp = pb.RejectReason_REJECT_REASON_NO_MATCHING_RAMP
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
}

// ClassifierResult reports one classifier that matched the flow.
type ClassifierResult struct {
	PolicyName      string
	PolicyNamespace string
	Index           int
	Labels          map[string]string
	Error           string
}

// Decision is the answer to one Request, the one shape of a decision
// inside a process: the engine writes it, the SDK's checkers fill it
// (from the check API's response when the agent is remote), and the
// adapters and middleware read it. Protobuf and JSON are its forms on the
// wire only (ToProto, FromProto).
//
// Reuse one Decision across checks: Reset keeps its slices, which keeps
// the check path free of allocations. A Decision is not safe for
// concurrent use.
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
	// flow: the caller reports the flow's end (Engine.EndFlow, or the
	// check API's FlowEnd).
	FlowID uint64
}

// Reset makes d an empty acceptance at control point cp, keeping the
// room of its slices.
func (d *Decision) Reset(cp string) {
	*d = Decision{
		ControlPoint: cp,
		Accepted:     true,
		Decider:      -1,
		Limiters:     d.Limiters[:0],
		FluxMeters:   d.FluxMeters[:0],
		Classifiers:  d.Classifiers[:0],
	}
}

// Rejector returns the decision of the component that rejected the flow,
// the first one that dropped it and is not a dry run (Limiters[Decider]
// of the engine's decisions), or nil: the flow was accepted, or nothing
// named rejected it (a failure mode, a ramp-mode flow no ramp selected).
// A rejection's headers, body and trailers name its policy.
func (d *Decision) Rejector() *LimiterDecision {
	if d.Accepted {
		return nil
	}
	for i := range d.Limiters {
		if l := &d.Limiters[i]; l.Dropped && !l.DryRun {
			return l
		}
	}
	return nil
}

// RetryAfter is how long a rejected flow should wait before it retries,
// as its answer says (Retry-After): 0 for an accepted flow, and for no
// wait or "never", which the wire does not express.
func (d *Decision) RetryAfter() time.Duration {
	if d.Accepted {
		return 0
	}
	return onWire(d.Wait)
}

// DecisionType is the decision's type as the check API and flow spans
// name it: "DECISION_TYPE_ACCEPTED" or "DECISION_TYPE_REJECTED".
func (d *Decision) DecisionType() pb.DecisionType {
	if d.Accepted {
		return pb.DecisionType_DECISION_TYPE_ACCEPTED
	}
	return pb.DecisionType_DECISION_TYPE_REJECTED
}
