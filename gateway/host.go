package gateway

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fluxgate/fluxgate/controlpoint/client"
	"github.com/fluxgate/fluxgate/policies"
)

// Host is what a Service needs from the process it runs in: the agent,
// joined to the gateway by the program (package fluxgate's GatewayHost).
// Its methods name no type of the host's, so the gateway does not import
// it.
type Host interface {
	// Checker decides at each route's control point.
	Checker() client.Checker
	// Flows receives a flux meter flow per checked request (Options.Flows).
	Flows() client.FlowObserver
	// Registerer receives the gateway's metrics.
	Registerer() prometheus.Registerer
	// HandleHTTP serves h on the host's HTTP API (GET /v1/gateway/upstreams).
	HandleHTTP(pattern string, h http.Handler)
	// SubscribeTrafficPolicies calls fn with the TrafficPolicies the host
	// holds now, and again whenever they change.
	SubscribeTrafficPolicies(fn func([]*policies.TrafficPolicy))
	// RegisterHealth reports the gateway as a component of the host's
	// health (not required for readiness).
	RegisterHealth(name string, check func() HealthStatus)
	// SetGatewayPolicies installs the policies compiled from the
	// TrafficPolicies' rate limits, replacing the previous ones.
	SetGatewayPolicies(ps []*policies.Policy)
	// Attach hands the running gateway to the host, whose circuits steer
	// it (SetActuatorInput) and whose discovery replaces upstream targets
	// (SetUpstreamTargets); nil detaches it.
	Attach(g *Gateway)
}

// HealthStatus is the gateway's component health: healthy, or degraded
// with the problems that keep part of its configuration unapplied.
type HealthStatus struct {
	Healthy bool
	Message string
	Errors  []string
}
