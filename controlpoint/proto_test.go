package controlpoint

import (
	"testing"
	"time"

	pb "github.com/fluxgate/fluxgate/controlpoint/controlpointpb"
)

func TestDecisionToProto(t *testing.T) {
	d := &Decision{ControlPoint: "ingress", Accepted: false, Reason: ReasonFailedClosed, StatusCode: 503, Wait: 2 * time.Second, Decider: 0,
		Limiters: []LimiterDecision{{PolicyName: "p", PolicyNamespace: "ns", ComponentID: "0", ComponentType: "rate_limiter",
			Dropped: true, Reason: ReasonFailedClosed, Failure: "fail_closed: timeout", Limit: 10, Remaining: 3, Reset: time.Second}},
		FluxMeters: []string{"ns/p/m"}}
	got := d.ToProto()
	if got.GetDecisionType() != pb.DecisionType_DECISION_TYPE_REJECTED || got.GetRejectReason() != pb.RejectReason_REJECT_REASON_FAILED_CLOSED ||
		got.GetDeniedResponseStatusCode() != 503 || got.GetWaitTime().AsDuration() != 2*time.Second || got.GetFluxMeterNames()[0] != "ns/p/m" {
		t.Fatalf("response = %v", got)
	}
	l := got.GetLimiterDecisions()[0]
	if l.GetFailure() != "fail_closed: timeout" || l.GetPolicyNamespace() != "ns" || l.GetResetTime().AsDuration() != time.Second || l.GetRemaining() != 3 {
		t.Fatalf("limiter decision = %v", l)
	}
}
