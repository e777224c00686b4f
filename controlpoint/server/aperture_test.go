package server

import (
	"context"
	"testing"

	ap "github.com/fluxgate/fluxgate/controlpoint/aperturepb"
	"github.com/fluxgate/fluxgate/internal/policytest"
)

// TestApertureCheckAndFlowEnd: Aperture's API decides with the engine; a
// check with expect_end holds an adaptive_concurrency slot named by
// concurrency_limiter_info.request_id until FlowEnd returns it, and a
// check without it passes through (it promises no end).
func TestApertureCheckAndFlowEnd(t *testing.T) {
	s, _ := newTestServer(t, policytest.OneSlot("api"))
	c := ap.NewFlowControlServiceClient(dialGRPC(t, s))
	ctx := context.Background()
	held, err := c.Check(ctx, &ap.CheckRequest{ControlPoint: "api", ExpectEnd: true})
	if err != nil {
		t.Fatal(err)
	}
	var id string
	for _, l := range held.GetLimiterDecisions() {
		id = l.GetConcurrencyLimiterInfo().GetRequestId()
	}
	if held.GetDecisionType() != ap.CheckResponse_DECISION_TYPE_ACCEPTED || !held.GetExpectEnd() || id == "" || held.GetStart() == nil {
		t.Fatalf("first check: %v, expect_end %v, request_id %q", held.GetDecisionType(), held.GetExpectEnd(), id)
	}
	busy, err := c.Check(ctx, &ap.CheckRequest{ControlPoint: "api", ExpectEnd: true})
	if err != nil || busy.GetDecisionType() != ap.CheckResponse_DECISION_TYPE_REJECTED ||
		busy.GetRejectReason() != ap.CheckResponse_REJECT_REASON_NO_TOKENS || busy.GetDeniedResponseStatusCode() != ap.StatusCode_ServiceUnavailable {
		t.Fatalf("second check while the slot is held: %v %v %v (%v), want rejected, no tokens, 503", busy.GetDecisionType(), busy.GetRejectReason(), busy.GetDeniedResponseStatusCode(), err)
	}
	if pass, _ := c.Check(ctx, &ap.CheckRequest{ControlPoint: "api"}); pass.GetDecisionType() != ap.CheckResponse_DECISION_TYPE_ACCEPTED || pass.GetExpectEnd() {
		t.Fatalf("a check without expect_end: %v, expect_end %v; want passed through", pass.GetDecisionType(), pass.GetExpectEnd())
	}
	end, err := c.FlowEnd(ctx, &ap.FlowEndRequest{ControlPoint: "api", InflightRequests: []*ap.InflightRequestRef{{RequestId: id}, {RequestId: "nope"}}})
	if err != nil || len(end.GetTokenReturnStatuses()) != 2 || !end.GetTokenReturnStatuses()[0].GetReturned() || end.GetTokenReturnStatuses()[1].GetError() == "" {
		t.Fatalf("flow end: %v (%v), want the first returned and the second an error", end, err)
	}
	if again, _ := c.Check(ctx, &ap.CheckRequest{ControlPoint: "api", ExpectEnd: true}); again.GetDecisionType() != ap.CheckResponse_DECISION_TYPE_ACCEPTED {
		t.Fatalf("check after the end: %v, want accepted", again.GetDecisionType())
	}
}

// TestApertureRampMode: a check with ramp_mode that no ramp sampler
// selects is rejected with Aperture's no_matching_ramp and 403.
func TestApertureRampMode(t *testing.T) {
	s, _ := newTestServer(t, policytest.OneSlot("api"))
	c := ap.NewFlowControlServiceClient(dialGRPC(t, s))
	r, err := c.Check(context.Background(), &ap.CheckRequest{ControlPoint: "api", RampMode: true})
	if err != nil || r.GetDecisionType() != ap.CheckResponse_DECISION_TYPE_REJECTED ||
		r.GetRejectReason() != ap.CheckResponse_REJECT_REASON_NO_MATCHING_RAMP || r.GetDeniedResponseStatusCode() != ap.StatusCode_Forbidden {
		t.Fatalf("ramp-mode check without a ramp: %v %v %v (%v)", r.GetDecisionType(), r.GetRejectReason(), r.GetDeniedResponseStatusCode(), err)
	}
}
