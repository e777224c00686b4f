package flow

// Span attributes of a finished flow, which the agent's flux meters read
// (fluxmeter) and the SDK and the gateway write: the OTLP span of a flow
// carries its control point, the flux meters its decision named, the
// decision, the HTTP status and the workload's duration in milliseconds.
// Document changes in the README.
const (
	AttrControlPoint   = "fluxgate.control_point"
	AttrFluxMeters     = "fluxgate.flux_meters"
	AttrDecisionType   = "fluxgate.decision_type"
	AttrHTTPStatus     = "http.response.status_code"
	AttrHTTPStatusOld  = "http.status_code"
	AttrWorkloadMillis = "workload_duration_ms" // a flux meter's default attribute_key
)

// Record is one finished flow reported in process: what a flow span
// carries (the attributes above), for a control point that runs in the
// agent's own process and so need not encode, send and decode a span.
type Record struct {
	ControlPoint string
	// FluxMeters are the meters the decision named (fluxgate.flux_meters).
	FluxMeters     []string
	Rejected       bool
	Status         int     // HTTP status; 0 for none
	WorkloadMillis float64 // workload_duration_ms
	Method, Target string  // http.method, http.target
}
