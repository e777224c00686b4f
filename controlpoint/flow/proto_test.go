package flow

import (
	"math"
	"reflect"
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

// A decision that goes over the wire and back is the same decision, save
// what the wire does not carry.
func TestDecisionFromProtoRoundTrip(t *testing.T) {
	for _, want := range []Decision{
		{ControlPoint: "api", Accepted: true, Decider: -1, FlowID: 7, FluxMeters: []string{"ns/p/m"},
			Limiters: []LimiterDecision{{PolicyName: "p", PolicyNamespace: "ns", ComponentID: "1", ComponentType: "rate_limiter",
				Remaining: 4, Limit: 5, Reset: time.Second, LimitKey: "alice"}},
			Classifiers: []ClassifierResult{{PolicyName: "p", PolicyNamespace: "ns", Index: 2, Labels: map[string]string{"tier": "gold"}, Error: ""}}},
		{ControlPoint: "api", Accepted: false, Reason: ReasonRateLimited, StatusCode: 429, Wait: 3 * time.Second, Decider: 1,
			Limiters: []LimiterDecision{
				{PolicyName: "dry", ComponentID: "0", ComponentType: "sampler", Dropped: true, DryRun: true, Reason: ReasonNotSampled},
				{PolicyName: "p", ComponentID: "1", ComponentType: "rate_limiter", Dropped: true, Reason: ReasonRateLimited, Wait: 3 * time.Second, Limit: 5},
			}},
		{ControlPoint: "api", Accepted: false, Reason: ReasonNoMatchingRamp, StatusCode: 403, Decider: -1},
	} {
		var got Decision
		got.Limiters = make([]LimiterDecision, 3) // reused, not appended to
		got.FromProto(want.ToProto())
		if !reflect.DeepEqual(emptyAsNil(got), emptyAsNil(want)) {
			t.Fatalf("round trip\n got %+v\nwant %+v", got, want)
		}
	}
}

func TestDecisionOnTheWireDropsNever(t *testing.T) {
	never := time.Duration(math.MaxInt64)
	d := Decision{Accepted: false, Wait: never, Limiters: []LimiterDecision{{Dropped: true, Reset: never, Remaining: math.Inf(1), Limit: math.NaN()}}}
	out := d.ToProto()
	if out.GetWaitTime() != nil || out.GetLimiterDecisions()[0].GetResetTime() != nil || out.GetLimiterDecisions()[0].GetRemaining() != 0 || out.GetLimiterDecisions()[0].GetLimit() != 0 {
		t.Fatalf("response = %v", out)
	}
}

// emptyAsNil makes d's empty slices nil, so that DeepEqual compares what
// they hold.
func emptyAsNil(d Decision) Decision {
	if len(d.Limiters) == 0 {
		d.Limiters = nil
	}
	if len(d.FluxMeters) == 0 {
		d.FluxMeters = nil
	}
	if len(d.Classifiers) == 0 {
		d.Classifiers = nil
	}
	return d
}
