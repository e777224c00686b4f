package server

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fluxgate/fluxgate/controlpoint"
	pb "github.com/fluxgate/fluxgate/controlpoint/controlpointpb"
)

// flowControl is fluxgate.flowcontrol.v1.FlowControlService.
type flowControl struct {
	pb.UnimplementedFlowControlServiceServer
	s *Server
}

var _ pb.FlowControlServiceServer = flowControl{}

// Check decides one flow. A malformed request fails with InvalidArgument;
// a caller that has already given up (deadline passed, cancelled) gets
// DeadlineExceeded or Canceled and takes no tokens.
func (f flowControl) Check(ctx context.Context, in *pb.CheckRequest) (*pb.CheckResponse, error) {
	if err := ctx.Err(); err != nil {
		return nil, status.FromContextError(err).Err()
	}
	req, err := controlpoint.RequestFromProto(in)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, "fluxgate: "+err.Error())
	}
	return f.s.check(ctx, &req), nil
}

// FlowEnd reports the end of a flow that Check admitted with a flow_id.
func (f flowControl) FlowEnd(_ context.Context, in *pb.FlowEndRequest) (*pb.FlowEndResponse, error) {
	if in.GetFlowId() == 0 {
		return nil, status.Error(codes.InvalidArgument, "fluxgate: flow_id is required")
	}
	return &pb.FlowEndResponse{Found: f.s.engine.EndFlow(f.s.now(), in.GetFlowId(), in.GetFailed())}, nil
}
