package metricnames

// Flux Meters: a histogram family per agent, one series set per flux
// meter, measured from flows' spans (package fluxmeter).
const (
	FluxMeter             = "flux_meter"
	FluxMeterBucket       = FluxMeter + "_bucket"
	FluxMeterSum          = FluxMeter + "_sum"
	FluxMeterCount        = FluxMeter + "_count"
	InvalidFluxMeterTotal = "invalid_flux_meter_total"
)

// Circuits (package circuit).
const (
	SignalReading              = "signal_reading"
	InvalidSignalReadingsTotal = "invalid_signal_readings_total"
)

// Decisions (package controlpoint).
const (
	FlowDecisionsTotal         = "fluxgate_flow_decisions_total"
	RateLimiterRemainingTokens = "fluxgate_ratelimiter_remaining_tokens"
	RateLimitHitsTotal         = "fluxgate_rate_limit_hits_total"
)

// The built-in gateway (package gateway).
const (
	HTTPRequestsTotal          = "fluxgate_http_requests_total"
	HTTPRequestDurationSeconds = "fluxgate_http_request_duration_seconds"
	HTTPRequestsInFlight       = "fluxgate_http_requests_in_flight"
	UpstreamActiveConnections  = "fluxgate_upstream_active_connections"
	UpstreamHealth             = "fluxgate_upstream_health"
	UpstreamWeight             = "fluxgate_upstream_weight"
	// GatewayHandoversTotal counts the client connections the lean engine
	// handed to another engine, by reason (the Handover* values): to the
	// fast engine, or HTTP/2 (over TLS, or h2c with prior knowledge) to the
	// HTTP/2 server (gateway.http2.server).
	GatewayHandoversTotal = "fluxgate_gateway_handovers_total"
	// GatewayHTTP2ProtocolErrorsTotal counts the streams and connections
	// the gateway's own HTTP/2 server (internal/h2) ended for a protocol
	// error or a bound, by reason (h2.Reason… values).
	GatewayHTTP2ProtocolErrorsTotal = "fluxgate_gateway_http2_protocol_errors_total"
	// GatewayClientConnections is the gauge of client connections the
	// gateway holds open, on every engine, counted once across hand-overs;
	// GatewayMaxConnections is the cap in force (gateway.max_connections,
	// lowered at start to fit the open-files limit).
	GatewayClientConnections = "fluxgate_gateway_client_connections"
	GatewayMaxConnections    = "fluxgate_gateway_max_connections"
	// GatewayConnectionsEvictedTotal counts the idle client connections
	// closed to make room at the cap; GatewayAcceptWaitsTotal the times
	// accepting stopped at the cap (clients wait in the listen backlog).
	GatewayConnectionsEvictedTotal = "fluxgate_gateway_connections_evicted_total"
	GatewayAcceptWaitsTotal        = "fluxgate_gateway_accept_waits_total"
)

// Values of the reason label of GatewayHandoversTotal: a request outside
// the lean engine's HTTP/1.1 subset, a chunked or large request body, a
// route to an HTTP/2 group (these three to the fast engine; a request
// outside the subset goes to the net/http engine instead with gateway.h2c);
// a TLS connection that negotiated HTTP/2, and a plain one that opened
// with the HTTP/2 client preface under gateway.h2c (both to
// gateway.http2.server); a route to a group with upstream TLS, which the
// loop engine hands to the lean engine (the loop engine's other
// hand-overs go on from lean to the fast engine and count there once,
// with the reasons above); an HTTP/2 stream the loop engine's HTTP/2
// (gateway.http2.server loop) hands to the lean engine on its own.
const (
	HandoverRequest     = "request"
	HandoverBody        = "body"
	HandoverRoute       = "route"
	HandoverHTTP2       = "h2"
	HandoverH2C         = "h2c"
	HandoverUpstreamTLS = "upstream_tls"
	HandoverHTTP2Stream = "h2_stream"
)

// Circuit breakers (package controlpoint/breaker). BreakerStateNumeric is
// 0 closed, 1 open, 2 half-open; BreakerState is 1 for the state a breaker
// is in and 0 for the others.
const (
	BreakerStateNumeric         = "fluxgate_circuit_breaker_state"
	BreakerState                = "circuit_breaker_state"
	BreakerStateTransitionTotal = "circuit_breaker_state_transition_total"
)

// The agent (packages agent and certs).
const (
	TLSHandshakeDurationSeconds = "fluxgate_tls_handshake_duration_seconds"
	SystemUptimeSeconds         = "fluxgate_system_uptime_seconds"
	// AgentConnections is the gauge of connections each agent listener
	// holds (LabelListener), AgentMaxConnections its cap in force
	// (server.max_connections, lowered at start to fit the open-files
	// limit); AgentConnectionsEvictedTotal counts the idle connections a
	// full listener closed to make room, AgentAcceptWaitsTotal the times
	// a listener stopped accepting at its cap. The gateway's are the
	// Gateway… names.
	AgentConnections             = "fluxgate_agent_connections"
	AgentMaxConnections          = "fluxgate_agent_max_connections"
	AgentConnectionsEvictedTotal = "fluxgate_agent_connections_evicted_total"
	AgentAcceptWaitsTotal        = "fluxgate_agent_accept_waits_total"
)

// The Go SDK (packages controlpoint/client and controlpoint/client/otlpspans),
// exported by the application that imports it. ClientBreakerState is 0
// closed, 1 open, 2 half-open.
const (
	ClientCheckFailuresTotal = "fluxgate_client_check_failures_total"
	ClientBreakerState       = "fluxgate_client_breaker_state"
	ClientSpansExportedTotal = "fluxgate_client_spans_exported_total"
	ClientSpansDroppedTotal  = "fluxgate_client_spans_dropped_total"
)
