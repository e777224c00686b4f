//go:build linux

package gateway

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fluxgate/fluxgate/internal/conncap"
	"github.com/fluxgate/fluxgate/internal/eventloop"
	"github.com/fluxgate/fluxgate/internal/h2"
)

// TLS on the loops (gateway.tls with the loop engine). The handshake runs
// on a goroutine, as on the lean engine (certs.Reloader's listener, on
// Go's poller: its errors are sticky in a tls.Conn, and it must not hold
// a loop up); a connection that negotiated h2 goes to the HTTP/2 server
// as there, unless the loops serve HTTP/2 too (gateway.http2.server loop:
// it moves to a loop as a loopH2). Any other moves to a loop: the loop owns the socket (a
// duplicate of the descriptor; the one Go's poller had is closed) and the
// *tls.Conn reads and writes the loop's buffers through loopTLSConn, the
// connection it was built on. The loop reads the socket once a readiness
// event into a buffer and has the tls.Conn decrypt every record it holds
// (loopTLSConn's Read returns "would block", a temporary net.Error that
// tls.Conn does not keep, when the buffer is empty); what the tls.Conn
// writes (answers, and the replies a read may make, such as to a TLS 1.3
// KeyUpdate) is appended to a buffer the loop writes to the socket,
// waiting there as a plain connection's c.wq does when the client does
// not take it. A connection the loop hands to the lean engine goes with
// its tls.Conn: loopTLSConn switches back to a blocking connection over
// the socket (net.FileConn), the ciphertext read and not decrypted first.

// loopTLSIn is the size of a loop's read buffer for TLS clients: two
// records of the largest size.
const loopTLSIn = 2 * (16<<10 + 256 + 5)

// errWouldBlock is what loopTLSConn's Read returns on a loop when it has
// no ciphertext: a temporary net.Error, which tls.Conn returns without
// keeping (a partial record stays in its buffer).
var errWouldBlock error = wouldBlock{}

type wouldBlock struct{}

func (wouldBlock) Error() string   { return "gateway: TLS read would block" }
func (wouldBlock) Timeout() bool   { return true }
func (wouldBlock) Temporary() bool { return true }

// loopTLSConn is the connection the loop engine builds a client's
// *tls.Conn on (certs.Reloader.WrappedListener). It has two modes. With
// Conn set (the handshake on its goroutine, and after a hand-over to the
// lean engine), reads and writes go to Conn, after the bytes the loop
// left: ciphertext read from the socket and not yet read by the
// tls.Conn, written by it and not yet sent. With Conn nil, a loop owns
// the socket: Read returns in[inR:], then end, or errWouldBlock; Write
// appends to out, for the loop to send. Only one goroutine uses it at a
// time (the handshake's, then the loop, then the lean engine's); the
// moves between them are synchronised by their hand-offs.
type loopTLSConn struct {
	net.Conn      // nil while on a loop
	local, remote net.Addr

	in   []byte // in[inR:] is ciphertext read, not yet read by the tls.Conn
	inR  int
	end  error  // on a loop: the socket's end (io.EOF) or error, once in is read
	out  []byte // out[outR:] is ciphertext written, not yet sent
	outR int
}

var _ net.Conn = (*loopTLSConn)(nil)

// wrapLoopTLS is the wrap of a TLS listener the loop engine serves
// (certs.Reloader.WrappedListener).
func wrapLoopTLS(c net.Conn) net.Conn {
	return &loopTLSConn{Conn: c, local: c.LocalAddr(), remote: c.RemoteAddr()}
}

func (w *loopTLSConn) Read(p []byte) (int, error) {
	if w.inR < len(w.in) {
		n := copy(p, w.in[w.inR:])
		w.inR += n
		if w.inR == len(w.in) {
			w.in, w.inR = nil, 0
		}
		return n, nil
	}
	switch {
	case w.Conn != nil:
		return w.Conn.Read(p)
	case w.end != nil:
		return 0, w.end
	}
	return 0, errWouldBlock
}

func (w *loopTLSConn) Write(p []byte) (int, error) {
	if w.Conn == nil {
		w.out = append(w.out, p...)
		return len(p), nil
	}
	if w.outR < len(w.out) {
		if _, err := w.Conn.Write(w.out[w.outR:]); err != nil {
			return 0, err
		}
		w.out, w.outR = nil, 0
	}
	return w.Conn.Write(p)
}

// Close closes Conn; on a loop the loop closes the socket.
func (w *loopTLSConn) Close() error {
	if w.Conn == nil {
		return nil
	}
	return w.Conn.Close()
}

func (w *loopTLSConn) LocalAddr() net.Addr  { return w.local }
func (w *loopTLSConn) RemoteAddr() net.Addr { return w.remote }

// The deadlines are Conn's; a loop keeps its own timers.
func (w *loopTLSConn) SetDeadline(t time.Time) error {
	if w.Conn == nil {
		return nil
	}
	return w.Conn.SetDeadline(t)
}

func (w *loopTLSConn) SetReadDeadline(t time.Time) error {
	if w.Conn == nil {
		return nil
	}
	return w.Conn.SetReadDeadline(t)
}

func (w *loopTLSConn) SetWriteDeadline(t time.Time) error {
	if w.Conn == nil {
		return nil
	}
	return w.Conn.SetWriteDeadline(t)
}

// NetConn is Conn (nil on a loop), through which conncap.SlotOf finds the
// connection's slot and the HTTP/2 server closes it.
func (w *loopTLSConn) NetConn() net.Conn { return w.Conn }

// detach takes the socket from under w for a loop: it returns a
// duplicate of its descriptor, non-blocking, and the slot the connection
// holds under gateway.max_connections (nil without the cap), and closes
// the connection accepted (Go's poller forgets it) without giving the
// slot back. On error w is as it was.
func (w *loopTLSConn) detach() (int, *conncap.Slot, error) {
	raw := w.Conn
	var slot *conncap.Slot
	if cc, ok := raw.(*conncap.Conn); ok {
		raw, slot = cc.Conn, cc.Slot()
	}
	sc, ok := raw.(syscall.Conn)
	if !ok {
		return -1, nil, fmt.Errorf("gateway: a %T has no descriptor for a loop", raw)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, nil, err
	}
	fd := -1
	var dupErr error
	if err := rc.Control(func(s uintptr) {
		fd, dupErr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return -1, nil, err
	}
	if dupErr != nil {
		return -1, nil, os.NewSyscallError("fcntl", dupErr)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		_ = unix.Close(fd)
		return -1, nil, os.NewSyscallError("setnonblock", err)
	}
	_ = raw.Close()
	w.Conn = nil
	return fd, slot, nil
}

// loopTLS is a loop connection's TLS: its tls.Conn and what is under it.
type loopTLS struct {
	tc *tls.Conn
	w  *loopTLSConn
	// more: the last read stopped with its buffer full, or with an error
	// after bytes, so the tls.Conn (or w.in) may hold more than the
	// socket would tell: read again without waiting for it. True after
	// the handshake, whose reads may have taken the first request.
	more bool
}

// read reads the socket once, unless w still holds ciphertext, and
// returns the plaintext of the records that came, up to len(p). It
// returns (0, nil) at the client's end (as unix.Read does), (0,
// unix.EAGAIN) when no whole record came, and a TLS error as it is.
func (t *loopTLS) read(st *loopState, fd int, p []byte) (int, error) {
	w := t.w
	t.more = false
	borrowed := false // w.in is the loop's buffer
	if w.inR == len(w.in) && w.end == nil {
		if st.tlsIn == nil {
			st.tlsIn = make([]byte, loopTLSIn)
		}
		m, err := unix.Read(fd, st.tlsIn)
		switch {
		case m > 0:
			w.in, w.inR, borrowed = st.tlsIn[:m], 0, true
		case err == nil:
			w.end = io.EOF
		case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
		default:
			w.end = &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", err)}
		}
	}
	n := 0
	var err error
	for n < len(p) {
		var k int
		k, err = t.tc.Read(p[n:])
		n += k
		if err != nil {
			break
		}
	}
	if borrowed && w.inR < len(w.in) {
		// The loop's buffer serves its next connection: keep what is left.
		w.in, w.inR = append([]byte(nil), w.in[w.inR:]...), 0
	}
	if w.outR < len(w.out) {
		// A read that wrote (a reply to a KeyUpdate). What the socket
		// does not take now goes before the next answer's bytes.
		_, _ = t.flush(st, fd)
	}
	switch {
	case n == len(p):
		t.more = true
	case err != nil && n > 0 && !isWouldBlock(err):
		t.more = true // the error comes with the next read (tls.Conn keeps it)
	}
	if n > 0 {
		return n, nil
	}
	switch {
	case isWouldBlock(err):
		return 0, unix.EAGAIN
	case errors.Is(err, io.EOF):
		return 0, nil
	}
	return 0, err
}

// isWouldBlock reports whether err is errWouldBlock, which tls.Conn
// returns as it came.
func isWouldBlock(err error) bool { return errors.Is(err, errWouldBlock) }

// flush writes what the tls.Conn wrote and the socket has not taken; it
// returns what is left (a view of w.out, nil when nothing is). A buffer
// written whole goes back to the loop (st.tlsOut) if it has none.
func (t *loopTLS) flush(st *loopState, fd int) ([]byte, error) {
	w := t.w
	if w.outR < len(w.out) {
		n, err := eventloop.Write(fd, w.out[w.outR:])
		w.outR += n
		if err != nil {
			return nil, err
		}
		if w.outR < len(w.out) {
			return w.out[w.outR:], nil
		}
	}
	if st.tlsOut == nil && cap(w.out) <= loopTLSOutKeep {
		st.tlsOut = w.out[:0]
	}
	w.out, w.outR = nil, 0
	return nil, nil
}

// loopTLSOutKeep bounds the write buffer a loop keeps for its TLS clients.
const loopTLSOutKeep = 256 << 10

// write encrypts p and sends it; it returns what the socket did not take
// (see flush). The records are written into the loop's buffer when
// nothing waits: a connection holds a write buffer only while its client
// has not taken what it holds.
func (t *loopTLS) write(st *loopState, fd int, p []byte) ([]byte, error) {
	t.borrow(st)
	if _, err := t.tc.Write(p); err != nil {
		return nil, err
	}
	return t.flush(st, fd)
}

// borrow writes into the loop's buffer when nothing waits in w's.
func (t *loopTLS) borrow(st *loopState) {
	if w := t.w; len(w.out) == 0 && st.tlsOut != nil {
		w.out, w.outR, st.tlsOut = st.tlsOut[:0], 0, nil
	}
}

// closeNotify sends the close_notify alert, unless ciphertext waits, and
// what waits, one try, before the loop closes the socket (as
// tls.Conn.Close does, without waiting).
func (t *loopTLS) closeNotify(st *loopState, fd int) {
	if t.w.outR == len(t.w.out) {
		t.borrow(st)
		_ = t.tc.CloseWrite()
	}
	_, _ = t.flush(st, fd)
}

// resume makes the tls.Conn read and write c, a blocking connection over
// the socket, after what the loop left (a hand-over to the lean engine),
// and returns it.
func (t *loopTLS) resume(c net.Conn) *tls.Conn {
	t.w.Conn = c
	return t.tc
}

// readHeld reads the client again (readClient) while its tls.Conn may
// hold more than the socket would tell: epoll reports bytes in the
// socket only.
func (c *loopConn) readHeld() {
	for c.tls != nil && c.tls.more && c.stage == stRead && !c.closed {
		c.readClient()
	}
}

// ServeTLSWith readies s for a TLS listener (certs.Reloader's
// WrappedListener with wrapLoopTLS): requests are
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
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || s.lean.shutting.Load() {
				break
			}
			if backoff = acceptBackoff(err, backoff, s.logger); backoff > 0 {
				continue
			}
			return err
		}
		backoff = 0
		s.adoptTLS(c)
	}
	<-s.served
	return nil
}

// adoptTLS serves c, a connection whose handshake is done: HTTP/2 on the
// lean engine's HTTP/2 server unless the loops serve it, anything else on
// a loop.
func (s *LoopServer) adoptTLS(c net.Conn) {
	tc, ok := c.(*tls.Conn)
	var w *loopTLSConn
	if ok {
		w, ok = tc.NetConn().(*loopTLSConn)
	}
	if !ok {
		s.logger.Warn("gateway loop engine: a TLS connection not built on wrapLoopTLS; closed", "type", fmt.Sprintf("%T", c))
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
	fd, slot, err := w.detach()
	if err != nil {
		s.logger.Warn("gateway loop engine could not take a TLS connection", "err", err)
		_ = closeNow(tc)
		return
	}
	st := s.loops[int(s.next.Add(1)%uint32(len(s.loops)))]
	if !st.l.Post(func() { s.adoptedTLS(st, fd, slot, &loopTLS{tc: tc, w: w, more: true}) }) {
		_ = unix.Close(fd) // the loops stopped
		slot.Release()
	}
}

// adoptedTLS takes a TLS connection on st's loop, as accepted a plain one.
func (s *LoopServer) adoptedTLS(st *loopState, fd int, slot *conncap.Slot, t *loopTLS) {
	l := st.l
	if s.lean.shutting.Load() {
		_ = unix.Close(fd)
		slot.Release()
		return
	}
	if s.sndBuf > 0 {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, s.sndBuf)
	}
	remote, _ := t.w.remote.(*net.TCPAddr)
	if remote == nil {
		remote = &net.TCPAddr{}
	}
	if t.tc.ConnectionState().NegotiatedProtocol == ALPNHTTP2 { // gateway.http2.server loop
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
