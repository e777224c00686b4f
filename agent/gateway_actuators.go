package agent

import (
	"sync"
	"sync/atomic"

	"github.com/fluxgate/fluxgate/circuit"
	"github.com/fluxgate/fluxgate/policies"
)

// GatewayActuators is what the built-in gateway offers circuits: the
// inputs of the policies.GatewayActuator kinds (flow_control.canary,
// flow_control.upstream_weight). value is NaN when the signal is invalid.
type GatewayActuators interface {
	SetActuatorInput(spec policies.GatewayActuator, port string, value float64) error
}

// SetGatewayActuators sends the circuits' gateway actuator inputs to g
// from now on; nil drops them again (as in an agent without the gateway).
// The gateway calls it when it starts and stops.
func (a *Agent) SetGatewayActuators(g GatewayActuators) {
	if g == nil {
		a.gw.gateway.Store(nil)
		return
	}
	a.gw.gateway.Store(&gatewayBox{g})
}

// SetGatewayPolicies installs ps, the policies the gateway compiled from
// TrafficPolicies, next to the store's policies: in the decision engine,
// the flux meter processor and the circuit runtime. Each call replaces the
// previous set. They must not share a key with a stored policy (the store
// keys TrafficPolicies and Policies alike, so compiling a TrafficPolicy
// under its own key cannot collide).
func (a *Agent) SetGatewayPolicies(ps []*policies.Policy) {
	a.gw.mu.Lock()
	a.gw.policies = ps
	a.gw.mu.Unlock()
	a.installPolicies(nil, a.store.Snapshot())
}

// gatewayHooks is the agent's side of the gateway wiring. As the circuit
// runtime's ActuatorSink it routes gateway actuator kinds to the gateway
// and every other kind to the decision engine.
type gatewayHooks struct {
	engine  circuit.ActuatorSink
	gateway atomic.Pointer[gatewayBox]                                // nil: no gateway running
	specs   atomic.Pointer[map[componentRef]policies.GatewayActuator] // of the store's policies

	mu       sync.Mutex         // serializes installPolicies; guards policies
	policies []*policies.Policy // compiled by the gateway from TrafficPolicies
}

type gatewayBox struct{ g GatewayActuators }

// componentRef names one component of one policy's circuit.
type componentRef struct {
	policy policies.Key
	index  int
}

var _ circuit.ActuatorSink = (*gatewayHooks)(nil)

// SetComponentInput implements circuit.ActuatorSink.
func (h *gatewayHooks) SetComponentInput(key policies.Key, component int, port string, value float64) error {
	if m := h.specs.Load(); m != nil {
		if spec, ok := (*m)[componentRef{key, component}]; ok {
			b := h.gateway.Load()
			if b == nil {
				return nil // no gateway in this process: nothing to steer
			}
			return b.g.SetActuatorInput(spec, port, value)
		}
	}
	return h.engine.SetComponentInput(key, component, port, value)
}

// updateActuators indexes the gateway actuators of cur's policies. It is
// subscribed to the store before installPolicies, so the index is current
// when the circuit runtime receives the policies.
func (h *gatewayHooks) updateActuators(_, cur *PolicySnapshot) {
	m := make(map[componentRef]policies.GatewayActuator)
	for key, e := range cur.Entries {
		p, ok := e.Object.(*policies.Policy)
		if !ok {
			continue
		}
		for i, c := range p.Spec.Circuit.Components {
			if c == nil {
				continue
			}
			if ga, ok := c.Spec.(policies.GatewayActuator); ok {
				m[componentRef{key, i}] = ga
			}
		}
	}
	h.specs.Store(&m)
}
