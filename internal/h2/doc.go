// Package h2 is the gateway's HTTP/2 server: it serves an http.Handler on
// connections that chose HTTP/2 (by ALPN over TLS), so the gateway's
// handler runs on it unchanged, at less cost than net/http's HTTP/2 server.
//
// # Model
//
// A Server's ServeConn serves one connection. One goroutine, the reader,
// reads every frame, answers the control frames (SETTINGS, PING,
// WINDOW_UPDATE) and opens streams. It decodes each header block (HEADERS
// and its CONTINUATIONs) itself, with the checks and errors of x/net's
// Framer, into a field list the connection reuses: the request's strings
// are its own. Each request runs its handler on a
// goroutine of its own at a time: one that served an earlier stream of the
// connection and waits for the next (its stack already grown; at most 1024
// wait in a Server, each for at most 4096 streams), or a new one. The
// handler writes its response itself: HEADERS and DATA go out under the
// connection's write lock, within the client's send windows, with one
// flush per write. There is no writer goroutine; the reader hands a
// stream to a waiting goroutine without blocking.
//
// A request is built as net/http's HTTP/2 server builds it: Method, URL
// and RequestURI from :path, Host from :authority (or host), Proto
// "HTTP/2.0", canonical Header keys, cookie fields joined with "; ",
// ContentLength from content-length (checked against the DATA received:
// RST_STREAM PROTOCOL_ERROR on a mismatch) or -1, TLS and RemoteAddr from
// the connection, and a context cancelled when the stream is reset, the
// handler returns or the connection ends. That context is the stream's
// own, with no deadline and no values: context.AfterFunc and
// context.WithCancel on it register with the stream, without a goroutine,
// so a handler may watch it for every request. The Body streams as DATA frames arrive; at most
// Server.StreamWindow bytes are buffered a stream (its receive window), and
// the window is given back by WINDOW_UPDATE as the handler reads. Declared
// trailers (the Trailer header) are filled in Request.Trailer by the body
// Read that returns io.EOF, on the handler's goroutine (as net/http does:
// the handler must not use Request.Trailer while it reads the body).
//
// The ResponseWriter holds up to 16 KiB of body: an answer that fits when
// the handler returns goes out with a content-length and a date in one
// flush with its HEADERS. Past that, or on Flush, HEADERS go first and the
// body streams as DATA frames; a write waits for the client's windows (at
// most WriteTimeout, or the ResponseController write deadline) and fails
// once the stream is reset. WriteHeader with a 1xx status (103 Early Hints)
// sends an informational HEADERS at once. Trailers are those declared in the
// Trailer header or set with http.TrailerPrefix. There is no content
// sniffing: a response without Content-Type goes without one (a proxy
// forwards what the upstream said). Header changes after the HEADERS frame
// is sent are ignored. ResponseController's SetReadDeadline and
// SetWriteDeadline bound the body's reads and the window waits. A handler
// panic resets the stream (INTERNAL_ERROR) and is logged, except
// http.ErrAbortHandler.
//
// Shutdown sends GOAWAY with the last stream taken on every connection;
// streams in flight finish, then the connection closes. Past its context,
// the connections are closed and the handlers' contexts cancelled. A
// connection ended for an error gets GOAWAY with its code; the server then
// reads and drops what the client still sends for up to a second before it
// closes, so that the client reads the GOAWAY rather than a reset.
//
// # Bounds
//
// Server.OnIdle, when set, is told when a connection's first handler
// starts and its last returns: the gateway closes only idle connections to
// make room under its connection cap.
//
// Every bound hit calls Server.OnProtocolError with a Reason… value (the
// gateway counts them in fluxgate_gateway_http2_protocol_errors_total) and
// logs at debug level with the client's address:
//
//   - MaxConcurrentStreams (100): a stream past it gets REFUSED_STREAM
//     (refused_stream).
//   - MaxHeaderListSize (64 KiB): a request past it gets 431
//     (header_list_too_long); a header block past twice it ends the
//     connection; the HPACK decoder's table is 4 KiB.
//   - CONTINUATION flood (CVE-2024-27316): a header block spread over more
//     than 64 frames, empty ones included, ends the connection with GOAWAY
//     ENHANCE_YOUR_CALM (continuation_flood).
//   - Rapid reset (CVE-2023-44487): more than MaxResetsPerSecond (200)
//     client resets in a second, or more than twice MaxConcurrentStreams
//     handlers running (reset streams' included), end the connection with
//     GOAWAY ENHANCE_YOUR_CALM (rapid_reset).
//   - PING and SETTINGS floods, and control frames for a client that does
//     not read: their answers go into the connection's 16 KiB write buffer;
//     once it is full, the reader waits for the write at most WriteTimeout,
//     then the connection ends (write_timeout).
//   - IdleTimeout (2 min): with no stream open, GOAWAY and close
//     (idle_timeout).
//   - ReadTimeout (30 s): for the client preface (bad_preface), and for
//     each frame while a request body is arriving (read_timeout).
//   - WriteTimeout (30 s): every write and flush, and a response's wait for
//     the client's flow-control window (write_timeout). The connection's
//     write deadline is renewed once a tenth of WriteTimeout (at most a
//     second) has passed since it was set, not on every write: a write
//     gets at least 90 % of WriteTimeout.
//   - Frames are at most 16 KiB (SETTINGS_MAX_FRAME_SIZE's default); the
//     receive windows, StreamWindow (1 MiB) a stream and ConnWindow
//     (4 MiB) a connection, bound the request bodies buffered.
//   - Malformed requests (missing pseudo-header fields, connection-specific
//     fields, upper-case names, a content-length not all digits, a :scheme
//     other than http or https, a :path not in origin form but * for
//     OPTIONS, userinfo in the authority) get RST_STREAM
//     PROTOCOL_ERROR (malformed_request); CONNECT gets 501 (no tunnels,
//     no extended CONNECT).
//
// # Sessions
//
// Server.NewSession serves the same protocol for an owner that reads and
// writes the socket itself and runs the requests on its own goroutine (an
// event loop): a Session takes the bytes read (Feed), decodes whole frames
// only (it never blocks), answers the control frames, hands each request
// (method, scheme, authority, path and checked fields), its body and its
// reset to the owner's SessionHandler, and queues the frames to write
// (Output); the owner answers with WriteHeaders and WriteData within the
// client's windows. The checks, bounds and answers above are the same
// (h2spec passes all its cases against it), except the timeouts, which are
// the owner's timers, and OnIdle.
//
// A Server is safe for concurrent use; its zero value serves with the
// defaults above and answers 404 without a Handler.
package h2
