// Package fluxmeter builds Flux Meters: Prometheus histograms of flows,
// made from the OpenTelemetry spans that gateways, the Go SDK or any
// OpenTelemetry-instrumented service export to the agent.
//
// A flux meter is a policy resource (spec.resources.flux_meters) with
// selectors and a bucket layout. The Receiver takes OTLP trace exports
// over gRPC and HTTP and hands the spans to a Processor, which finds each
// span's flux meters — named in the span's fluxgate.flux_meters attribute
// by whoever called Check, or else matched by the decision engine from the
// span's control point and string attributes — and observes the measured
// attribute (workload_duration_ms by default, else the span's own
// duration in milliseconds) into the histogram
//
//	flux_meter{flux_meter_name, policy_name, decision_type, http_status_code, flow_status}
//
// Rejected flows land in their own decision_type series and never mix into
// accepted-flow latency. Meters are scoped by policy: two policies may each
// own a meter called "latency". A flow whose attribute is missing or not a
// number is counted in invalid_flux_meter_total instead.
//
// A Processor is a prometheus.Collector and safe for concurrent use.
package fluxmeter
