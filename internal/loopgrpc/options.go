package loopgrpc

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"golang.org/x/net/http2/hpack"

	"github.com/fluxgate/fluxgate/internal/conncap"
	"github.com/fluxgate/fluxgate/internal/h2"
)

// ErrUnsupported is New's error where event loops do not run.
var ErrUnsupported = errors.New("loopgrpc: event loops run on Linux only")

// Options configure New. Unary and Fallback are needed.
type Options struct {
	// Unary are the methods answered on the loops, by full method name
	// ("/package.Service/Method").
	Unary map[string]Unary
	// Fallback serves every other call, as an HTTP/2 request (a
	// grpc.Server's ServeHTTP, behind the port's checks: grpc-go runs no
	// tap handle there).
	Fallback http.Handler
	// H2 holds the protocol's bounds (MaxConcurrentStreams, windows,
	// MaxHeaderListSize, MaxResetsPerSecond); its Handler and timeouts
	// are not used. Nil: h2's defaults.
	H2 *h2.Server
	// MaxRecvMsgSize bounds a Unary method's request message (default
	// 4 MiB).
	MaxRecvMsgSize int
	// Cap bounds the connections (nil: unbounded).
	Cap *conncap.Cap
	// PrefaceTimeout (default 10 s), IdleTimeout (2 min), WriteTimeout
	// (30 s), MaxConnectionAge (none) and MaxConnectionAgeGrace (30 s):
	// see the package doc.
	PrefaceTimeout, IdleTimeout, WriteTimeout time.Duration
	MaxConnectionAge, MaxConnectionAgeGrace   time.Duration
	// Loops is the number of event loops (0: GOMAXPROCS).
	Loops int
	// Logger logs panics and failed accepts; nil: silent.
	Logger *slog.Logger
}

// Unary answers one method's calls. It runs on the loop with the call
// (valid only during the call): it decodes the request and returns the
// answer to run, or an error (a gRPC status error, or any error: UNKNOWN)
// the call ends with.
type Unary func(c *Call) (Answer, error)

// Answer is a decoded call's answer.
type Answer struct {
	// Run appends the response message to out and returns it, or fails
	// the call with an error as Unary's. On the loop its ctx is never
	// done; on a goroutine (Waits) it ends with the call: the client's
	// reset, its grpc-timeout, the connection's end.
	Run func(ctx context.Context, out []byte) ([]byte, error)
	// Waits: Run may wait for I/O, so it runs on a goroutine.
	Waits bool
}

// Call is a call of a Unary method, as the loop read it.
type Call struct {
	// Method is the full method name, Msg the request message (valid
	// only during Unary's call).
	Method string
	Msg    []byte
	fields []hpack.HeaderField
}

// Field is the first value of the request's metadata field name (lower
// case), "" when there is none.
func (c *Call) Field(name string) string {
	for _, f := range c.fields {
		if f.Name == name {
			return f.Value
		}
	}
	return ""
}
