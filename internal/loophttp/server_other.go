//go:build !linux

package loophttp

import (
	"context"
	"net"
)

// Server is not available off Linux.
type Server struct{}

// New returns ErrUnsupported.
func New(Options) (*Server, error) { return nil, ErrUnsupported }

// Serve returns ErrUnsupported.
func (*Server) Serve(*net.TCPListener) error { return ErrUnsupported }

// ServeTLS returns ErrUnsupported.
func (*Server) ServeTLS(net.Listener) error { return ErrUnsupported }

// Shutdown does nothing.
func (*Server) Shutdown(context.Context) error { return nil }
