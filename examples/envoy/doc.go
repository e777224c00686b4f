// Package envoy holds the Envoy example (envoy.yaml): Envoy in front of an
// application, asking the FluxGate agent about every request through
// ext_authz and reporting every request's end through the gRPC access-log
// service. No Envoy binary can be installed where FluxGate is tested, so
// the package's test checks the example against Envoy's own API schema
// (go-control-plane's types and their generated validation) and against
// the names the agent expects; test/envoy drives a real agent with the
// same wire messages Envoy sends.
package envoy
