package loophttp

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/fluxgate/fluxgate/internal/conncap"
)

// Options configure New. Handler, Serves and Fallback are needed.
type Options struct {
	// Handler answers the requests served on the loops. It is called on
	// a loop, unless Waits says the request may wait; it must not keep
	// the ResponseWriter or its Header past its return (the loop reuses
	// them), as net/http asks too.
	Handler http.Handler
	// Serves picks the requests served on the loops by method and path
	// (the target's, up to a query; one with escapes is not asked); of
	// those, the ones with no body or one of at most MaxRequestBody
	// bytes, not chunked, are.
	Serves func(method, path []byte) bool
	// Waits reports whether answering r may wait for I/O; such requests
	// are answered on a goroutine. Nil: none waits.
	Waits func(r *http.Request) bool
	// Fallback serves the connections handed over. Serve serves it and
	// Shutdown shuts it down; set its ConnState to conncap.TrackConnState
	// when Cap is set, so that its connections count as idle or busy.
	Fallback *http.Server
	// Cap bounds the connections (nil: unbounded).
	Cap *conncap.Cap
	// HeaderTimeout (default 10s), IdleTimeout (2m) and WriteTimeout
	// (30s): see the package doc.
	HeaderTimeout, IdleTimeout, WriteTimeout time.Duration
	// Loops is the number of event loops (0: GOMAXPROCS).
	Loops int
	// Logger logs handler panics and failed hand-overs; nil: silent.
	Logger *slog.Logger
}
