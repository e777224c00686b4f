// Package loophttp serves a few hot HTTP/1.1 routes on event loops and
// everything else with net/http, on one listener.
//
// The agent's check API is called once per request by gateways (nginx's
// auth_request, forward-auth proxies) on keep-alive connections that ask
// nothing else. Served by net/http each call costs a goroutine's park and
// wake on Go's poller, a bufio reader and writer, and net/http's request
// and response machinery: about 20 µs of CPU on the machines measured,
// twenty times the decision. A Server reads such connections on event
// loops (internal/eventloop, Linux): a loop reads a socket once per
// readiness event, parses the head with internal/http1 (the strict subset
// that net/http reads the same way), and calls the same http.Handler
// with a request built from the head and a ResponseWriter that formats
// the answer as net/http would (status line, header fields sorted, Date,
// Content-Length, the sniffed Content-Type), written with one write.
// Pipelined requests are answered in order.
//
// What the loops serve: a request Options.Serves picks by method and
// path, in http1's subset, with no body or one of at most MaxRequestBody
// bytes (a flow's end), read whole before the handler runs. At the first
// other request (a larger or chunked body, another route, a head outside the subset, one past MaxHead bytes,
// anything malformed) the connection moves to Options.Fallback, an
// http.Server, with the bytes read and not served, once the answers
// before it are written: net/http then serves it to its end, and answers
// what is malformed as it always does. A handler that may wait (I/O: a
// Redis round trip, a queue) must not run on a loop: Options.Waits says
// which requests may, and those run on a kept worker goroutine
// (eventloop.Workers) with a context that ends when the client goes, the
// connection reading nothing more until the answer is out.
//
// Limits: a request (its head, and a small body) must arrive within
// HeaderTimeout of its first byte, a connection idle (between requests)
// for IdleTimeout is closed, an answer the client does not take within
// WriteTimeout closes the connection, an answer's body is at most MaxBody
// bytes (the connection closes otherwise). Connections count against Options.Cap as net/http's do,
// idle between requests and busy during one, and keep their slot when
// handed to Fallback.
//
// TLS: ServeTLS serves a listener whose connections finished their
// handshake on goroutines (certs.Reloader.WrappedListener over
// looptls.Wrap): an HTTP/1.1 one moves to a loop, which decrypts what it
// reads and encrypts the answers (internal/looptls); one that agreed on
// h2 by ALPN goes to Fallback as it is. Requests carry the connection's
// TLS state (r.TLS), on Fallback too after a hand-over.
//
// On other systems New returns ErrUnsupported: serve with net/http.
package loophttp
