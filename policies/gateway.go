package policies

import (
	"fmt"
	"net"
)

// The gateway's actuator kinds, flow_control.canary and
// flow_control.upstream_weight, are registered by package circuit (like
// every circuit kind), which also makes them circuit actuators.

// GatewayActuator is implemented by the flow-control kinds that steer the
// built-in gateway (`fluxgate gateway`) rather than a control point: a
// circuit's values for them go to the gateway. In an agent without the
// gateway they do nothing.
type GatewayActuator interface {
	gatewayActuator()
}

// CanaryActuator is the flow_control.canary component: in_ports.weight
// sets the canary percentage of the gateway route route_id, over its
// configured weight. An invalid signal (not produced yet, NaN, outside
// 0..100) returns the route to its configured weight. The canary's own
// rollback wins over the circuit: while it is rolled back a weight above
// 0 waits, and a weight of 0 resets the rollout.
type CanaryActuator struct {
	RouteID string                `yaml:"route_id"`
	InPorts CanaryActuatorInPorts `yaml:"in_ports"`
}

// CanaryActuatorInPorts are the canary actuator's inputs.
type CanaryActuatorInPorts struct {
	Weight *InPort `yaml:"weight"` // percent, 0..100
}

func (*CanaryActuator) gatewayActuator() {}

// Validate implements the component registry's validation hook.
func (c *CanaryActuator) Validate() []error {
	var errs []error
	if c.RouteID == "" {
		errs = append(errs, fmt.Errorf("route_id is required"))
	}
	errs = checkInPort(errs, "weight", c.InPorts.Weight, true)
	if v, ok := c.InPorts.Weight.Constant(); ok && (v < 0 || v > 100) {
		errs = append(errs, fmt.Errorf("in_ports.weight: must be within 0..100, got %v", v))
	}
	return errs
}

// UpstreamWeight is the flow_control.upstream_weight component:
// in_ports.weight sets the load-balancing weight of one target (target,
// host:port) of the gateway upstream group upstream, over its configured
// weight. Weights steer weighted-round-robin, least-request and adaptive
// balancing. An invalid signal (not produced yet, NaN, ±Inf, negative)
// returns the target to its configured weight.
type UpstreamWeight struct {
	Upstream string                `yaml:"upstream"`
	Target   string                `yaml:"target"`
	InPorts  UpstreamWeightInPorts `yaml:"in_ports"`
}

// UpstreamWeightInPorts are the upstream weight actuator's inputs.
type UpstreamWeightInPorts struct {
	Weight *InPort `yaml:"weight"`
}

func (*UpstreamWeight) gatewayActuator() {}

// Validate implements the component registry's validation hook.
func (u *UpstreamWeight) Validate() []error {
	var errs []error
	if u.Upstream == "" {
		errs = append(errs, fmt.Errorf("upstream is required"))
	}
	if _, port, err := net.SplitHostPort(u.Target); err != nil || port == "" {
		errs = append(errs, fmt.Errorf("target must be host:port, got %q", u.Target))
	}
	errs = checkInPort(errs, "weight", u.InPorts.Weight, true)
	if v, ok := u.InPorts.Weight.Constant(); ok && v < 0 {
		errs = append(errs, fmt.Errorf("in_ports.weight: must not be negative, got %v", v))
	}
	return errs
}
