//go:build linux

package loopgrpc

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"

	"github.com/fluxgate/fluxgate/internal/conncap"
	"github.com/fluxgate/fluxgate/internal/eventloop"
	"github.com/fluxgate/fluxgate/internal/looptls"
)

// TLS on the loops (internal/looptls): the handshake runs on a goroutine
// of the listener's (certs.Reloader.WrappedListener with looptls.Wrap,
// bounded by its handshake timeout, client certificates verified there),
// then the connection moves to a loop, which owns its socket and has its
// tls.Conn decrypt what it reads and encrypt the Session's frames. The
// calls handed to Fallback see the connection's TLS state (r.TLS), as on
// grpc-go's ServeHTTP behind a TLS listener.

// ServeTLS serves ln, a listener of handshaken *tls.Conn built on
// looptls.Wrap, until Shutdown, then returns nil; Shutdown closes ln
// (ending the handshakes in progress), and so does ServeTLS when it
// returns. Connections under a conncap.Cap
// (ln built on the cap's Listener) keep the slot they were accepted
// with; Options.Cap is for Serve's. A connection not built on
// looptls.Wrap is closed, and so is one that did not negotiate h2 by
// ALPN (as grpc-go's TLS credentials refuse it).
func (s *Server) ServeTLS(ln net.Listener) error {
	defer ln.Close()
	if s.shutting() {
		return nil
	}
	shut, err := s.front.Begin()
	if err != nil {
		return fmt.Errorf("loopgrpc: %w", err) // the first Serve or ServeTLS goes on
	}
	s.local = ln.Addr()
	if shut || !s.setTLSListener(ln) {
		return nil
	}
	if err := looptls.Accept(ln, s.adoptTLS, s.logger); err != nil && !s.front.Shutting() {
		return fmt.Errorf("loopgrpc: %w", err)
	}
	s.front.Wait()
	return nil
}

// shutting reports whether Shutdown has begun.
func (s *Server) shutting() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.shut
}

// setTLSListener keeps ln for Shutdown to close; false: Shutdown has
// begun (and will not see it).
func (s *Server) setTLSListener(ln net.Listener) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shut {
		return false
	}
	s.tlsLn = ln
	return true
}

// adoptTLS moves c, a connection whose handshake is done, to a loop.
func (s *Server) adoptTLS(c net.Conn) {
	tc, w, err := looptls.Handshaken(c)
	if err != nil {
		s.logger.Warn("gRPC event loops: a connection they cannot take; closed", "err", err)
		_ = c.Close()
		return
	}
	if p := tc.ConnectionState().NegotiatedProtocol; p != "h2" {
		// As grpc-go's TLS credentials: gRPC needs HTTP/2, agreed by ALPN.
		s.logger.Debug("gRPC event loops: a TLS client that did not negotiate h2 by ALPN; closed", "remote", tc.RemoteAddr().String(), "alpn", p)
		_ = c.Close()
		return
	}
	t, fd, slot, err := looptls.Take(tc, w)
	if err != nil {
		s.logger.Warn("gRPC event loops could not take a TLS connection", "err", err)
		_ = c.Close()
		return
	}
	st := s.loops[int(s.next.Add(1)%uint32(len(s.loops)))]
	if !st.l.Post(func() { s.adoptedTLS(st, fd, slot, t) }) {
		_ = unix.Close(fd) // the loops stopped
		slot.Release()
	}
}

// adoptedTLS serves a TLS connection on st's loop, as accepted does a
// plain one.
func (s *Server) adoptedTLS(st *loopState, fd int, slot *conncap.Slot, t *looptls.TLS) {
	l := st.l
	if s.front.Shutting() {
		_ = unix.Close(fd)
		slot.Release()
		return
	}
	state := t.Conn().ConnectionState()
	c := &conn{st: st, fd: fd, remote: t.RemoteAddr().String(), tls: t, tlsState: &state}
	c.timer = l.NewTimer(c.timedOut)
	if err := l.Add(fd, eventloop.Readable, c.onEvent); err != nil {
		_ = unix.Close(fd)
		slot.Release()
		return
	}
	c.registered, c.interest = true, eventloop.Readable
	c.slot = slot
	slot.SetEvict(func() { l.Post(c.evict) })
	slot.Spared() // an eviction during the move closed nothing: the cap may evict again
	st.conns[c] = struct{}{}
	s.front.Opened()
	c.ss = s.h2.NewSession(c)
	if a := s.o.MaxConnectionAge; a > 0 {
		c.age = l.NewTimer(c.aged)
		c.age.Reset(a)
	}
	c.read() // the handshake's reads may hold the preface
	if !c.closed {
		c.flush()
	}
}
