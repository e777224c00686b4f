package client

import (
	"context"

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
