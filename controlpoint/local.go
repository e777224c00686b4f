package controlpoint

import (
	"context"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/fluxgate/fluxgate/controlpoint/controlpointpb"
)

// LocalChecker asks an in-process engine, without a network: the
// client.Checker and client.FlowEnder of a control point that runs in the
// agent's own process (the built-in gateway's, a test's). It lives here
// rather than in the client package so that the SDK does not link the
// engine. Safe for concurrent use.
type LocalChecker struct {
	e   *Engine
	now func() time.Time
	ds  sync.Pool // *Decision, reused across checks
}

// NewLocalChecker returns a checker that asks e at the current time. The
// engine's labels map is the request's: classifiers may add to it.
func NewLocalChecker(e *Engine) *LocalChecker {
	return &LocalChecker{e: e, now: time.Now}
}

// Check decides with the engine. A malformed request fails with
// codes.InvalidArgument, as over the network.
func (l *LocalChecker) Check(ctx context.Context, in *pb.CheckRequest) (*pb.CheckResponse, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	req, err := RequestFromProto(in)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	d, _ := l.ds.Get().(*Decision)
	if d == nil {
		d = new(Decision)
	}
	l.e.Check(ctx, l.now(), &req, d)
	out := d.ToProto()
	l.ds.Put(d)
	return out, nil
}

// EndFlow reports the end of flow id to the engine.
func (l *LocalChecker) EndFlow(_ context.Context, id uint64, failed bool) error {
	l.e.EndFlow(l.now(), id, failed)
	return nil
}
