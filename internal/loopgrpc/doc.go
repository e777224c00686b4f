// Package loopgrpc serves a gRPC port's hot unary methods on event loops
// and hands every other call to a grpc.Server, on one listener.
//
// Gateways and SDKs call the agent's check once per request, on HTTP/2
// connections that carry little else. grpc-go spends 13–16 µs of CPU on
// each such call on the machines measured (a goroutine a stream, its
// stack grown and copied, the transport's buffers and locks, the codec),
// ten times the decision. A Server reads such connections on event loops
// (internal/eventloop, Linux): internal/h2's Session decodes the frames
// and answers the protocol's own (SETTINGS, PING, WINDOW_UPDATE, GOAWAY)
// with its bounds, and a call of a method in Options.Unary is decoded,
// decided and answered on the loop (or, when the method says it may wait,
// on a kept worker goroutine, eventloop.Workers, that queues the answer
// back: the answers that came meanwhile go out together, one write a
// connection), its frames written with the others the same read
// produced.
//
// Every other call — another method, a compressed message, a content type
// other than application/grpc[+proto] — stays on its connection and is
// served by Options.Fallback (a grpc.Server's ServeHTTP, behind the same
// checks as its own port) on a goroutine of its own: its request body
// flows in as the client sends it, its answer out within the client's
// windows, so streaming calls work as they do on grpc-go's own transport.
// Connection-level options of grpc-go do not apply to them (keepalive
// enforcement, max connection age): the Server has its own (below).
//
// Limits: the client preface must come within PrefaceTimeout; a
// connection with no call open for IdleTimeout ends with GOAWAY; frames
// the client does not read within WriteTimeout close it; a connection
// older than MaxConnectionAge gets GOAWAY and MaxConnectionAgeGrace to
// finish its calls; a unary message past MaxRecvMsgSize is refused with
// RESOURCE_EXHAUSTED; Options.Cap bounds the connections (idle ones with
// no call open may be evicted for newcomers); the Session's bounds
// (streams, header lists, windows, resets) are Options.H2's.
//
// TLS: ServeTLS serves a listener whose connections finished their
// handshake on goroutines (certs.Reloader.WrappedListener over
// looptls.Wrap); each then moves to a loop, which decrypts what it reads
// and encrypts the Session's frames (internal/looptls), the same calls
// answered the same way. A client must have agreed on h2 by ALPN.
//
// On other systems New returns ErrUnsupported: serve with grpc-go.
package loopgrpc
