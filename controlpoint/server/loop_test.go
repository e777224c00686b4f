package server

import (
	"context"
	"slices"
	"strconv"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	ap "github.com/fluxgate/fluxgate/controlpoint/aperturepb"
	pb "github.com/fluxgate/fluxgate/controlpoint/controlpointpb"
)

// The loops' answers (LoopMethods) are grpc-go's, call by call: two
// servers with the same policy and clock, one asked through grpc-go and
// one through LoopMethods, answer each call of a sequence that runs past
// the limit the same, errors included.
func TestLoopMethodsAgreeWithGRPC(t *testing.T) {
	viaGRPC, _ := newTestServer(t, perUserLimit)
	onLoop, _ := newTestServer(t, perUserLimit)
	conn := dialGRPC(t, viaGRPC)
	ctx := context.Background()
	methods := onLoop.LoopMethods()
	envoyReq := func(user string) *authv3.CheckRequest {
		return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			ContextExtensions: map[string]string{ContextExtensionControlPoint: "ingress"},
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: "GET", Path: "/items", Headers: map[string]string{"x-user": user, "x-tier": "free"},
			}},
		}}
	}
	type call struct {
		name   string
		method string
		in     proto.Message
		grpc   func() (proto.Message, error)
		fresh  func() proto.Message
	}
	var calls []call
	for range 7 { // the limit is 5 a user
		fcReq := &pb.CheckRequest{ControlPoint: "ingress", Labels: map[string]string{"user": "u1", "tier": "free"}}
		apReq := &ap.CheckRequest{ControlPoint: "ingress", Labels: map[string]string{"user": "u2", "tier": "free"}}
		evReq := envoyReq("u3")
		calls = append(calls,
			call{"Check", pb.FlowControlService_Check_FullMethodName, fcReq, func() (proto.Message, error) {
				return pb.NewFlowControlServiceClient(conn).Check(ctx, fcReq)
			}, func() proto.Message { return &pb.CheckResponse{} }},
			call{"Aperture Check", ap.FlowControlService_Check_FullMethodName, apReq, func() (proto.Message, error) {
				return ap.NewFlowControlServiceClient(conn).Check(ctx, apReq)
			}, func() proto.Message { return &ap.CheckResponse{} }},
			call{"Envoy Check", authv3.Authorization_Check_FullMethodName, evReq, func() (proto.Message, error) {
				return authv3.NewAuthorizationClient(conn).Check(ctx, evReq)
			}, func() proto.Message { return &authv3.CheckResponse{} }},
		)
	}
	for _, id := range []uint64{42, 0} { // unknown; missing
		end := &pb.FlowEndRequest{FlowId: id}
		apEnd := &ap.FlowEndRequest{ControlPoint: "ingress", InflightRequests: []*ap.InflightRequestRef{{RequestId: strconv.FormatUint(id, 10)}}}
		calls = append(calls,
			call{"FlowEnd", pb.FlowControlService_FlowEnd_FullMethodName, end, func() (proto.Message, error) {
				return pb.NewFlowControlServiceClient(conn).FlowEnd(ctx, end)
			}, func() proto.Message { return &pb.FlowEndResponse{} }},
			call{"Aperture FlowEnd", ap.FlowControlService_FlowEnd_FullMethodName, apEnd, func() (proto.Message, error) {
				return ap.NewFlowControlServiceClient(conn).FlowEnd(ctx, apEnd)
			}, func() proto.Message { return &ap.FlowEndResponse{} }})
	}
	bad := &pb.CheckRequest{Labels: map[string]string{"user": "u1"}} // no control point
	calls = append(calls, call{"Check without a control point", pb.FlowControlService_Check_FullMethodName, bad, func() (proto.Message, error) {
		return pb.NewFlowControlServiceClient(conn).Check(ctx, bad)
	}, nil})
	rejected := 0
	for i, c := range calls {
		want, wantErr := c.grpc()
		msg, err := proto.Marshal(c.in)
		if err != nil {
			t.Fatal(err)
		}
		run, waits, err := methods[c.method](msg)
		if waits {
			t.Errorf("%d %s: may wait, with a local limiter only", i, c.name)
		}
		var out []byte
		if err == nil {
			out, err = run(ctx, nil)
		}
		if status.Code(err) != status.Code(wantErr) || status.Convert(err).Message() != status.Convert(wantErr).Message() {
			t.Fatalf("%d %s: error %v, grpc-go's %v", i, c.name, err, wantErr)
		}
		if wantErr != nil {
			continue
		}
		got := c.fresh()
		if err := proto.Unmarshal(out, got); err != nil {
			t.Fatalf("%d %s: %v", i, c.name, err)
		}
		if a, ok := got.(*ap.CheckResponse); ok { // the decision's own times, the labels' map order
			w := want.(*ap.CheckResponse)
			a.Start, a.End, w.Start, w.End = nil, nil, nil, nil
			slices.Sort(a.FlowLabelKeys)
			slices.Sort(w.FlowLabelKeys)
		}
		if r, ok := got.(*pb.CheckResponse); ok && r.GetDecisionType() == pb.DecisionType_DECISION_TYPE_REJECTED {
			rejected++
		}
		if !proto.Equal(got, want) {
			t.Errorf("%d %s:\nloop    %v\ngrpc-go %v", i, c.name, got, want)
		}
	}
	if rejected != 2 {
		t.Errorf("%d of the 7 checks of one user rejected, want 2 past the limit of 5", rejected)
	}
	// A message that does not decode: INTERNAL, as grpc-go's codec says.
	for name, m := range methods {
		if _, _, err := m([]byte{0xff, 0xff}); status.Code(err) != codes.Internal {
			t.Errorf("%s, a malformed message: %v, want Internal", name, err)
		}
	}
}
