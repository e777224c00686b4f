// Package policies is the FluxGate policy language: plain Go structs for the
// YAML that users write, a strict parser that reports every problem with
// file:line:col, and validation.
//
// A policy file holds one or more YAML documents, each an object with the
// header
//
//	apiVersion: fluxgate.io/v1beta1
//	kind: Policy            # or TrafficPolicy
//	metadata: {name: NAME, namespace: NAMESPACE}   # namespace defaults to "default"
//
// A Policy follows the Aperture policy language (snake_case keys): flux
// meters and classifiers under spec.resources, and a circuit of signal
// components under spec.circuit, evaluated every evaluation_interval
// (default 1s):
//
//	spec:
//	  resources:
//	    flux_meters:
//	      checkout-latency:
//	        selectors: [{control_point: ingress, service: checkout}]
//	  circuit:
//	    evaluation_interval: 500ms
//	    components:
//	      - query: {promql: {...}}
//	      - flow_control: {rate_limiter: {...}}
//
// Each component list item is a mapping with one key, its kind. Kinds with
// a dot ("flow_control.rate_limiter") are written nested one level, as
// above. Component kinds are not known to this package: each kind registers
// itself with RegisterComponent from an init function, giving a constructor
// for its spec struct, and the parser strict-decodes the spec into it and
// calls its Validate method if it has one.
//
// A TrafficPolicy (camelCase keys, the product's high-level form) names a
// workload (targetRef) and its load balancing, rate limit and canary; it is
// compiled into a Policy plus gateway routing state elsewhere.
//
// Parse decodes and validates every document of a file, returning all
// problems at once as a strictyaml.ErrorList. Types built in Go rather than
// parsed can be checked with their Validate methods, which return
// *FieldError values naming the field path; SetDefaults fills the defaults
// that Parse applies.
//
// Values of these types are plain data: not safe for concurrent mutation,
// safe to share once built. The component registry is safe for concurrent
// use but is meant to be filled from init functions.
package policies
