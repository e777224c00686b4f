package circuit

import "github.com/fluxgate/fluxgate/policies"

// The gateway's actuators (flow_control.canary, flow_control.upstream_weight)
// go to the built-in gateway through the agent's ActuatorSink. Their specs
// live in package policies; they are registered here, with the circuit
// kinds, so the policies package's own registry stays as its tests know it.
// Like every flow-control kind, their signal inputs come from the spec
// (policies.Actuator).
func init() {
	policies.RegisterComponent("flow_control.canary", func() any { return &policies.CanaryActuator{} })
	policies.RegisterComponent("flow_control.upstream_weight", func() any { return &policies.UpstreamWeight{} })
}
