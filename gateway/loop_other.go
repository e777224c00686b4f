//go:build !linux

package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"

	"github.com/fluxgate/fluxgate/internal/h2"
)

// LoopServer is the loop engine's server, Linux only: elsewhere config
// validation refuses gateway.engine loop and NewLoopServer fails.
type LoopServer struct{}

// loopsSupported reports whether this system runs the loop engine.
const loopsSupported = false

var errNoLoops = errors.New("gateway: the loop engine runs on Linux only")

// NewLoopServer fails: the loop engine runs on Linux only.
func (g *Gateway) NewLoopServer(*slog.Logger, int) (*LoopServer, error) { return nil, errNoLoops }

// Serve fails: the loop engine runs on Linux only.
func (s *LoopServer) Serve(net.Listener) error { return errNoLoops }

// ServeTLSWith does nothing: the loop engine runs on Linux only.
func (s *LoopServer) ServeTLSWith(*http.Server) {}

// serveWith does nothing: the loop engine runs on Linux only.
func (s *LoopServer) serveWith(*Gateway, Config, *http.Server, bool, *slog.Logger) {}

// ServeHTTP2With does nothing: the loop engine runs on Linux only.
func (s *LoopServer) ServeHTTP2With(*h2.Server) {}

// Shutdown does nothing.
func (s *LoopServer) Shutdown(context.Context) error { return nil }

// loopsKeepOnly does nothing: no loop server serves.
func (g *Gateway) loopsKeepOnly(map[fastKey]bool) {}
