package h2

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of the Server's limits and timeouts (a zero field means its default).
const (
	DefaultMaxConcurrentStreams = 100
	DefaultMaxHeaderListSize    = 64 << 10
	DefaultStreamWindow         = 1 << 20
	DefaultConnWindow           = 4 << 20
	DefaultMaxResetsPerSecond   = 200
	DefaultIdleTimeout          = 2 * time.Minute
	DefaultReadTimeout          = 30 * time.Second
	DefaultWriteTimeout         = 30 * time.Second
)

// Fixed bounds, not configurable.
const (
	maxReadFrameSize = 16384 // SETTINGS_MAX_FRAME_SIZE: the protocol's default, not announced
	headerTableSize  = 4096  // the HPACK decoder's dynamic table (the protocol's default)
	// maxHeaderFrames bounds the frames of one header block (HEADERS and
	// its CONTINUATIONs, empty ones included): CVE-2024-27316.
	maxHeaderFrames = 64
	bufferSize      = 16 << 10 // a connection's read and write buffers
	// respBuffer is how much of a response body is held before the first
	// DATA frame: an answer that fits, written whole by the handler, goes
	// out with a content-length in one flush with its HEADERS.
	respBuffer = 16 << 10
)

// Reasons passed to Server.OnProtocolError: the bound or check that ended a
// stream or a connection.
const (
	ReasonBadPreface        = "bad_preface"
	ReasonProtocol          = "protocol_error"
	ReasonFlowControl       = "flow_control"
	ReasonMalformedRequest  = "malformed_request"
	ReasonRefusedStream     = "refused_stream"
	ReasonHeaderListTooLong = "header_list_too_long"
	ReasonContinuationFlood = "continuation_flood"
	ReasonRapidReset        = "rapid_reset"
	ReasonReadTimeout       = "read_timeout"
	ReasonWriteTimeout      = "write_timeout"
	ReasonIdleTimeout       = "idle_timeout"
	ReasonHandlerPanic      = "handler_panic"
)

// Server serves HTTP/2 connections with a handler. Set its fields before
// the first ServeConn and do not change them afterwards; its methods are
// safe for concurrent use.
type Server struct {
	// Handler answers every request; nil answers 404 to all.
	Handler http.Handler
	// Logger gets the handler panics (error) and the connections ended by
	// a bound (debug); nil means silent.
	Logger *slog.Logger
	// OnProtocolError, when set, is called with a Reason… value each time a
	// bound or a protocol check ends a stream or a connection (the gateway
	// counts them in a metric). It must be fast and safe for concurrent use.
	OnProtocolError func(reason string)
	// OnIdle, when set, is told when a connection's first handler starts
	// (idle false) and when its last one returns (idle true), with the
	// connection ServeConn was given: the gateway tells idle connections,
	// which it may close to make room under its connection cap, from busy
	// ones. It is called under the connection's lock: it must be fast.
	OnIdle func(nc net.Conn, idle bool)

	// MaxConcurrentStreams is SETTINGS_MAX_CONCURRENT_STREAMS: a stream
	// past it is refused (RST_STREAM REFUSED_STREAM). Handlers running on
	// a connection, those of reset streams included, are bounded by twice
	// it: past that the connection ends with GOAWAY ENHANCE_YOUR_CALM.
	// Default 100.
	MaxConcurrentStreams uint32
	// MaxHeaderListSize is SETTINGS_MAX_HEADER_LIST_SIZE, the request's
	// header fields (name + value + 32 each): past it the request gets
	// 431; a header block past twice it ends the connection. Default 64 KiB.
	MaxHeaderListSize uint32
	// StreamWindow is each stream's receive window, so the bound of the
	// request body buffered per stream; it is given back as the handler
	// reads the body. Default 1 MiB; at least 64 KiB - 1, the protocol's
	// initial window, which a client may use before it reads the
	// server's SETTINGS.
	StreamWindow int32
	// ConnWindow is the connection's receive window, so the bound of all
	// its buffered request bodies. Default 4 MiB; at least 64 KiB - 1.
	ConnWindow int32
	// MaxResetsPerSecond bounds the streams a client resets in a second
	// (CVE-2023-44487, rapid reset): past it GOAWAY ENHANCE_YOUR_CALM.
	// Default 200.
	MaxResetsPerSecond int
	// IdleTimeout ends a connection with no open stream for this long
	// (GOAWAY NO_ERROR). Default 2 minutes; negative means none.
	IdleTimeout time.Duration
	// ReadTimeout bounds the wait for the client preface, and for each
	// frame while a request body is arriving. Default 30 s.
	ReadTimeout time.Duration
	// WriteTimeout bounds every write to the connection (each gets at
	// least 90 % of it: the deadline is renewed once a tenth of it, at
	// most a second, has passed), and a response's wait for the client's
	// flow-control window. Default 30 s.
	WriteTimeout time.Duration

	// testHookOpen, set by tests, runs on the reader before a stream's
	// handler is registered.
	testHookOpen func(*conn)
	// testHookWorker, set by tests, runs on the reader when it starts a
	// worker goroutine.
	testHookWorker func()

	idleWorkers atomic.Int32 // handler goroutines waiting for a stream (see worker)

	mu       sync.Mutex
	conns    map[*conn]struct{} // guarded by mu
	shutting bool               // guarded by mu
	connWG   sync.WaitGroup
}

// ServeConn serves c until the connection ends, then closes it. c is a
// *tls.Conn after its handshake (its state becomes each Request.TLS) or a
// plain connection (h2c with prior knowledge). It returns once every
// handler of the connection has returned; nil when the connection ended
// cleanly (by the client, a timeout or Shutdown).
func (s *Server) ServeConn(nc net.Conn) error {
	c := newConn(s, nc)
	s.mu.Lock()
	if s.shutting {
		s.mu.Unlock()
		_ = nc.Close()
		return http.ErrServerClosed
	}
	if s.conns == nil {
		s.conns = map[*conn]struct{}{}
	}
	s.conns[c] = struct{}{}
	s.connWG.Add(1)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		s.connWG.Done()
	}()
	return c.serve()
}

// Shutdown stops serving gracefully: every connection gets GOAWAY with the
// last stream it took, its streams in flight finish, then it closes; later
// ServeConn calls close their connection at once. It returns when all
// connections are closed, or when ctx ends first: the connections left are
// then closed (their handlers see their context cancelled) and ctx's error
// returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.shutting = true
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	// GOAWAY goes out on each connection from a goroutine of its own: a
	// client that does not read holds its write, not Shutdown.
	var goAways sync.WaitGroup
	defer goAways.Wait()
	for _, c := range conns {
		goAways.Go(c.goAwayGraceful)
	}
	done := make(chan struct{})
	go func() { s.connWG.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	for c := range s.conns {
		c.abort()
	}
	s.mu.Unlock()
	<-done
	return ctx.Err()
}

func (s *Server) maxStreams() uint32 {
	if s.MaxConcurrentStreams == 0 {
		return DefaultMaxConcurrentStreams
	}
	return s.MaxConcurrentStreams
}

func (s *Server) maxHeaderList() uint32 {
	if s.MaxHeaderListSize == 0 {
		return DefaultMaxHeaderListSize
	}
	return s.MaxHeaderListSize
}

func (s *Server) streamWindow() int32 {
	if s.StreamWindow <= 0 {
		return DefaultStreamWindow
	}
	return max(s.StreamWindow, 65535)
}

func (s *Server) connWindow() int32 {
	if s.ConnWindow <= 0 {
		return DefaultConnWindow
	}
	return max(s.ConnWindow, 65535)
}

func (s *Server) maxResets() int {
	if s.MaxResetsPerSecond <= 0 {
		return DefaultMaxResetsPerSecond
	}
	return s.MaxResetsPerSecond
}

func (s *Server) idleTimeout() time.Duration {
	if s.IdleTimeout == 0 {
		return DefaultIdleTimeout
	}
	return s.IdleTimeout
}

func (s *Server) readTimeout() time.Duration {
	if s.ReadTimeout <= 0 {
		return DefaultReadTimeout
	}
	return s.ReadTimeout
}

func (s *Server) writeTimeout() time.Duration {
	if s.WriteTimeout <= 0 {
		return DefaultWriteTimeout
	}
	return s.WriteTimeout
}

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

// count reports a bound hit or a protocol error.
func (s *Server) idleChanged(nc net.Conn, idle bool) {
	if s.OnIdle != nil {
		s.OnIdle(nc, idle)
	}
}

func (s *Server) count(reason string) {
	if s.OnProtocolError != nil {
		s.OnProtocolError(reason)
	}
}

// tlsState is c's TLS state, nil for a plain connection.
func tlsState(c net.Conn) *tls.ConnectionState {
	tc, ok := c.(interface{ ConnectionState() tls.ConnectionState })
	if !ok {
		return nil
	}
	st := tc.ConnectionState()
	return &st
}
