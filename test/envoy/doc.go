// Package envoy is the end-to-end test of the Envoy integration without
// Envoy: no Envoy binary is packaged where FluxGate is tested (not in
// Debian, npm or the Go module proxy), so a real agent is driven over
// real gRPC connections with the messages Envoy sends, in
// go-control-plane's types: ext_authz Check requests from a route that
// promises flow ends, and the http_grpc access logger's stream of
// StreamAccessLogsMessage. What only a running Envoy could show (that it
// copies ext_authz's headers into the access log, and when it flushes
// its buffer) is not proven here; examples/envoy checks the example
// configuration against Envoy's schema.
package envoy
