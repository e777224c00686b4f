package metricnames

// Label names.
const (
	LabelPolicyName     = "policy_name"
	LabelComponentID    = "component_id"
	LabelControlPoint   = "control_point"
	LabelDecisionType   = "decision_type"
	LabelReason         = "reason"
	LabelFluxMeterName  = "flux_meter_name"
	LabelHTTPStatusCode = "http_status_code"
	LabelFlowStatus     = "flow_status"
	LabelSignalName     = "signal_name"
	LabelRouteID        = "route_id"
	LabelUpstreamHost   = "upstream_host"
	LabelMethod         = "method"
	LabelCircuitName    = "circuit_name"
	LabelState          = "state"
	LabelOldState       = "old_state"
	LabelNewState       = "new_state"
	LabelMode           = "mode"
	LabelListener       = "listener" // an agent listener: http, grpc, metrics, otlp_grpc, otlp_http, probe
)

// Values of decision_type: the names of the check API's DecisionType.
const (
	DecisionAccepted = "DECISION_TYPE_ACCEPTED"
	DecisionRejected = "DECISION_TYPE_REJECTED"
)

// Values of flow_status.
const (
	FlowOK    = "OK"
	FlowError = "Error"
)

// Values of reason: the check API's RejectReason in short, lower-case
// form, as also sent in the X-FluxGate-Reason header and written in the
// decision log. ReasonNoMatch and ReasonNone count accepted flows.
const (
	ReasonNone           = "none"
	ReasonRateLimited    = "rate_limited"
	ReasonNotSampled     = "not_sampled"
	ReasonNoTokens       = "no_tokens"
	ReasonFailedClosed   = "failed_closed"
	ReasonBreakerOpen    = "breaker_open"
	ReasonNoMatchingRamp = "no_matching_ramp"
	// ReasonNoMatch counts, with an empty policy_name, the flows no
	// component matched.
	ReasonNoMatch = "no_match"
)

// Values of mode of ClientCheckFailuresTotal: the Go SDK's failure modes.
const (
	ModeFailOpen   = "fail_open"
	ModeFailClosed = "fail_closed"
)

// Values of reason of ClientCheckFailuresTotal besides ReasonBreakerOpen:
// why the Go SDK got no decision from the agent.
const (
	ReasonTimeout = "timeout" // the deadline passed before an answer
	ReasonError   = "error"   // the agent is unreachable or answered with an error
	ReasonInvalid = "invalid" // the agent refused the request as malformed
)

// Values of state, old_state and new_state: a circuit breaker's states.
const (
	StateClosed   = "closed"
	StateOpen     = "open"
	StateHalfOpen = "half_open"
)
