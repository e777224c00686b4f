package controlpoint

import (
	"context"
	"time"
)

// waitKind is how a component's decide may wait, as the component says
// for itself (waiter); the engine asks it once, when it builds a
// snapshot.
type waitKind uint8

const (
	// waitsAlways: decide may make a network round trip (a Redis limiter
	// in exact mode), so only a check that may wait can ask it. A
	// component that does not say is taken to be one.
	waitsAlways waitKind = iota
	// waitsSometimes: decide may queue a flow (a scheduler, a concurrency
	// limiter that lets flows wait); tryDecide (tryDecider) decides the
	// flows that need not wait.
	waitsSometimes
	// waitsNever: decide answers at once (a local or lazily synced rate
	// limiter, a sampler, a limiter whose flows never wait).
	waitsNever
)

// waiter is a flowComponent that says how its decide may wait.
type waiter interface {
	waits() waitKind
}

// tryDecider is a flowComponent whose decide may queue a flow and that
// can tell, without waiting, when it need not.
type tryDecider interface {
	// tryDecide is decide with take true, except that when the flow
	// would have to wait it changes nothing and reports decided false.
	// When it decides, its hold and ld are decide's.
	tryDecide(ctx context.Context, now time.Time, labels map[string]string, tokens float64, ld *LimiterDecision) (held hold, decided bool)
}

// untrier is a tryDecider whose undo does not give back all that a
// decided tryDecide took (a load scheduler's admission and the flow's
// arrival): untry does, for a flow that a later component could not
// decide without waiting and that is to be checked again from the start.
type untrier interface {
	untry(now time.Time, labels map[string]string, tokens float64, ld *LimiterDecision)
}

// waitsOf is how fc's decide may wait, and its tryDecider when it may
// queue: a component that says it may without being able to try is one
// that waits always.
func waitsOf(fc flowComponent) (waitKind, tryDecider) {
	w, ok := fc.(waiter)
	if !ok {
		return waitsAlways, nil
	}
	switch k := w.waits(); k {
	case waitsSometimes:
		if td, ok := fc.(tryDecider); ok {
			return k, td
		}
		return waitsAlways, nil
	case waitsNever:
		return k, nil
	}
	return waitsAlways, nil
}

// TryCheck is Check that never waits. It decides as Check would, running
// the same classifiers and components in the same order with the same
// results, and reports true; but when a component would have to wait (a
// scheduler or concurrency limiter that would queue the flow) or could
// only decide with a network round trip (a Redis rate limiter in exact
// mode), or a Rego classifier would run, it stops, gives back what the
// components before it took for the flow, and reports false: no decision
// was made, none is counted or logged, and the flow is for Check, where it
// may wait. The request's labels may then hold what classifiers added;
// Check adds the same again.
func (e *Engine) TryCheck(ctx context.Context, now time.Time, req *Request, d *Decision) bool {
	pt := e.snap.Load().points[req.ControlPoint]
	if pt != nil && !pt.tryable {
		return false
	}
	return e.check(ctx, now, req, d, pt, true)
}

// untry gives back what the components of earlier took for a flow that
// TryCheck did not decide.
func (e *Engine) untry(now time.Time, pt *point, labels map[string]string, tokens float64, earlier []LimiterDecision, marks []mark) {
	for i := range earlier {
		c := pt.components[marks[i].ref].c
		if u, ok := c.(untrier); ok {
			u.untry(now, labels, tokens, &earlier[i])
			continue
		}
		if tookTokens(&earlier[i], marks[i]) {
			c.undo(now, labels, tokens)
		}
	}
}
