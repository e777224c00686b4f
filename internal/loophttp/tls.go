//go:build linux

package loophttp

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"

	"golang.org/x/sys/unix"

	"github.com/fluxgate/fluxgate/internal/conncap"
	"github.com/fluxgate/fluxgate/internal/looptls"
)

// TLS on the loops (internal/looptls): the handshake runs on a goroutine
// of the listener's (certs.Reloader.WrappedListener with looptls.Wrap,
// bounded by its handshake timeout, client certificates verified there);
// a connection that agreed on h2 by ALPN goes to Fallback as it is (its
// HTTP/2 server); any other moves to a loop, which owns its socket and
// has its tls.Conn decrypt what it reads and encrypt the answers.
// Requests carry the connection's TLS state (r.TLS) on the loops and,
// after a hand-over, on Fallback too.

// ServeTLS serves ln, a listener of handshaken *tls.Conn built on
// looptls.Wrap, until Shutdown, then returns nil (or Fallback's error);
// Shutdown closes ln (ending the handshakes in progress), and so does
// ServeTLS when it returns. Connections
// under a conncap.Cap (ln built on the cap's Listener) keep the slot
// they were accepted with; Options.Cap is for Serve's. A connection not
// built on looptls.Wrap is closed.
//
// So that the requests of a connection handed over carry its TLS state,
// ServeTLS sets Fallback's ConnContext (after the one it had) and wraps
// its Handler before serving: a connection handed over reaches Fallback
// after the bytes the loop read, and net/http gives r.TLS only to a
// *tls.Conn of its own.
func (s *Server) ServeTLS(ln net.Listener) error {
	defer ln.Close()
	if s.shutting() {
		return http.ErrServerClosed
	}
	shut, err := s.front.Begin()
	switch {
	case err != nil:
		return fmt.Errorf("loophttp: %w", err) // the first Serve or ServeTLS goes on
	case shut || !s.setTLSListener(ln):
		_ = s.hand.Close()
		return http.ErrServerClosed
	}
	s.hand.addr = ln.Addr()
	carryTLSState(s.o.Fallback)
	fallback := make(chan error, 1)
	go func() { fallback <- s.o.Fallback.Serve(s.hand) }()
	if err := looptls.Accept(ln, s.adoptTLS, s.logger); err != nil && !s.front.Shutting() {
		return fmt.Errorf("loophttp: %w", err) // Shutdown stops what serves
	}
	s.front.Wait()
	return serveErr(<-fallback)
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

// adoptTLS serves c, a connection whose handshake is done: HTTP/2 on
// Fallback, anything else on a loop.
func (s *Server) adoptTLS(c net.Conn) {
	tc, w, err := looptls.Handshaken(c)
	if err != nil {
		s.logger.Warn("HTTP event loops: a connection they cannot take; closed", "err", err)
		_ = c.Close()
		return
	}
	if tc.ConnectionState().NegotiatedProtocol == "h2" {
		s.hand.push(tc) // net/http serves HTTP/2 on a *tls.Conn that agreed on it
		return
	}
	t, fd, slot, err := looptls.Take(tc, w)
	if err != nil {
		s.logger.Warn("HTTP event loops could not take a TLS connection", "err", err)
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
	if err := l.Add(fd, readInterest, c.onEvent); err != nil {
		_ = unix.Close(fd)
		slot.Release()
		return
	}
	c.slot = slot
	slot.SetEvict(func() { l.Post(c.evict) })
	slot.Spared() // an eviction during the move closed nothing: the cap may evict again
	c.interest = readInterest
	st.conns[c] = struct{}{}
	s.front.Opened()
	c.timer.Reset(s.o.HeaderTimeout) // the first request's head, from the connection's start
	c.timing = timeHead
	c.read() // the handshake's reads may hold the first request
}

// tlsStateKey is the context key of a handed-over connection's TLS state.
type tlsStateKey struct{}

// carryTLSState makes srv's requests on connections the loops handed
// over carry their TLS state (see ServeTLS). It does so once per server.
func carryTLSState(srv *http.Server) {
	if _, done := srv.Handler.(tlsStateHandler); done {
		return
	}
	prev := srv.ConnContext
	srv.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		if prev != nil {
			ctx = prev(ctx, c)
		}
		if cc, ok := c.(*conncap.Conn); ok {
			c = cc.Conn
		}
		if pc, ok := c.(*prefixConn); ok && pc.state != nil {
			ctx = context.WithValue(ctx, tlsStateKey{}, pc.state)
		}
		return ctx
	}
	h := srv.Handler
	if h == nil {
		h = http.DefaultServeMux
	}
	srv.Handler = tlsStateHandler{h}
}

// tlsStateHandler sets r.TLS from the connection's context when net/http
// did not.
type tlsStateHandler struct{ h http.Handler }

func (t tlsStateHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.TLS == nil {
		if st, ok := r.Context().Value(tlsStateKey{}).(*tls.ConnectionState); ok {
			r.TLS = st
		}
	}
	t.h.ServeHTTP(w, r)
}
