package server

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/fluxgate/fluxgate/controlpoint/controlpointpb"
)

func TestGRPCCheckMalformed(t *testing.T) {
	s, _ := newTestServer(t, perUserLimit)
	client := pb.NewFlowControlServiceClient(dialGRPC(t, s))
	for _, tc := range []struct {
		name string
		req  *pb.CheckRequest
		want string
	}{
		{"no control point", &pb.CheckRequest{Labels: map[string]string{"user": "alice"}}, "control_point is required"},
		{"negative tokens", &pb.CheckRequest{ControlPoint: "ingress", Tokens: -1}, "tokens must be"},
		{"NaN tokens", &pb.CheckRequest{ControlPoint: "ingress", Tokens: math.NaN()}, "tokens must be"},
		{"infinite tokens", &pb.CheckRequest{ControlPoint: "ingress", Tokens: math.Inf(1)}, "tokens must be"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := client.Check(context.Background(), tc.req)
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want InvalidArgument with %q", err, tc.want)
			}
		})
	}
}

func TestGRPCCheckHonoursDeadline(t *testing.T) {
	s, _ := newTestServer(t, perUserLimit)
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	req := &pb.CheckRequest{ControlPoint: "ingress", Labels: map[string]string{"http.request.header.x_user": "alice", "http.request.header.x_tier": "free"}}
	if _, err := (flowControl{s: s}).Check(ctx, req); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("expired deadline: err = %v, want DeadlineExceeded", err)
	}
	// The expired call took no tokens: alice still has all five.
	for i := range 5 {
		resp, err := (flowControl{s: s}).Check(context.Background(), req)
		if err != nil || resp.GetDecisionType() != pb.DecisionType_DECISION_TYPE_ACCEPTED {
			t.Fatalf("check %d after the expired one: %v %v", i, resp, err)
		}
	}
	cctx, ccancel := context.WithCancel(context.Background())
	ccancel()
	if _, err := (flowControl{s: s}).Check(cctx, req); status.Code(err) != codes.Canceled {
		t.Fatalf("cancelled: err = %v, want Canceled", err)
	}
}

func TestGRPCCheckResponse(t *testing.T) {
	s, _ := newTestServer(t, perUserLimit)
	client := pb.NewFlowControlServiceClient(dialGRPC(t, s))
	req := &pb.CheckRequest{ControlPoint: "ingress", Labels: map[string]string{"http.request.header.x_user": "alice", "http.request.header.x_tier": "free"}}
	var resp *pb.CheckResponse
	for range 6 {
		var err error
		if resp, err = client.Check(context.Background(), req); err != nil {
			t.Fatal(err)
		}
	}
	if resp.GetDecisionType() != pb.DecisionType_DECISION_TYPE_REJECTED || resp.GetRejectReason() != pb.RejectReason_REJECT_REASON_RATE_LIMITED ||
		resp.GetDeniedResponseStatusCode() != 429 || resp.GetWaitTime() == nil || resp.GetControlPoint() != "ingress" {
		t.Fatalf("6th check = %v", resp)
	}
	ld := resp.GetLimiterDecisions()
	if len(ld) != 1 || ld[0].GetPolicyName() != "per-user-limit" || ld[0].GetLimitKey() != "alice" || !ld[0].GetDropped() {
		t.Fatalf("limiter decisions = %v", ld)
	}
	if cr := resp.GetClassifierResults(); len(cr) != 1 || cr[0].GetLabels()["user"] != "alice" {
		t.Fatalf("classifier results = %v", cr)
	}
}
