package client

import (
	"context"
	"sync"
	"time"

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

// TryChecker is a Checker that can also decide without waiting: an
// engine in the same process (controlpoint.LocalChecker). A server engine
// that must not block (an event loop) asks TryCheck, and only when it
// does not decide, Check where waiting is fine.
type TryChecker interface {
	Checker
	// TryCheck is Check, except that when the check would wait (a
	// scheduler's queue, a network round trip) it reports decided false,
	// having counted, held and taken nothing for the flow. decided is
	// true when err is set.
	TryCheck(ctx context.Context, req *flow.Request, d *flow.Decision) (decided bool, err error)
}

// LocalTryChecker is a TryChecker in the caller's own process, such as
// controlpoint.LocalChecker, that takes the check's time from the caller,
// who has read the clock already (an event loop reads it once a wake):
// TryCheckAt is TryCheck at now. Gate.TryAdmitAt uses it when its Checker
// is one; any other TryChecker reads its own clock there.
type LocalTryChecker interface {
	TryCheckAt(ctx context.Context, now time.Time, req *flow.Request, d *flow.Decision) (decided bool, err error)
}

// checked is one check of the adapters: its request and the decision the
// Checker writes, taken from a pool together so that a check allocates
// neither (a request passed to an interface method escapes).
type checked struct {
	req flow.Request
	d   flow.Decision
}

var pool = sync.Pool{New: func() any { return new(checked) }}

// newChecked returns a checked from the package's pool. Give it back with
// release when nothing reads its decision any more.
func newChecked() *checked { return pool.Get().(*checked) }

// release returns c to the pool; c must not be used afterwards. The
// request's labels are the caller's: the pool does not keep them.
func (c *checked) release() {
	c.req = flow.Request{}
	pool.Put(c)
}
