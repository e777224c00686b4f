package fluxgate

import (
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fluxgate/fluxgate/agent"
	"github.com/fluxgate/fluxgate/controlpoint"
	"github.com/fluxgate/fluxgate/controlpoint/client"
	"github.com/fluxgate/fluxgate/gateway"
	"github.com/fluxgate/fluxgate/policies"
)

// GatewayHost joins a gateway.Service to the agent a: its engine, flux
// meters, registry, HTTP API, policy store, health, and the circuits and
// target discovery that steer the running gateway. The agent knows no
// gateway type: the gateway's actuator kinds reach it through
// agent.Actuators, its compiled TrafficPolicies through
// Agent.SetCompiledPolicies, both joined here.
func GatewayHost(a *agent.Agent) gateway.Host { return gatewayHost{a} }

var (
	_ gateway.Host           = gatewayHost{}
	_ agent.Actuators        = gatewayActuators{}
	_ agent.UpstreamTargeter = discoveredTargets{}
)

type gatewayHost struct{ a *agent.Agent }

func (h gatewayHost) Checker() client.Checker           { return controlpoint.NewLocalChecker(h.a.Engine()) }
func (h gatewayHost) Flows() client.FlowObserver        { return h.a.FluxMeters() }
func (h gatewayHost) Registerer() prometheus.Registerer { return h.a.Registry() }

func (h gatewayHost) HandleHTTP(pattern string, handler http.Handler) {
	h.a.HandleHTTP(pattern, handler)
}

// gatewaySource names the gateway's compiled policies in the agent
// (Agent.SetCompiledPolicies).
const gatewaySource = "gateway"

func (h gatewayHost) SetGatewayPolicies(ps []*policies.Policy) {
	h.a.SetCompiledPolicies(gatewaySource, ps)
}

// SubscribeTrafficPolicies picks the TrafficPolicies of every store
// snapshot, those already loaded first.
func (h gatewayHost) SubscribeTrafficPolicies(fn func([]*policies.TrafficPolicy)) {
	pick := func(_, cur *agent.PolicySnapshot) {
		var tps []*policies.TrafficPolicy
		for _, e := range cur.Sorted() {
			if tp, ok := e.Object.(*policies.TrafficPolicy); ok {
				tps = append(tps, tp)
			}
		}
		fn(tps)
	}
	h.a.Store().Subscribe(pick)
	pick(nil, h.a.Store().Snapshot())
}

func (h gatewayHost) RegisterHealth(name string, check func() gateway.HealthStatus) {
	h.a.Health().Register(name, false, func() agent.ComponentHealth {
		st := check()
		if st.Healthy {
			return agent.ComponentHealth{Status: agent.StatusHealthy, Message: st.Message}
		}
		return agent.ComponentHealth{Status: agent.StatusDegraded, Message: st.Message, Errors: st.Errors}
	})
}

func (h gatewayHost) Attach(g *gateway.Gateway) {
	if g == nil {
		h.a.SetActuators(nil)
		h.a.SetUpstreamTargeter(nil)
		return
	}
	h.a.SetActuators(gatewayActuators{g})
	h.a.SetUpstreamTargeter(discoveredTargets{g})
}

// gatewayActuators hands the circuits' inputs of the gateway's actuator
// kinds (policies.GatewayActuator: flow_control.canary,
// flow_control.upstream_weight) to the gateway.
type gatewayActuators struct{ g *gateway.Gateway }

func (s gatewayActuators) SetActuatorInput(spec any, port string, value float64) error {
	ga, ok := spec.(policies.GatewayActuator)
	if !ok {
		return fmt.Errorf("fluxgate: %T is not an actuator of the gateway", spec)
	}
	return s.g.SetActuatorInput(ga, port, value)
}

// discoveredTargets hands the agent's discovered targets (host:port by
// upstream group) to the gateway.
type discoveredTargets struct{ g *gateway.Gateway }

func (d discoveredTargets) SetUpstreamTargets(byGroup map[string][]string) error {
	var targets map[string][]gateway.TargetConfig
	if byGroup != nil {
		targets = make(map[string][]gateway.TargetConfig, len(byGroup))
	}
	for group, addrs := range byGroup {
		ts := make([]gateway.TargetConfig, 0, len(addrs))
		for _, a := range addrs {
			ts = append(ts, gateway.TargetConfig{Address: a})
		}
		targets[group] = ts
	}
	return d.g.SetUpstreamTargets(targets)
}
