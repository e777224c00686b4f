package controlpoint

import (
	"github.com/fluxgate/fluxgate/controlpoint/flow"
)

// The data of a check live in package flow, which the SDK shares without
// linking the engine; these names keep engine code reading as before.
type (
	// Request is one flow asking to pass a control point.
	Request = flow.Request
	// Decision is the engine's answer. Reuse one Decision across checks:
	// Check resets it and reuses its slices, which keeps the hot path
	// free of allocations.
	Decision = flow.Decision
	// LimiterDecision is what one flow-control component decided.
	LimiterDecision = flow.LimiterDecision
	// ClassifierResult reports one classifier that matched the flow.
	ClassifierResult = flow.ClassifierResult
	// Reason says why a component rejected a flow.
	Reason = flow.Reason
)

// Reasons, as in the check API.
const (
	ReasonNone         = flow.ReasonNone
	ReasonRateLimited  = flow.ReasonRateLimited
	ReasonNotSampled   = flow.ReasonNotSampled
	ReasonNoTokens     = flow.ReasonNoTokens
	ReasonFailedClosed = flow.ReasonFailedClosed
	// ReasonNoMatchingRamp rejects a RampMode flow that no ramp selected.
	ReasonNoMatchingRamp = flow.ReasonNoMatchingRamp
)

// mark is the engine's side of one entry of a Decision's Limiters, which
// the caller does not see: which component decided, and whether it holds
// a slot for the flow. Check keeps its marks on its stack.
type mark struct {
	ref  int  // index of the component in its control point's list
	held bool // a slotHolder holds a slot for the flow
}

// tookTokens reports whether the component of ld and m charged the flow:
// took tokens, or holds a slot (a dry-run adaptive_concurrency holds one
// even for a flow it would have rejected).
func tookTokens(ld *LimiterDecision, m mark) bool {
	return m.held || !ld.Dropped && !ld.PassThrough
}
