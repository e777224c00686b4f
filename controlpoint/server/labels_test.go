package server

import (
	"context"
	"net/http"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/fluxgate/fluxgate/controlpoint/controlpointpb"
)

// Label maps are kept between checks (flow.NewLabels): a check never sees the
// labels of the one before it. The limiter matches tier=free and keys by
// user; once alice's (u1's) five are spent, a check of hers with the
// tier is limited and one without it passes — as it would not if the map
// of the check before still held tier=free. Through the auth_request
// adapter, the loops' Check and grpc-go's, alternating, many times (a
// pool hands back maps at random).
func TestLabelMapsHoldNothingOfTheCheckBefore(t *testing.T) {
	t.Run("auth_request", func(t *testing.T) {
		s, _ := newTestServer(t, perUserLimit)
		withTier := http.Header{"X-Original-Uri": {"/orders"}, "X-User": {"alice"}, "X-Tier": {"free"}, "X-Extra": {"1"}}
		without := http.Header{"X-Original-Uri": {"/orders"}, "X-User": {"alice"}}
		for i := range 200 {
			w := serve(s, "GET", "/v1/check/http", "", withTier)
			if want := map[bool]int{true: 200, false: 429}[i < 5]; w.Code != want {
				t.Fatalf("check %d with the tier = %d, want %d", i, w.Code, want)
			}
			w = serve(s, "GET", "/v1/check/http", "", without)
			if w.Code != 200 {
				t.Fatalf("check %d without the tier = %d %v: it saw the labels of the check before", i, w.Code, w.Header())
			}
			if b := w.Header().Get("Baggage"); b != "user=alice" {
				t.Fatalf("check %d without the tier: Baggage %q", i, b)
			}
		}
	})
	withTier := &pb.CheckRequest{ControlPoint: "ingress", Labels: map[string]string{"user": "u1", "tier": "free", "extra": "1"}}
	without := &pb.CheckRequest{ControlPoint: "ingress", Labels: map[string]string{"user": "u1"}}
	check := func(t *testing.T, i int, ask func(*pb.CheckRequest) *pb.CheckResponse) {
		t.Helper()
		if got, want := ask(withTier).GetDecisionType(), map[bool]pb.DecisionType{true: pb.DecisionType_DECISION_TYPE_ACCEPTED, false: pb.DecisionType_DECISION_TYPE_REJECTED}[i < 5]; got != want {
			t.Fatalf("check %d with the tier: %v, want %v", i, got, want)
		}
		if got := ask(without); got.GetDecisionType() != pb.DecisionType_DECISION_TYPE_ACCEPTED {
			t.Fatalf("check %d without the tier: %v: it saw the labels of the check before", i, got)
		}
	}
	t.Run("loops", func(t *testing.T) {
		s, _ := newTestServer(t, perUserLimit)
		loopCheck := s.LoopMethods()[pb.FlowControlService_Check_FullMethodName]
		ask := func(in *pb.CheckRequest) *pb.CheckResponse {
			msg, err := proto.Marshal(in)
			if err != nil {
				t.Fatal(err)
			}
			run, _, err := loopCheck(msg)
			if err != nil {
				t.Fatal(err)
			}
			out, err := run(context.Background(), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp := &pb.CheckResponse{}
			if err := proto.Unmarshal(out, resp); err != nil {
				t.Fatal(err)
			}
			return resp
		}
		for i := range 200 {
			check(t, i, ask)
		}
	})
	t.Run("grpc-go", func(t *testing.T) {
		s, _ := newTestServer(t, perUserLimit)
		c := pb.NewFlowControlServiceClient(dialGRPC(t, s))
		ask := func(in *pb.CheckRequest) *pb.CheckResponse {
			resp, err := c.Check(context.Background(), in)
			if err != nil {
				t.Fatal(err)
			}
			return resp
		}
		for i := range 200 {
			check(t, i, ask)
		}
	})
}
