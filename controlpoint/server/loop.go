package server

import (
	"context"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	ap "github.com/fluxgate/fluxgate/controlpoint/aperturepb"
	pb "github.com/fluxgate/fluxgate/controlpoint/controlpointpb"
	"github.com/fluxgate/fluxgate/controlpoint/flow"
)

// LoopMethod decodes a unary call's request message, msg (read only
// during the call: the request keeps copies), for a gRPC server on event
// loops (agent/grpcloop.go). run appends the response message to out;
// waits reports whether it may wait for I/O (a Redis limiter, a
// scheduler's queue, Rego at the control point), so must run off the
// loop. A message that does not decode fails with INTERNAL, as grpc-go's
// codec fails it.
type LoopMethod func(msg []byte) (run func(ctx context.Context, out []byte) ([]byte, error), waits bool, err error)

// LoopMethods are the calls made once per request, by full method name,
// for a server on event loops to answer itself: FlowControlService's
// Check and FlowEnd, Aperture's, and Envoy's Authorization/Check. Each
// answers with the code its grpc-go handler runs.
func (s *Server) LoopMethods() map[string]LoopMethod {
	mayWait := func(controlPoint string) bool { return s.engine.MayWait(controlPoint) }
	fc, apfc := flowControl{s: s}, apertureFlowControl{s: s}
	return map[string]LoopMethod{
		pb.FlowControlService_Check_FullMethodName: s.loopCheck,
		pb.FlowControlService_FlowEnd_FullMethodName: loopUnary(func() *pb.FlowEndRequest { return &pb.FlowEndRequest{} },
			func(*pb.FlowEndRequest) bool { return false }, fc.FlowEnd), // a flow's end only updates the engine's state
		ap.FlowControlService_Check_FullMethodName: loopUnary(func() *ap.CheckRequest { return &ap.CheckRequest{} },
			func(in *ap.CheckRequest) bool { return mayWait(in.GetControlPoint()) }, apfc.Check),
		ap.FlowControlService_FlowEnd_FullMethodName: loopUnary(func() *ap.FlowEndRequest { return &ap.FlowEndRequest{} },
			func(*ap.FlowEndRequest) bool { return false }, apfc.FlowEnd),
		authv3.Authorization_Check_FullMethodName: loopUnary(func() *authv3.CheckRequest { return &authv3.CheckRequest{} },
			func(in *authv3.CheckRequest) bool { return mayWait(extAuthzControlPoint(in)) }, authorization{s: s}.Check),
	}
}

// loopCheck is FlowControlService/Check, its request decoded by hand
// (wireCheck) and its response encoded from the decision
// (Decision.AppendProto).
func (s *Server) loopCheck(msg []byte) (func(context.Context, []byte) ([]byte, error), bool, error) {
	var in wireCheck
	if err := in.unmarshal(msg); err != nil {
		return nil, false, unmarshalError(err)
	}
	req, err := in.request()
	if err != nil {
		return nil, false, status.Error(codes.InvalidArgument, "fluxgate: "+err.Error())
	}
	return func(ctx context.Context, out []byte) ([]byte, error) {
		if err := ctx.Err(); err != nil {
			return nil, status.FromContextError(err).Err()
		}
		d := s.decide(ctx, &req)
		out, err := d.AppendProto(out)
		s.release(d)
		flow.FreeLabels(req.Labels)
		return out, err
	}, s.engine.MayWait(req.ControlPoint), nil
}

// loopUnary is a LoopMethod of a generated handler, call: its request
// made by newIn, waits telling whether answering it may wait.
func loopUnary[In, Out proto.Message](newIn func() In, waits func(In) bool, call func(context.Context, In) (Out, error)) LoopMethod {
	return func(msg []byte) (func(context.Context, []byte) ([]byte, error), bool, error) {
		in := newIn()
		if err := proto.Unmarshal(msg, in); err != nil {
			return nil, false, unmarshalError(err)
		}
		return func(ctx context.Context, out []byte) ([]byte, error) {
			resp, err := call(ctx, in)
			if err != nil {
				return nil, err
			}
			return proto.MarshalOptions{}.MarshalAppend(out, resp)
		}, waits(in), nil
	}
}

// unmarshalError is grpc-go's answer to a message its codec cannot read.
func unmarshalError(err error) error {
	return status.Error(codes.Internal, "grpc: failed to unmarshal the received message: "+err.Error())
}
