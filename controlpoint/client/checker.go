package client

import (
	"context"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fluxgate/fluxgate/controlpoint"
	pb "github.com/fluxgate/fluxgate/controlpoint/controlpointpb"
)

// Checker decides whether to admit one flow at a control point.
//
// Check returns a decision, or an error when it could not decide: the
// request is malformed (codes.InvalidArgument), ctx is done, or the agent
// cannot be reached in time. It must return soon after ctx is done.
// Implementations must be safe for concurrent use and must not keep req.
type Checker interface {
	Check(ctx context.Context, req *pb.CheckRequest) (*pb.CheckResponse, error)
}

// Local is a Checker backed by an in-process engine.
type Local struct {
	e   *controlpoint.Engine
	now func() time.Time
	ds  sync.Pool // *controlpoint.Decision, reused across checks
}

var _ Checker = (*Local)(nil)

// NewLocal returns a Checker that asks e directly, without a network. The
// engine's labels map is the request's: classifiers may add to it.
func NewLocal(e *controlpoint.Engine) Checker {
	return &Local{e: e, now: time.Now}
}

// Check decides with the engine, at the current time.
func (l *Local) Check(ctx context.Context, in *pb.CheckRequest) (*pb.CheckResponse, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	req, err := controlpoint.RequestFromProto(in)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	d, _ := l.ds.Get().(*controlpoint.Decision)
	if d == nil {
		d = new(controlpoint.Decision)
	}
	l.e.Check(ctx, l.now(), &req, d)
	out := d.ToProto()
	l.ds.Put(d)
	return out, nil
}
