package main

import (
	"slices"

	"gopkg.in/yaml.v3"

	"github.com/fluxgate/fluxgate/policies"
	"github.com/fluxgate/fluxgate/policies/strictyaml"
)

// circuitKinds are the component kinds package circuit registers with the
// policy parser (circuit.Register). fluxctl does not link circuit (it
// would bring PromQL and the TSDB), so without these a policy with any
// signal component (query.promql, decider, ema, …) was refused locally as
// "unknown component kind". TestCircuitKindsMatchCircuit keeps the list
// equal to circuit.Kinds().
var circuitKinds = []string{
	"aiad_load_multiplier", "aimd_load_multiplier", "alerter", "and", "arithmetic_combinator",
	"bool_variable", "decider", "differentiator", "ema", "extrapolator", "first_valid",
	"gradient_controller", "holder", "integrator", "inverter", "max", "min", "nested_circuit",
	"or", "pid_controller", "polynomial_range_function", "pulse_generator", "query.promql",
	"signal_generator", "sma", "switcher", "unary_operator", "variable",
}

// agentCheckedSpec is the spec fluxctl gives a circuit kind: it accepts
// the component's YAML as it is. The document's source is sent unchanged,
// and the agent (or, with --kubeconfig, the agents of the cluster) decodes
// and checks the spec, answering with the positioned errors.
type agentCheckedSpec struct{}

func (*agentCheckedSpec) UnmarshalStrictYAML(*strictyaml.Decoder, *yaml.Node) {}

func init() {
	registered := policies.ComponentKinds()
	register := func(kind string, newSpec func() any) {
		if !slices.Contains(registered, kind) { // a test binary that links circuit has them already
			policies.RegisterComponent(kind, newSpec)
		}
	}
	for _, kind := range circuitKinds {
		register(kind, func() any { return &agentCheckedSpec{} })
	}
	// circuit also registers the gateway's actuators, whose specs are
	// policies types: fluxctl checks those fully.
	register("flow_control.canary", func() any { return &policies.CanaryActuator{} })
	register("flow_control.upstream_weight", func() any { return &policies.UpstreamWeight{} })
}
