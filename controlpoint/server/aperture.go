package server

import (
	"context"
	"strconv"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fluxgate/fluxgate/controlpoint"
	ap "github.com/fluxgate/fluxgate/controlpoint/aperturepb"
	pb "github.com/fluxgate/fluxgate/controlpoint/controlpointpb"
	"github.com/fluxgate/fluxgate/controlpoint/flow"
)

// apertureFlowControl is FluxNinja Aperture's
// aperture.flowcontrol.check.v1.FlowControlService, so that applications
// built on Aperture's SDKs ask this agent unchanged. A check is decided by
// the same engine as every other adapter; the answer is Aperture's shape:
//
//   - decision_type, reject_reason (rate_limited, no_tokens, not_sampled,
//     no_matching_ramp for a ramp_mode flow no ramp sampler selected;
//     FluxGate's failed_closed and breaker_open read as no_tokens),
//     wait_time and denied_response_status_code (the HTTP status, which is
//     also the StatusCode enum's value);
//   - limiter_decisions with policy_name, component_id, dropped, wait_time
//     and, by kind, rate_limiter_info (label = the limit key, tokens_info
//     remaining), load_scheduler_info, sampler_info,
//     quota_scheduler_info (label, workload_index = the workload's name,
//     priority), concurrency_limiter_info (adaptive_concurrency and
//     concurrency_limiter) or concurrency_scheduler_info, whose
//     request_id is the flow id to end where a slot is held;
//   - flux_meter_infos naming the flux meters that match the flow as
//     "namespace/policy/name": the SDK sends them back in its flow span's
//     aperture.check_response attribute, and the flux meter processor
//     records the span on them;
//   - flow_label_keys and telemetry_flow_labels: the labels the check saw,
//     classifier labels included; telemetry_flow_labels leaves out the
//     headers that carry credentials (flow.IsCredentialLabel), since SDKs
//     copy it into their flow spans.
//
// A request with expect_end promises a FlowEnd call: an
// adaptive_concurrency, concurrency_limiter or concurrency_scheduler
// component then holds a slot until FlowEnd returns it (by request_id) or
// its maximum flow duration passes. Without it, such
// components let the flow pass, as for nginx auth_request. Aperture's
// result and global caches are the agent's own (aperturecache.go): a
// check's cache_lookup_request is answered in cache_lookup_response, for
// the check's control point.
type apertureFlowControl struct {
	ap.UnimplementedFlowControlServiceServer
	s *Server
}

var _ ap.FlowControlServiceServer = apertureFlowControl{}

// Check decides one flow.
func (a apertureFlowControl) Check(ctx context.Context, in *ap.CheckRequest) (*ap.CheckResponse, error) {
	if err := ctx.Err(); err != nil {
		return nil, status.FromContextError(err).Err()
	}
	labels := in.GetLabels()
	if labels == nil {
		labels = map[string]string{}
	}
	req, err := controlpoint.RequestFromProto(&pb.CheckRequest{ControlPoint: in.GetControlPoint(), Labels: labels})
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, "fluxgate: "+err.Error())
	}
	req.NoFlowEnd = !in.GetExpectEnd()
	req.RampMode = in.GetRampMode()
	start := a.s.now()
	d := a.s.pool.Get().(*controlpoint.Decision)
	defer a.s.pool.Put(d)
	a.s.engine.Check(ctx, start, &req, d)
	out := apertureResponse(d, req.Labels, start, a.s.now())
	if in.GetCacheLookupRequest() != nil {
		out.CacheLookupResponse = a.s.cache.lookup(start, in.GetControlPoint(), in.GetCacheLookupRequest())
	}
	return out, nil
}

// apertureResponse converts a decision into Aperture's answer.
func apertureResponse(d *controlpoint.Decision, labels map[string]string, start, end time.Time) *ap.CheckResponse {
	out := &ap.CheckResponse{
		Start:               timestamppb.New(start),
		End:                 timestamppb.New(end),
		ControlPoint:        d.ControlPoint,
		DecisionType:        ap.CheckResponse_DECISION_TYPE_ACCEPTED,
		TelemetryFlowLabels: make(map[string]string, len(labels)),
		ExpectEnd:           d.FlowID != 0,
	}
	for k, v := range labels {
		out.FlowLabelKeys = append(out.FlowLabelKeys, k)
		if !flow.IsCredentialLabel(k) { // SDKs put these labels in their flow spans
			out.TelemetryFlowLabels[k] = v
		}
	}
	if !d.Accepted {
		out.DecisionType = ap.CheckResponse_DECISION_TYPE_REJECTED
		out.RejectReason = apertureReason(d.Reason)
		out.DeniedResponseStatusCode = ap.StatusCode(d.StatusCode)
		out.WaitTime = flow.DurationProto(d.Wait)
	}
	for _, name := range d.FluxMeters {
		out.FluxMeterInfos = append(out.FluxMeterInfos, &ap.FluxMeterInfo{FluxMeterName: name})
	}
	for _, c := range d.Classifiers {
		info := &ap.ClassifierInfo{PolicyName: c.PolicyName, ClassifierIndex: int64(c.Index)}
		if c.Error != "" {
			info.Error = ap.ClassifierInfo_ERROR_EVAL_FAILED
		}
		out.ClassifierInfos = append(out.ClassifierInfos, info)
	}
	for i := range d.Limiters {
		out.LimiterDecisions = append(out.LimiterDecisions, apertureLimiter(&d.Limiters[i], d.FlowID))
	}
	return out
}

func apertureLimiter(l *controlpoint.LimiterDecision, flowID uint64) *ap.LimiterDecision {
	out := &ap.LimiterDecision{
		PolicyName:  l.PolicyName,
		ComponentId: l.ComponentID,
		Dropped:     l.Dropped && !l.DryRun,
		WaitTime:    flow.DurationProto(l.Wait),
	}
	if l.Dropped && !l.DryRun {
		out.DeniedResponseStatusCode = ap.StatusCode(l.StatusCode)
	}
	tokens := &ap.LimiterDecision_TokensInfo{Remaining: l.Remaining, Current: l.Remaining}
	switch l.ComponentType {
	case "rate_limiter":
		out.Details = &ap.LimiterDecision_RateLimiterInfo_{RateLimiterInfo: &ap.LimiterDecision_RateLimiterInfo{Label: l.LimitKey, TokensInfo: tokens}}
	case "load_scheduler":
		out.Details = &ap.LimiterDecision_LoadSchedulerInfo{LoadSchedulerInfo: &ap.LimiterDecision_SchedulerInfo{TokensInfo: tokens}}
	case "sampler":
		out.Details = &ap.LimiterDecision_SamplerInfo_{SamplerInfo: &ap.LimiterDecision_SamplerInfo{Label: l.LimitKey}}
	case "quota_scheduler":
		out.Details = &ap.LimiterDecision_QuotaSchedulerInfo_{QuotaSchedulerInfo: &ap.LimiterDecision_QuotaSchedulerInfo{
			Label: l.LimitKey, WorkloadIndex: l.Workload, TokensInfo: tokens, Priority: l.Priority}}
	case "adaptive_concurrency", "concurrency_limiter":
		info := &ap.LimiterDecision_ConcurrencyLimiterInfo{Label: l.LimitKey, TokensInfo: tokens}
		if flowID != 0 && !l.Dropped && !l.PassThrough {
			info.RequestId = strconv.FormatUint(flowID, 10)
		}
		out.Details = &ap.LimiterDecision_ConcurrencyLimiterInfo_{ConcurrencyLimiterInfo: info}
	case "concurrency_scheduler":
		info := &ap.LimiterDecision_ConcurrencySchedulerInfo{Label: l.LimitKey, WorkloadIndex: l.Workload, TokensInfo: tokens, Priority: l.Priority}
		if flowID != 0 && !l.Dropped && !l.PassThrough {
			info.RequestId = strconv.FormatUint(flowID, 10)
		}
		out.Details = &ap.LimiterDecision_ConcurrencySchedulerInfo_{ConcurrencySchedulerInfo: info}
	}
	return out
}

// apertureReason maps FluxGate's reject reasons onto Aperture's, which has
// no failed_closed or breaker_open: both mean no capacity was available.
func apertureReason(r controlpoint.Reason) ap.CheckResponse_RejectReason {
	switch r {
	case pb.RejectReason_REJECT_REASON_NONE:
		return ap.CheckResponse_REJECT_REASON_NONE
	case pb.RejectReason_REJECT_REASON_RATE_LIMITED:
		return ap.CheckResponse_REJECT_REASON_RATE_LIMITED
	case pb.RejectReason_REJECT_REASON_NOT_SAMPLED:
		return ap.CheckResponse_REJECT_REASON_NOT_SAMPLED
	case pb.RejectReason_REJECT_REASON_NO_MATCHING_RAMP:
		return ap.CheckResponse_REJECT_REASON_NO_MATCHING_RAMP
	default:
		return ap.CheckResponse_REJECT_REASON_NO_TOKENS
	}
}

// FlowEnd returns the slots of a flow checked with expect_end: each
// inflight request's request_id is the flow id a concurrency_limiter_info
// or concurrency_scheduler_info carried.
func (a apertureFlowControl) FlowEnd(_ context.Context, in *ap.FlowEndRequest) (*ap.FlowEndResponse, error) {
	out := &ap.FlowEndResponse{}
	for _, ref := range in.GetInflightRequests() {
		st := &ap.TokenReturnStatus{InflightRequestRef: ref}
		id, err := strconv.ParseUint(ref.GetRequestId(), 10, 64)
		switch {
		case err != nil || id == 0:
			st.Error = "request_id is not a flow id of this agent"
		case a.s.engine.EndFlow(a.s.now(), id, false):
			st.Returned = true
		default:
			st.Error = "no such flow in flight (ended already, or expired after max_flow_duration)"
		}
		out.TokenReturnStatuses = append(out.TokenReturnStatuses, st)
	}
	return out, nil
}
