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

// step is the engine's side of one entry of a Decision's Limiters, which
// the caller does not see: which component decided, and the slot it holds
// for the flow.
type step struct {
	ref  int  // index of the component in its control point's list
	hold hold // set (hold.c != nil) when a slotHolder holds a slot
}

// steps is the engine's scratch of one check, parallel to the Limiters of
// its Decision; Engine.Check takes one from a pool.
type steps struct{ s []step }

// tookTokens reports whether the component of ld and st charged the
// flow: took tokens, or holds a slot (a dry-run adaptive_concurrency holds
// one even for a flow it would have rejected).
func tookTokens(ld *LimiterDecision, st *step) bool {
	return st.hold.c != nil || !ld.Dropped && !ld.PassThrough
}
