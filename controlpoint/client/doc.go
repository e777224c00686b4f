// Package client is FluxGate's Go SDK: it asks a control point whether to
// admit a request, from inside an application.
//
// # Model
//
// A Checker answers one check request (a flow.Request: control point,
// labels, tokens) with one decision (a flow.Decision, the one shape of a
// decision inside a process). The caller owns the decision and may reuse
// it across checks, so a check allocates nothing of its own; protobuf is
// only the form a decision takes on the wire. There are two:
//
//   - controlpoint.NewLocalChecker wraps an in-process engine. No network; the
//     answer costs about as much as the engine's Check.
//   - NewRemote talks to an agent's gRPC check service over one
//     persistent connection (HTTP/2, multiplexed), opened once and shared
//     by every check until Close. It never opens a connection per request,
//     and converts the answer at that edge (flow.Decision.FromProto).
//
// A bare Checker returns an error when it cannot decide (agent down, slow,
// malformed request). What to do then is a choice the application makes
// once, explicitly, by wrapping the Checker in a Guard:
//
//   - every check gets a hard deadline (GuardOptions.Timeout, 10 ms by
//     default; an earlier deadline of the caller's context wins);
//   - on an error or a timeout the Guard answers with its FailureMode:
//     FailOpen (the default) accepts the request, FailClosed rejects it
//     with reason REJECT_REASON_FAILED_CLOSED and status 503, so a broken
//     agent never looks like a rate limit (429);
//   - failures are counted in fluxgate_client_check_failures_total{mode,
//     reason} and, with a Logger, logged;
//   - a circuit breaker stops paying the timeout on every request while
//     the agent is down: after BreakerThreshold consecutive failures (5 by
//     default) the Guard skips the agent for BreakerCoolDown (1 s) and
//     applies the failure mode at once; then it lets exactly one probe
//     through, closing the breaker if the probe succeeds and opening it for
//     another cool-down if it fails. Checks arriving while the probe is in
//     flight are not sent either. The state is exported as
//     fluxgate_client_breaker_state (0 closed, 1 open, 2 half-open). It is
//     a controlpoint/breaker Breaker with ConsecutiveFailures: while the
//     agent answers, it costs two atomic loads a check and takes no lock.
//
// A caller that goes away is not a failure of the agent: when the caller's
// context is cancelled (an HTTP client disconnects, a gRPC client cancels),
// the check in flight is cancelled with it, the Guard returns the context's
// error, and nothing is counted.
//
// # Adapters
//
// Middleware (net/http) and UnaryServerInterceptor (gRPC) turn a request
// into flow labels, check it at a control point ("ingress" by default)
// with the request's own context, and answer a rejection themselves:
// HTTP with flow.DeniedStatus, the decision headers
// (X-FluxGate-*, Retry-After, RateLimit-*) and a JSON body; gRPC with
// ResourceExhausted, PermissionDenied or Unavailable and the same facts in
// trailer metadata. An admitted request reaches the next handler with the
// decision in its context (FromContext), so handlers and span emitters can
// read the flux meter names. The adapters take that decision from a pool
// and reuse it once the handler has returned.
//
// The adapters do not pick a failure mode: pass them a Guard. Given a bare
// Checker that fails, they answer 503 / Unavailable.
//
// The HTTP check-and-record step is one Gate, which Middleware and both
// engines of the built-in gateway share: an engine describes a request as
// an Exchange (its response header, a JSON answer, its method and target),
// the Gate checks it and answers a rejection, and Admitted.End reports the
// flow's end and records it. An adapter for another HTTP server is its
// labels and an Exchange. An engine that reads the clock itself (an event
// loop, once a wake) passes that reading to the gate's …At methods, and
// an in-process engine (a LocalTryChecker and a LocalFlowEnder) decides
// and ends flows at it: the gate then reads no clock of its own.
//
// # Flow spans
//
// With MiddlewareOptions.Tracer set, the adapters record one span per
// checked request with the attributes of the Flux Meter span convention
// (FlowSpan). The package takes any trace.Tracer of the OpenTelemetry API
// and links no OpenTelemetry SDK: to send the spans to an agent's OTLP
// receiver, where they feed Flux Meters, pass the Tracer of an
// otlpspans.Emitter (package controlpoint/client/otlpspans, which brings
// the SDK and the OTLP exporter). An application that does not import it
// links gRPC, the protos, the OpenTelemetry API and client_golang, and
// none of the agent's packages.
//
// Local, Remote, Guard and the adapters are safe for concurrent use.
package client
