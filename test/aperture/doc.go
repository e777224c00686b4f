// Package aperture tests that applications built on FluxNinja Aperture's
// SDKs work against the FluxGate agent unchanged: the unmodified
// @fluxninja/aperture-js from the npm registry (installed into js/ by
// `make deps`) checks flows over Aperture's gRPC API on the agent's gRPC
// port and exports its flow spans to the same address, where the policy's
// flux meter records them.
package aperture
