package controlpoint

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// LocalChecker asks an in-process engine, without a network: the
// client.Checker, client.TryChecker, client.LocalTryChecker,
// client.FlowEnder and client.LocalFlowEnder of a control point that
// runs in the agent's own process (the built-in gateway's, a test's).
// The engine writes its Decision straight into the caller's: nothing is
// converted. It lives here rather than in the client package so that the
// SDK does not link the engine. Safe for concurrent use.
type LocalChecker struct {
	e   *Engine
	now func() time.Time
}

// NewLocalChecker returns a checker that asks e at the current time. The
// engine's labels map is the request's: classifiers may add to it.
func NewLocalChecker(e *Engine) *LocalChecker {
	return &LocalChecker{e: e, now: time.Now}
}

// Check decides req with the engine, into d. A malformed request fails
// with codes.InvalidArgument, as over the network.
func (l *LocalChecker) Check(ctx context.Context, req *Request, d *Decision) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := ValidateRequest(req); err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	l.e.Check(ctx, l.now(), req, d)
	return nil
}

// TryCheck is Check that never waits (see Engine.TryCheck): it reports
// decided false, having written nothing a caller reads and held nothing,
// when the engine could not decide without waiting; the request is then
// for Check. A malformed request is decided: it fails as in Check.
func (l *LocalChecker) TryCheck(ctx context.Context, req *Request, d *Decision) (decided bool, err error) {
	return l.TryCheckAt(ctx, l.now(), req, d)
}

// TryCheckAt is TryCheck at now, the caller's reading of the clock: the
// client.LocalTryChecker that an event loop uses, which reads the clock
// once a wake.
func (l *LocalChecker) TryCheckAt(ctx context.Context, now time.Time, req *Request, d *Decision) (decided bool, err error) {
	if err := ctx.Err(); err != nil {
		return true, err
	}
	if err := ValidateRequest(req); err != nil {
		return true, status.Error(codes.InvalidArgument, err.Error())
	}
	return l.e.TryCheck(ctx, now, req, d), nil
}

// EndFlow reports the end of flow id to the engine.
func (l *LocalChecker) EndFlow(_ context.Context, id uint64, failed bool) error {
	l.e.EndFlow(l.now(), id, failed)
	return nil
}

// EndFlowAt reports the end of flow id at now to the engine: the
// client.LocalFlowEnder that the gateway and in-process middleware use,
// with no context to make.
func (l *LocalChecker) EndFlowAt(now time.Time, id uint64, failed bool) {
	l.e.EndFlow(now, id, failed)
}

// MayWait reports whether a check at controlPoint may wait (see
// Engine.MayWait): an event loop checks elsewhere when it may.
func (l *LocalChecker) MayWait(controlPoint string) bool { return l.e.MayWait(controlPoint) }
