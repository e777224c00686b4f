//go:build !linux

package loophttp

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/fluxgate/fluxgate/internal/conncap"
)

// Options configure New (see the Linux build's documentation).
type Options struct {
	Handler                                  http.Handler
	Serves                                   func(method, path []byte) bool
	Waits                                    func(r *http.Request) bool
	Fallback                                 *http.Server
	Cap                                      *conncap.Cap
	HeaderTimeout, IdleTimeout, WriteTimeout time.Duration
	Loops                                    int
	Logger                                   *slog.Logger
}

// Server is not available off Linux.
type Server struct{}

// New returns ErrUnsupported.
func New(Options) (*Server, error) { return nil, ErrUnsupported }

// Serve returns ErrUnsupported.
func (*Server) Serve(*net.TCPListener) error { return ErrUnsupported }

// Shutdown does nothing.
func (*Server) Shutdown(context.Context) error { return nil }
