package controlpoint

import (
	"errors"
	"math"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/durationpb"

	pb "github.com/fluxgate/fluxgate/controlpoint/controlpointpb"
)

// Errors for malformed check requests, shared by every adapter.
var (
	ErrNoControlPoint = errors.New("control_point is required")
	ErrBadTokens      = errors.New("tokens must be a finite number >= 0")
	// ErrBadControlPoint: the name becomes a metric label value, which
	// must be UTF-8.
	ErrBadControlPoint = errors.New("control_point must be valid UTF-8")
)

// RequestFromProto validates a check request and converts it. The labels
// map is used as is (classifiers may add to it).
func RequestFromProto(in *pb.CheckRequest) (Request, error) {
	if in.GetControlPoint() == "" {
		return Request{}, ErrNoControlPoint
	}
	if !utf8.ValidString(in.GetControlPoint()) {
		return Request{}, ErrBadControlPoint
	}
	t := in.GetTokens()
	if math.IsNaN(t) || math.IsInf(t, 0) || t < 0 {
		return Request{}, ErrBadTokens
	}
	return Request{ControlPoint: in.GetControlPoint(), Labels: in.GetLabels(), Tokens: t}, nil
}

// ToProto converts a decision into the check API's response.
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
		out.WaitTime = duration(d.Wait)
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
			WaitTime:        duration(l.Wait),
			ResetTime:       duration(l.Reset),
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

// duration converts d, leaving out zero and "never" (which JSON and
// headers cannot express usefully).
func duration(d time.Duration) *durationpb.Duration {
	if d <= 0 || d == time.Duration(math.MaxInt64) {
		return nil
	}
	return durationpb.New(d)
}

func finite(f float64) float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0
	}
	return f
}
