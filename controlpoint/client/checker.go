package client

import (
	"context"
	"sync"

	"github.com/fluxgate/fluxgate/controlpoint/flow"
)

// Checker decides whether to admit one flow at a control point.
//
// Check writes the decision about req into d, which it resets first, and
// returns nil; or it returns an error when it could not decide: the
// request is malformed (codes.InvalidArgument), ctx is done, or the agent
// cannot be reached in time. d is then undefined. Check must return soon
// after ctx is done. Implementations must be safe for concurrent use and
// must keep neither req nor d after Check returns; classifiers may add to
// req.Labels. The caller owns d and may reuse it across checks, so that a
// check costs no allocation of its own.
type Checker interface {
	Check(ctx context.Context, req *flow.Request, d *flow.Decision) error
}

var decisions = sync.Pool{New: func() any { return new(flow.Decision) }}

// newDecision returns a Decision from the package's pool, for a Check of
// the adapters. Give it back with release when nothing reads it any more.
func newDecision() *flow.Decision { return decisions.Get().(*flow.Decision) }

// release returns d, from newDecision, to the pool; d must not be used
// afterwards.
func release(d *flow.Decision) { decisions.Put(d) }
