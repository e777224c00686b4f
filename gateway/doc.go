// Package gateway is FluxGate's built-in reverse proxy (`fluxgate
// gateway`).
//
// A Gateway is built from the gateway section of fluxgate.yaml
// (Config) and serves on one of three engines: net/http (it is an
// http.Handler; Upgrade: h2c requests use it, and with
// gateway.http2.server net the TLS connections that chose HTTP/2 and h2c
// ones with prior knowledge, which otherwise go to the gateway's own
// HTTP/2 server, package internal/h2, serving the same handler:
// NewHTTP2Server, LeanServer.ServeHTTP2With); the fast HTTP/1.1 engine
// on fasthttp (NewFastServer), which proxies with pooled fasthttp clients
// and passes WebSocket upgrades and routes to HTTP/2 groups to the
// net/http engine in process (buffering such a request's body first); and
// the lean engine (NewLeanServer; plain, h2c and TLS listeners use it,
// see LeanServer.ServeTLSWith and ServeH2CWith), which reads
// plain HTTP/1.1 requests strictly (package http1), forwards them with
// their framing to pooled target connections and relays the answers as
// they come, and hands every other connection to the fast engine with
// the bytes it read (lean.go); and, on Linux, the loop engine
// (NewLoopServer, gateway.engine loop), which serves the lean engine's
// requests on event loops (package internal/eventloop), on plain and TLS
// listeners (LoopServer.ServeTLSWith: the handshake on a goroutine, then
// the socket on a loop, looptls.go), and hands every other connection
// to the lean engine (loop.go). Service holds the
// client connections of every engine under gateway.max_connections,
// closing the idle longest to make room (conncap.go). All do the same for
// each request:
//
//  1. finds the first route whose match (path_prefix, host, headers)
//     fits, or answers 404 {"error":"no_route"};
//  2. checks the request at the route's control point through its
//     client.Gate (as the SDK middleware, client.Middleware, does): a
//     rejection answers
//     429/503/403 with Retry-After and a JSON body naming the reason; the
//     flow goes to Options.Flows (the agent's flux meters, in process) or
//     as a span to Options.Tracer;
//  3. picks the canary group when a header or cookie match forces it or
//     the canary weight sends the request there (exact proportions, or
//     sticky per client), else the primary group;
//  4. asks the group's circuit breaker (controlpoint/breaker); open, it
//     answers 503 {"error":"breaker_open"} with Retry-After;
//  5. proxies (net/http: to HTTP/1.1 groups over the lean engine's
//     leanPools, most requests directly (direct.go) and the rest through
//     httputil.ReverseProxy, whose Transport is net/http's for HTTP/2
//     groups and bodies the pools do not carry; fast: a fasthttp
//     HostClient per target; lean: a leanPool per target; loop: a
//     loopPool per target and loop) to a target
//     chosen by the group's algorithm — round-robin,
//     weighted-round-robin (smooth), least-request or adaptive (peak-EWMA
//     latency × queue length, error-penalised, weights bounded) — among
//     targets that pass active health checks and are not drained by
//     outlier detection; below the panic threshold it spreads over all.
//     Idempotent requests without a body that fail to connect are retried
//     on another target within the group's retry budget.
//
// Streaming bodies and WebSocket upgrades pass through. X-Forwarded-For
// (appended to the client's chain), -Host and -Proto are set on every
// engine; a client's Forwarded field is dropped, as the gateway vouches
// for X-Forwarded-* only. A target must start its response within
// ResponseHeaderTimeout; a body may then stream for as long as it takes.
// On the fast engine a client that disconnects does not cancel its
// upstream request (fasthttp does not report it); the timeout bounds it.
// On both engines a request ends once its response body has been relayed
// (relay on the fast engine): its metrics, flow workload time, canary
// latency and breaker outcome include the body, a target that breaks off
// its body has failed, a client that leaves mid-body says nothing of the
// target. Served on FastListener, the fast engine tells an abandoned
// upload from a failing target.
//
// Protocols. Clients speak HTTP/1.1, and HTTP/2 by ALPN when gateway.tls
// terminates TLS (certs.Reloader: the pair is reloaded when its files
// change, a pair that does not load keeps the previous one), or h2c on a
// plain listener with gateway.h2c. Upstream groups speak HTTP/1.1, or
// HTTP/2 with upstreams[].http2 (h2c with prior knowledge, or ALPN h2
// with upstreams[].tls); each protocol has its own pooled transport.
// Active health checks use the group's scheme over HTTP/1.1 (HTTP/2 by
// ALPN over TLS).
//
// A canary with a metrics section is judged every 100ms over a sliding
// window: pass, fail (error ratio or p99 latency over target) or no_data
// (below min_samples). Fail rolls the weight back to 0 and latches until
// the verdict recovers, the weight is reset to 0 or the config changes
// it (canaryState has the rule); no data never promotes. Circuits set
// canary and target weights through the flow_control.canary and
// flow_control.upstream_weight actuators (SetActuatorInput); an invalid
// signal leaves the configured weight.
//
// Service adds what `fluxgate gateway` needs around a Gateway: the
// store's TrafficPolicies applied over the file's gateway section (their
// rate limits compiled into Policies for the agent's engine), reconciled
// before a policy PUT answers, and the changes of the file's gateway
// section that the program's watcher hands it (ApplyConfig). It is a part
// of package fluxgate's Run (Run, Started).
//
// Routing state is an immutable snapshot behind an atomic pointer; Update
// swaps it without dropping requests and keeps the health of unchanged
// targets. Run owns the health-check and outlier loops. Service runs a
// Gateway next to an agent, reached through Host. A Gateway is safe for
// concurrent use.
package gateway
