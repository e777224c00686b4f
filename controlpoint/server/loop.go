package server

import (
	"context"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	ap "github.com/fluxgate/fluxgate/controlpoint/aperturepb"
	pb "github.com/fluxgate/fluxgate/controlpoint/controlpointpb"
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
// for a server on event loops to answer itself: FlowControlService/Check,
// Aperture's FlowControlService/Check and Envoy's Authorization/Check.
// Each answers with the code its grpc-go handler runs.
func (s *Server) LoopMethods() map[string]LoopMethod {
	return map[string]LoopMethod{
		pb.FlowControlService_Check_FullMethodName: s.loopCheck,
		ap.FlowControlService_Check_FullMethodName: loopUnary(s, func() *ap.CheckRequest { return &ap.CheckRequest{} },
			(*ap.CheckRequest).GetControlPoint, apertureFlowControl{s: s}.Check),
		authv3.Authorization_Check_FullMethodName: loopUnary(s, func() *authv3.CheckRequest { return &authv3.CheckRequest{} },
			extAuthzControlPoint, authorization{s: s}.Check),
	}
}

// loopCheck is FlowControlService/Check, its request decoded by hand
// (wireCheck).
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
		return proto.MarshalOptions{}.MarshalAppend(out, s.check(ctx, &req))
	}, s.engine.MayWait(req.ControlPoint), nil
}

// loopUnary is a LoopMethod of a generated handler, call: its request
// made by newIn, whose control point tells whether it may wait.
func loopUnary[In, Out proto.Message](s *Server, newIn func() In, controlPoint func(In) string, call func(context.Context, In) (Out, error)) LoopMethod {
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
		}, s.engine.MayWait(controlPoint(in)), nil
	}
}

// unmarshalError is grpc-go's answer to a message its codec cannot read.
func unmarshalError(err error) error {
	return status.Error(codes.Internal, "grpc: failed to unmarshal the received message: "+err.Error())
}
