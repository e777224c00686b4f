// Package certs serves TLS from certificate files that change while the
// process runs: the agent's listeners (HTTP API, gRPC, metrics, OTLP) and
// the built-in gateway's.
//
// A Reloader holds a certificate pair and, for mutual TLS, the CAs that
// verify clients. It loads them in New, which fails with the file and what
// is wrong with it, and Run polls the files: a change that loads replaces
// them for the next handshake, one that does not is refused, logged and
// counted, and the previous files keep serving. ServerConfig builds the
// tls.Config of a listener (minimum version, client authentication, ALPN
// protocols); Listener terminates TLS in front of an http.Server with a
// handshake deadline, and GRPCCredentials wraps grpc-go's TLS credentials;
// both measure handshakes per listener.
//
// Metrics (on Options.Registerer, shared by every Reloader of a registry):
// fluxgate_tls_certificate_expiry_timestamp_seconds{server,server_name},
// fluxgate_tls_certificate_reloads_total{server,result},
// fluxgate_tls_handshake_duration_seconds{listener} and
// fluxgate_tls_handshake_errors_total{listener}.
//
// A Reloader is safe for concurrent use. It is its own package so that
// the agent and the gateway (which imports the agent) can share it.
package certs
