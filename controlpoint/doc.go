// Package controlpoint is FluxGate's decision engine: at a control point
// (a named place in a gateway or an application, such as "ingress"), it
// decides whether a flow (a request) is admitted.
//
// An Engine holds compiled policies. SetPolicies compiles them into an
// immutable snapshot indexed by control point and swaps it in atomically;
// Check reads the current snapshot without locks. For one flow, Check:
//
//  1. runs the classifiers whose selectors match, adding their labels to
//     the flow (an error is reported in the decision, never fatal);
//  2. lists the flux meters whose selectors match, for the span the
//     caller emits afterwards;
//  3. asks each matching flow-control component in policy order (rate
//     limiters, samplers, load schedulers, adaptive concurrency). The
//     first enforcing component that rejects decides; tokens and slots
//     taken by the components before it are given back. A dry_run
//     component counts what it would reject and never stops the chain.
//
// An adaptive_concurrency component holds a slot for each flow it admits
// until the flow ends: the Decision then carries a FlowID, and the caller
// reports the end with EndFlow (the gateway and the SDK middleware do;
// remote clients call the check API's FlowEnd). The component learns the
// service's latency from those ends (package concurrency).
//
// A control point that no policy matches admits every flow, and the flow
// is counted in fluxgate_flow_decisions_total with reason "no_match".
//
// Time is a parameter of Check, so tests replay exact step tables. The
// adapters that expose Check over gRPC, HTTP, Envoy ext_authz and nginx
// auth_request live in controlpoint/server; the Go SDK in
// controlpoint/client.
package controlpoint
