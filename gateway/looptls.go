//go:build linux

package gateway

import (
	"net"
	"net/http"

	"golang.org/x/sys/unix"

	"github.com/fluxgate/fluxgate/internal/conncap"
	"github.com/fluxgate/fluxgate/internal/eventloop"
	"github.com/fluxgate/fluxgate/internal/h2"
	"github.com/fluxgate/fluxgate/internal/looptls"
)

// TLS on the loops (gateway.tls with the loop engine), on
// internal/looptls. The handshake runs on a goroutine, as on the lean
// engine (certs.Reloader's listener, on Go's poller); a connection that
// negotiated h2 goes to the HTTP/2 server as there, unless the loops
// serve HTTP/2 too (gateway.http2.server loop: it moves to a loop as a
// loopH2). Any other moves to a loop, which owns the socket and has its
// tls.Conn read and write the loop's buffers (looptls.TLS). A
// connection the loop hands to the lean engine goes with its tls.Conn
// (looptls.TLS.Resume), the ciphertext read and not decrypted first.

// readHeld reads the client again (readClient) while its tls.Conn may
// hold more than the socket would tell: epoll reports bytes in the
// socket only.
func (c *loopConn) readHeld() {
	for c.tls != nil && c.tls.More() && c.stage == stRead && !c.closed {
		c.readClient()
	}
}

// ServeTLSWith readies s for a TLS listener (certs.Reloader's
// WrappedListener with looptls.Wrap): requests are
// forwarded with X-Forwarded-Proto https, HTTP/1.1 connections move to
// the loops after their handshake, and those that negotiated HTTP/2 by
// ALPN go to h2, the net/http engine, as on the lean engine
// (LeanServer.ServeTLSWith). Call it before Serve.
func (s *LoopServer) ServeTLSWith(h2 *http.Server) {
	s.tls = true
	s.lean.ServeTLSWith(h2)
}

// ServeHTTP2With makes the connections that negotiated HTTP/2 go to srv,
// the gateway's own HTTP/2 server (see LeanServer.ServeHTTP2With). Call
// it after ServeTLSWith, before Serve.
func (s *LoopServer) ServeHTTP2With(srv *h2.Server) { s.lean.ServeHTTP2With(srv) }

// serveTLS accepts the handshaken connections of ln until it is closed or
// Shutdown: HTTP/1.1 ones move to the loops (adoptTLS), HTTP/2 ones go
// to the lean engine's HTTP/2 server or, with http2.server loop, to the
// loops too.
func (s *LoopServer) serveTLS(ln net.Listener) error {
	s.mu.Lock()
	s.tlsLn = ln
	s.mu.Unlock()
	close(s.ready)
	if err := looptls.Accept(ln, s.adoptTLS, s.logger); err != nil && !s.lean.shutting.Load() {
		return err
	}
	<-s.served
	return nil
}

// adoptTLS serves c, a connection whose handshake is done: HTTP/2 on the
// lean engine's HTTP/2 server unless the loops serve it, anything else on
// a loop.
func (s *LoopServer) adoptTLS(c net.Conn) {
	tc, w, err := looptls.Handshaken(c)
	if err != nil {
		s.logger.Warn("gateway loop engine: a connection it cannot take; closed", "err", err)
		_ = c.Close()
		return
	}
	if tc.ConnectionState().NegotiatedProtocol == ALPNHTTP2 && s.h2 == nil {
		cc := &clientConn{Conn: tc, ip: ipOf(tc.RemoteAddr()), writeTimeout: leanWriteTimeout}
		if !s.lean.serveFrom(cc, nil) { // which hands it to the HTTP/2 server
			_ = closeNow(cc)
		}
		return
	}
	t, fd, slot, err := looptls.Take(tc, w)
	if err != nil {
		s.logger.Warn("gateway loop engine could not take a TLS connection", "err", err)
		_ = closeNow(tc)
		return
	}
	st := s.loops[int(s.next.Add(1)%uint32(len(s.loops)))]
	if !st.l.Post(func() { s.adoptedTLS(st, fd, slot, t) }) {
		_ = unix.Close(fd) // the loops stopped
		slot.Release()
	}
}

// adoptedTLS takes a TLS connection on st's loop, as accepted a plain one.
func (s *LoopServer) adoptedTLS(st *loopState, fd int, slot *conncap.Slot, t *looptls.TLS) {
	l := st.l
	if s.lean.shutting.Load() {
		_ = unix.Close(fd)
		slot.Release()
		return
	}
	if s.sndBuf > 0 {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, s.sndBuf)
	}
	remote, _ := t.RemoteAddr().(*net.TCPAddr)
	if remote == nil {
		remote = &net.TCPAddr{}
	}
	if t.Conn().ConnectionState().NegotiatedProtocol == ALPNHTTP2 { // gateway.http2.server loop
		s.mu.Lock()
		s.conns++
		s.mu.Unlock()
		startH2(st, fd, slot, &clientConn{Conn: loopAddrConn{remote: remote}, ip: remote.IP.String()}, t, nil)
		return
	}
	c := newLoopConn(st, fd, remote)
	c.tls = t
	if err := l.Add(fd, eventloop.Readable, c.onClient); err != nil {
		_ = unix.Close(fd)
		slot.Release()
		return
	}
	c.slot = slot
	slot.SetEvict(func() { l.Post(c.evict) })
	// An eviction between the move off the handshake's connection and
	// SetEvict closed nothing: the cap may evict again (c.evict now).
	slot.Spared()
	c.interest = eventloop.Readable
	st.conns[c] = struct{}{}
	s.mu.Lock()
	s.conns++
	s.mu.Unlock()
	c.startRead()
}
