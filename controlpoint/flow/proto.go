package flow

import (
	"math"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	pb "github.com/fluxgate/fluxgate/controlpoint/controlpointpb"
)

// ToProto converts d into the check API's response, the form a decision
// takes on the wire (gRPC and the JSON of POST /v1/check).
func (d *Decision) ToProto() *pb.CheckResponse {
	out := &pb.CheckResponse{
		DecisionType:     pb.DecisionType_DECISION_TYPE_ACCEPTED,
		RejectReason:     d.Reason,
		ControlPoint:     d.ControlPoint,
		FluxMeterNames:   append([]string(nil), d.FluxMeters...),
		LimiterDecisions: make([]*pb.LimiterDecision, 0, len(d.Limiters)),
		FlowId:           d.FlowID,
	}
	if !d.Accepted {
		out.DecisionType = pb.DecisionType_DECISION_TYPE_REJECTED
		out.DeniedResponseStatusCode = int32(d.StatusCode)
		out.WaitTime = DurationProto(d.Wait)
	}
	for i := range d.Limiters {
		l := &d.Limiters[i]
		out.LimiterDecisions = append(out.LimiterDecisions, &pb.LimiterDecision{
			PolicyName:      l.PolicyName,
			PolicyNamespace: l.PolicyNamespace,
			ComponentId:     l.ComponentID,
			ComponentType:   l.ComponentType,
			Dropped:         l.Dropped,
			Reason:          l.Reason,
			Remaining:       finite(l.Remaining),
			Limit:           finite(l.Limit),
			WaitTime:        DurationProto(l.Wait),
			ResetTime:       DurationProto(l.Reset),
			DryRun:          l.DryRun,
			LimitKey:        l.LimitKey,
			Failure:         l.Failure,
		})
	}
	for _, c := range d.Classifiers {
		out.ClassifierResults = append(out.ClassifierResults, &pb.ClassifierResult{
			PolicyName:      c.PolicyName,
			PolicyNamespace: c.PolicyNamespace,
			ClassifierIndex: int32(c.Index),
			Labels:          c.Labels,
			Error:           c.Error,
		})
	}
	return out
}

// FromProto makes d the decision in the check API's response in, reusing
// d's slices. What the wire does not carry stays zero: a component's
// StatusCode, PassThrough, Workload and Priority. Classifier labels are
// in's maps, not copies. Decider is the first enforcing component that
// dropped the flow, as the engine picks it.
func (d *Decision) FromProto(in *pb.CheckResponse) {
	d.Reset(in.GetControlPoint())
	d.Accepted = in.GetDecisionType() != pb.DecisionType_DECISION_TYPE_REJECTED
	d.Reason = in.GetRejectReason()
	d.StatusCode = int(in.GetDeniedResponseStatusCode())
	d.Wait = wireDuration(in.GetWaitTime())
	d.FlowID = in.GetFlowId()
	d.FluxMeters = append(d.FluxMeters, in.GetFluxMeterNames()...)
	for _, l := range in.GetLimiterDecisions() {
		if !d.Accepted && d.Decider < 0 && l.GetDropped() && !l.GetDryRun() {
			d.Decider = len(d.Limiters)
		}
		d.Limiters = append(d.Limiters, LimiterDecision{
			PolicyName:      l.GetPolicyName(),
			PolicyNamespace: l.GetPolicyNamespace(),
			ComponentID:     l.GetComponentId(),
			ComponentType:   l.GetComponentType(),
			Dropped:         l.GetDropped(),
			DryRun:          l.GetDryRun(),
			Reason:          l.GetReason(),
			Remaining:       l.GetRemaining(),
			Limit:           l.GetLimit(),
			Wait:            wireDuration(l.GetWaitTime()),
			Reset:           wireDuration(l.GetResetTime()),
			LimitKey:        l.GetLimitKey(),
			Failure:         l.GetFailure(),
		})
	}
	for _, c := range in.GetClassifierResults() {
		d.Classifiers = append(d.Classifiers, ClassifierResult{
			PolicyName:      c.GetPolicyName(),
			PolicyNamespace: c.GetPolicyNamespace(),
			Index:           int(c.GetClassifierIndex()),
			Labels:          c.GetLabels(),
			Error:           c.GetError(),
		})
	}
}

// DurationProto converts d for a check response, leaving out zero and
// "never" (which JSON and headers cannot express usefully).
func DurationProto(d time.Duration) *durationpb.Duration {
	if d <= 0 || d == time.Duration(math.MaxInt64) {
		return nil
	}
	return durationpb.New(d)
}

// wireDuration is a duration of a check response; 0 when absent.
func wireDuration(d *durationpb.Duration) time.Duration {
	if d == nil {
		return 0
	}
	return d.AsDuration()
}

// onWire is d as the check API carries it: 0 for zero and "never"
// (DurationProto).
func onWire(d time.Duration) time.Duration {
	if d == time.Duration(math.MaxInt64) || d < 0 {
		return 0
	}
	return d
}

// finite is f as the check API carries it: 0 for NaN and infinities.
func finite(f float64) float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0
	}
	return f
}
