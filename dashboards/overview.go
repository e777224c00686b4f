package dashboards

import "github.com/fluxgate/fluxgate/metricnames"

// Overview identity, as published in seed 000.
const (
	OverviewUID   = "fluxgate-ops-01"
	OverviewTitle = "FluxGate Gateway Overview"
)

// errorBudget is the share of requests that may fail under the 99.9%
// availability objective the overview's error budget panels measure
// against.
const errorBudget = "0.001"

var breakerStates = []ValueMapping{{Type: "value", Options: map[string]MappingValue{
	"0": {Text: "closed", Color: "green", Index: 0},
	"1": {Text: "open", Color: "red", Index: 1},
	"2": {Text: "half-open", Color: "orange", Index: 2},
}}}

var upstreamHealth = []ValueMapping{{Type: "value", Options: map[string]MappingValue{
	"0": {Text: "drained", Color: "red", Index: 0},
	"1": {Text: "healthy", Color: "green", Index: 1},
}}}

// Overview returns the gateway overview dashboard: gateway throughput,
// errors and error budget, latency (quantiles and an upstream latency
// heatmap), upstreams, circuit breakers, rate limiter quotas, TLS,
// flow-control decisions and flux meters, and the agents themselves.
func Overview(opts Options) *Dashboard {
	b := newBuilder(OverviewUID, OverviewTitle,
		"FluxGate gateway and flow control: throughput, errors, latency, upstreams, breakers, rate limits, TLS, decisions and flux meters.",
		[]string{"fluxgate"}, opts)
	b.labelVariable("route", "Route", metricnames.HTTPRequestsTotal, metricnames.LabelRouteID)
	b.labelVariable("policy", "Policy", metricnames.FlowDecisionsTotal, metricnames.LabelPolicyName)

	const (
		reqs    = `fluxgate_http_requests_total{route_id=~"$route"}`
		reqs5xx = `fluxgate_http_requests_total{route_id=~"$route",status=~"5.."}`
		dur     = `fluxgate_http_request_duration_seconds_bucket{route_id=~"$route"}`
	)
	pct := steps("green", 0.01, "orange", 0.05, "red")

	b.row("Gateway traffic")
	b.add(stat("Requests per second", "All routes selected.", "reqps", nil,
		instant(`sum(rate(`+reqs+`[$__rate_interval]))`, "")), 6, 4)
	b.add(stat("5xx ratio", "Share of responses with a 5xx status.", "percentunit", pct,
		instant(`(sum(rate(`+reqs5xx+`[$__rate_interval])) or vector(0)) / sum(rate(`+reqs+`[$__rate_interval]))`, "")), 6, 4)
	b.add(stat("Error budget remaining", "Share of the error budget of a 99.9% availability objective (5xx count as errors) left over the dashboard's time range.", "percentunit",
		steps("red", 0.25, "orange", 0.5, "green"),
		instant(`1 - ((sum(increase(`+reqs5xx+`[$__range])) or vector(0)) / sum(increase(`+reqs+`[$__range]))) / `+errorBudget, "")), 6, 4)
	b.add(stat("Requests in flight", "", "short", nil,
		instant(`sum(fluxgate_http_requests_in_flight{route_id=~"$route"})`, "")), 6, 4)
	b.add(timeseries("Throughput by route", "Requests per second answered by the gateway.", "reqps",
		q(`sum by (route_id) (rate(`+reqs+`[$__rate_interval]))`, "{{route_id}}")), 12, 8)
	b.add(timeseries("Responses by status", "", "reqps",
		q(`sum by (status) (rate(`+reqs+`[$__rate_interval]))`, "{{status}}")), 12, 8)
	b.add(timeseries("5xx ratio by route", "", "percentunit",
		q(`sum by (route_id) (rate(`+reqs5xx+`[$__rate_interval])) / sum by (route_id) (rate(`+reqs+`[$__rate_interval]))`, "{{route_id}}")), 12, 8)
	b.add(timeseries("Error budget burn rate", "5xx ratio divided by the 0.1% budget of a 99.9% objective: 1 spends the budget exactly over the objective's window.", "short",
		q(`((sum(rate(`+reqs5xx+`[$__rate_interval])) or vector(0)) / sum(rate(`+reqs+`[$__rate_interval]))) / `+errorBudget, "burn rate")), 12, 8)

	b.row("Gateway latency")
	b.add(timeseries("Latency p50 / p90 / p99", "Gateway request duration, from receiving a request to the end of its response.", "s",
		q(`histogram_quantile(0.5, sum by (le) (rate(`+dur+`[$__rate_interval])))`, "p50"),
		q(`histogram_quantile(0.9, sum by (le) (rate(`+dur+`[$__rate_interval])))`, "p90"),
		q(`histogram_quantile(0.99, sum by (le) (rate(`+dur+`[$__rate_interval])))`, "p99")), 12, 8)
	b.add(heatmap("Upstream latency heatmap", "Requests per latency bucket (fluxgate_http_request_duration_seconds, 5 ms to 2 s).", "s",
		q(`sum by (le) (increase(`+dur+`[$__rate_interval]))`, "")), 12, 8)
	b.add(timeseries("p95 latency by route", "", "s",
		q(`histogram_quantile(0.95, sum by (route_id, le) (rate(`+dur+`[$__rate_interval])))`, "{{route_id}}")), 12, 8)
	b.add(timeseries("p95 latency by upstream target", "", "s",
		q(`histogram_quantile(0.95, sum by (upstream_host, le) (rate(`+dur+`[$__rate_interval])))`, "{{upstream_host}}")), 12, 8)

	b.row("Upstreams")
	b.add(stateTimeline("Upstream target health", "1 takes traffic; 0 drained by health checks or outlier detection.", upstreamHealth,
		q(`max by (upstream, upstream_host) (fluxgate_upstream_health)`, "{{upstream}} {{upstream_host}}")), 12, 8)
	b.add(timeseries("Effective weights", "Load-balancing weight of each target (adaptive balancing and canaries change them).", "short",
		q(`max by (upstream, upstream_host) (fluxgate_upstream_weight)`, "{{upstream}} {{upstream_host}}")), 12, 8)
	b.add(timeseries("Active upstream connections", "Open connections from the gateway to each target.", "short",
		q(`sum by (upstream_host) (fluxgate_upstream_active_connections)`, "{{upstream_host}}")), 24, 8)

	b.row("Circuit breakers and rate limits")
	b.add(stateTimeline("Circuit breaker states", "0 closed, 1 open, 2 half-open, per upstream group.", breakerStates,
		q(`max by (circuit_name) (fluxgate_circuit_breaker_state)`, "{{circuit_name}}")), 12, 8)
	b.add(timeseries("Circuit breaker transitions", "", "short",
		q(`sum by (circuit_name, new_state) (increase(circuit_breaker_state_transition_total[$__rate_interval]))`, "{{circuit_name}} → {{new_state}}")), 12, 8)
	b.add(timeseries("Rate limiter remaining tokens", "Tokens left in the gateway's token buckets.", "short",
		q(`sum by (route_id) (fluxgate_ratelimiter_remaining_tokens{route_id=~"$route"})`, "{{route_id}}")), 12, 8)
	b.add(timeseries("Rate limit hits", "Requests refused by a rate limiter.", "reqps",
		q(`sum by (route_id) (rate(fluxgate_rate_limit_hits_total{route_id=~"$route"}[$__rate_interval]))`, "{{route_id}}")), 12, 8)

	b.row("TLS")
	b.add(stat("TLS certificate expiry", "Time until the earliest serving certificate expires.", "s",
		steps("red", 7*86400, "orange", 30*86400, "green"),
		instant(`min(fluxgate_tls_certificate_expiry_timestamp_seconds) - time()`, "")), 8, 6)
	b.add(timeseries("TLS certificates expiring", "Time until each serving certificate expires.", "s",
		q(`min by (instance, server_name) (fluxgate_tls_certificate_expiry_timestamp_seconds) - time()`, "{{instance}} {{server_name}}")), 8, 6)
	b.add(timeseries("TLS handshake p95", "", "s",
		q(`histogram_quantile(0.95, sum by (le) (rate(fluxgate_tls_handshake_duration_seconds_bucket[$__rate_interval])))`, "p95")), 8, 6)

	b.row("Flow control")
	const dec = `fluxgate_flow_decisions_total{policy_name=~"$policy"}`
	b.add(timeseries("Flow decisions", "Decisions per second by policy, decision type and reason (no_match: no policy matched the control point).", "ops",
		q(`sum by (policy_name, decision_type, reason) (rate(`+dec+`[$__rate_interval]))`, "{{policy_name}} {{decision_type}} {{reason}}")), 12, 8)
	b.add(timeseries("Rejected share by policy", "", "percentunit",
		q(`sum by (policy_name) (rate(fluxgate_flow_decisions_total{policy_name=~"$policy",decision_type="DECISION_TYPE_REJECTED"}[$__rate_interval])) / sum by (policy_name) (rate(`+dec+`[$__rate_interval]))`, "{{policy_name}}")), 12, 8)
	const fm = `policy_name=~"$policy"`
	b.add(timeseries("Flux meter throughput", "Flows measured per second by each flux meter.", "ops",
		q(`sum by (policy_name, flux_meter_name) (rate(flux_meter_count{`+fm+`}[$__rate_interval]))`, "{{policy_name}}/{{flux_meter_name}}")), 8, 8)
	b.add(timeseries("Flux meter p95", "p95 of accepted flows, in the meter's unit (milliseconds for workload_duration_ms).", "ms",
		q(`histogram_quantile(0.95, sum by (policy_name, flux_meter_name, le) (rate(flux_meter_bucket{`+fm+`,decision_type="DECISION_TYPE_ACCEPTED"}[$__rate_interval])))`, "{{policy_name}}/{{flux_meter_name}}")), 8, 8)
	b.add(timeseries("Flux meter error ratio", "Share of measured flows with flow_status Error (5xx or error spans).", "percentunit",
		q(`(sum by (policy_name, flux_meter_name) (rate(flux_meter_count{`+fm+`,flow_status="Error"}[$__rate_interval])) or 0 * sum by (policy_name, flux_meter_name) (rate(flux_meter_count{`+fm+`}[$__rate_interval]))) / sum by (policy_name, flux_meter_name) (rate(flux_meter_count{`+fm+`}[$__rate_interval]))`, "{{policy_name}}/{{flux_meter_name}}")), 8, 8)
	b.add(timeseries("Fail-open admissions", "Flows fail_open rate limiters admitted because Redis did not decide.", "ops",
		q(`sum by (reason) (rate(fluxgate_failopen_total[$__rate_interval]))`, "{{reason}}")), 12, 8)
	b.add(timeseries("Redis errors", "Failed or skipped Redis calls of global rate limiters.", "ops",
		q(`sum by (reason) (rate(fluxgate_redis_errors_total[$__rate_interval]))`, "{{reason}}")), 12, 8)

	b.row("Agents")
	b.add(stat("Agents up", "Agents Prometheus scrapes successfully (jobs named fluxgate*).", "short", nil,
		instant(`sum(up{job=~"fluxgate.*"})`, "")), 6, 4)
	b.add(stat("Policies loaded", "", "short", nil,
		instant(`sum(fluxgate_policies_loaded)`, "")), 6, 4)
	b.add(stat("Policy reload errors", "Policy file versions refused over the time range.", "short", steps("green", 1, "red"),
		instant(`sum(increase(fluxgate_policy_reload_errors_total[$__range]))`, "")), 6, 4)
	b.add(stat("Lowest uptime", "", "s", nil,
		instant(`min(fluxgate_system_uptime_seconds)`, "")), 6, 4)
	b.add(timeseries("Invalid signal readings", "Circuit ticks per second in which a signal had no valid value.", "ops",
		q(`sum by (policy_name, signal_name) (rate(invalid_signal_readings_total{policy_name=~"$policy"}[$__rate_interval]))`, "{{policy_name}} {{signal_name}}")), 12, 8)
	b.add(timeseries("Circuit ticks", "Ticks evaluated and missed per second.", "ops",
		q(`sum by (policy_name) (rate(fluxgate_circuit_ticks_total{policy_name=~"$policy"}[$__rate_interval]))`, "{{policy_name}} evaluated"),
		q(`sum by (policy_name) (rate(fluxgate_circuit_missed_ticks_total{policy_name=~"$policy"}[$__rate_interval]))`, "{{policy_name}} missed")), 12, 8)
	return b.dashboard()
}
