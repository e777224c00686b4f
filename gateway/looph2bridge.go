//go:build linux

package gateway

import (
	"crypto/tls"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/fluxgate/fluxgate/internal/eventloop"
	"github.com/fluxgate/fluxgate/metricnames"
)

// A stream the loop does not serve itself (what it hands to the lean
// engine on an HTTP/1.1 connection: a head outside http1's subset, a body
// past leanMaxBody or of unknown length past it, a route to upstream TLS or
// to the fast engine) goes to the lean engine as a connection of its own: a
// streamConn, whose reads are the stream's HTTP/1.1 request — the bytes the
// loop read, then the body as DATA arrives — and whose writes are the
// engine's answer, turned into the stream's frames on the loop. The lean
// engine serves it as any connection handed over (and hands on what it
// does not serve itself), on a goroutine; the request says Connection:
// close, so the engine closes it after the answer, which ends the stream.

// bridgeMaxQueued bounds the answer bytes a stream's goroutine has written
// and the loop has not yet turned into frames (the client's windows were
// closed): a Write past it waits.
const bridgeMaxQueued = 64 << 10

// streamConn is a stream handed to the lean engine. Its net.Conn methods
// run on the engine's goroutine; the loop's side (push, fail, taken)
// under mu.
type streamConn struct {
	l      *eventloop.Loop
	c      *loopConn // the loop's: its stream, the answer's translation
	remote net.Addr

	mu       sync.Mutex
	cond     sync.Cond // on mu: bytes came, bytes were taken, the stream ended, a deadline passed
	in       []byte    // guarded by mu: request bytes not yet read
	inEnd    bool      // guarded by mu: the request is whole (reads then say EOF)
	gone     bool      // guarded by mu: the stream was reset or its connection ended
	closed   bool      // guarded by mu
	queued   int       // guarded by mu: answer bytes written and not yet taken into frames
	rdl, wdl time.Time // guarded by mu: the deadlines
}

var _ net.Conn = (*streamConn)(nil)

// push adds request bytes (the loop's side); end: the request is whole.
func (b *streamConn) push(p []byte, end bool) {
	b.mu.Lock()
	b.in = append(b.in, p...)
	b.inEnd = b.inEnd || end
	b.cond.Broadcast()
	b.mu.Unlock()
}

// fail ends the stream for the goroutine: reads and writes fail (the
// loop's side).
func (b *streamConn) fail() {
	b.mu.Lock()
	b.gone = true
	b.cond.Broadcast()
	b.mu.Unlock()
}

// taken says n answer bytes went into frames (the loop's side).
func (b *streamConn) taken(n int) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	b.queued -= n
	b.cond.Broadcast()
	b.mu.Unlock()
}

// wait waits on cond until ready or the deadline dl passes; it reports
// false then. Under mu.
func (b *streamConn) wait(dl time.Time, ready func() bool) bool {
	var timer *time.Timer
	for !ready() {
		if !dl.IsZero() {
			d := time.Until(dl)
			if d <= 0 {
				return false
			}
			if timer == nil {
				timer = time.AfterFunc(d, func() {
					b.mu.Lock()
					b.cond.Broadcast()
					b.mu.Unlock()
				})
				defer timer.Stop()
			}
		}
		b.cond.Wait()
	}
	return true
}

// Read reads the stream's request, as it comes.
func (b *streamConn) Read(p []byte) (int, error) {
	b.mu.Lock()
	ok := b.wait(b.rdl, func() bool { return len(b.in) > 0 || b.inEnd || b.gone || b.closed })
	switch {
	case b.closed:
		b.mu.Unlock()
		return 0, net.ErrClosed
	case len(b.in) > 0:
	case !ok:
		b.mu.Unlock()
		return 0, os.ErrDeadlineExceeded
	case b.gone:
		b.mu.Unlock()
		return 0, net.ErrClosed
	default: // inEnd
		b.mu.Unlock()
		return 0, io.EOF
	}
	n := copy(p, b.in)
	b.in = b.in[:copy(b.in, b.in[n:])]
	b.mu.Unlock()
	c := b.c
	b.l.Post(func() { c.bodyTaken(n) })
	return n, nil
}

// Write writes the stream's answer: a copy goes to the loop, which turns
// it into frames within the client's windows; it waits while more than
// bridgeMaxQueued is not yet taken.
func (b *streamConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	if b.closed || b.gone {
		b.mu.Unlock()
		return 0, net.ErrClosed
	}
	b.queued += len(p)
	b.mu.Unlock()
	q := append([]byte(nil), p...)
	c := b.c
	if !b.l.Post(func() { c.bridgeOut(q) }) {
		b.fail()
		return 0, net.ErrClosed
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	ok := b.wait(b.wdl, func() bool { return b.queued <= bridgeMaxQueued || b.gone || b.closed })
	switch {
	case b.gone || b.closed:
		return 0, net.ErrClosed
	case !ok:
		return 0, os.ErrDeadlineExceeded
	}
	return len(p), nil
}

// Close ends the stream once the answer's bytes are out of the loop's
// hands (a stream whose answer did not end is reset).
func (b *streamConn) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.cond.Broadcast()
	b.mu.Unlock()
	c := b.c
	b.l.Post(func() { c.bridgeClosed() })
	return nil
}

func (b *streamConn) LocalAddr() net.Addr  { return &net.TCPAddr{} }
func (b *streamConn) RemoteAddr() net.Addr { return b.remote }

func (b *streamConn) SetDeadline(t time.Time) error {
	b.mu.Lock()
	b.rdl, b.wdl = t, t
	b.cond.Broadcast()
	b.mu.Unlock()
	return nil
}

func (b *streamConn) SetReadDeadline(t time.Time) error {
	b.mu.Lock()
	b.rdl = t
	b.cond.Broadcast()
	b.mu.Unlock()
	return nil
}

func (b *streamConn) SetWriteDeadline(t time.Time) error {
	b.mu.Lock()
	b.wdl = t
	b.cond.Broadcast()
	b.mu.Unlock()
	return nil
}

// tlsStreamConn is a stream of an HTTP/2 connection over TLS handed to
// the lean engine: its requests are https ones (X-Forwarded-Proto, the
// fast engine's labels), with the connection's TLS state.
type tlsStreamConn struct {
	*streamConn
	state tls.ConnectionState
}

func (c *tlsStreamConn) ConnectionState() tls.ConnectionState { return c.state }

// handStream hands c's stream, with the request bytes read and not
// served, to the lean engine (handOver for a stream).
func (c *loopConn) handStream() {
	c.stopTimer()
	c.stopUT()
	s := c.h2
	lc := &c.lc
	b := &streamConn{l: c.st.l, c: c, remote: c.remote()}
	b.cond.L = &b.mu
	b.inEnd = !s.st.Receiving() && !s.chunked
	s.bridge = b
	pre := append([]byte(nil), lc.buf[lc.r:lc.w]...)
	c.st.giveBuf(lc.buf)
	lc.buf, lc.r, lc.w = nil, 0, 0
	c.closed = true // the loop's exchange is over: the stream is b's
	c.st.s.g.metrics.handovers.WithLabelValues(metricnames.HandoverHTTP2Stream).Inc()
	var conn net.Conn = b
	if t := s.h.tls; t != nil {
		conn = &tlsStreamConn{streamConn: b, state: t.Conn().ConnectionState()}
	}
	cc := &clientConn{Conn: conn, ip: lc.c.ip, writeTimeout: leanWriteTimeout}
	if !c.st.s.lean.serveFrom(cc, pre) {
		b.fail()
		c.bridgeClosed()
	}
}

// bridgeOut takes answer bytes the stream's goroutine wrote.
func (c *loopConn) bridgeOut(p []byte) {
	s := c.h2
	if s.bridge == nil || c.streamEnded() {
		return
	}
	s.out = append(s.out, p)
	c.bridgeDrain()
}

// bridgeDrain turns the answer bytes waiting into frames, as far as the
// client's windows take them.
func (c *loopConn) bridgeDrain() {
	s := c.h2
	took := 0
	for len(s.out) > 0 {
		p := s.out[0]
		n, err := s.ans.write(s.h.ss, s.st, p)
		took += n
		if err != nil {
			s.out = nil
			s.bridge.fail()
			break
		}
		if n < len(p) {
			s.out[0] = p[n:]
			s.h.waiting[c] = struct{}{}
			break
		}
		s.out[0] = nil
		s.out = s.out[1:]
	}
	if len(s.out) == 0 {
		delete(s.h.waiting, c)
	}
	s.bridge.taken(took)
	s.h.flush()
	if s.closing && len(s.out) == 0 {
		c.bridgeClosed()
	}
}

// bodyTaken gives n bytes of the request body the goroutine read back to
// the client's windows.
func (c *loopConn) bodyTaken(n int) {
	if !c.streamEnded() {
		c.h2.h.ss.Consumed(c.h2.st, n)
		c.h2.h.flush()
	}
}

// bridgeClosed ends a handed stream once its answer is out of the loop's
// hands.
func (c *loopConn) bridgeClosed() {
	s := c.h2
	if c.streamEnded() {
		return
	}
	if len(s.out) > 0 {
		s.closing = true // after the last bytes, within the write timeout
		c.setTimer(tWrite, c.st.s.lean.writeTimeout)
		return
	}
	s.ended = true
	c.stopTimer()
	delete(s.h.waiting, c)
	s.h.ss.Close(s.st)
	s.h.flush()
}

// streamEnded reports whether c's handed stream is over for the loop.
func (c *loopConn) streamEnded() bool { return c.h2.ended }

// bridgeTimeout: the answer's last bytes waited past the write timeout
// for the client's windows; the stream is reset.
func (c *loopConn) bridgeTimeout() {
	s := c.h2
	s.out = nil
	s.bridge.fail()
	c.bridgeClosed()
}

// bodyIn gives a handed stream's goroutine a piece of the body.
func (s *loopStream) bodyIn(p []byte, end bool) {
	if !s.chunked {
		s.bridge.push(p, end)
		return
	}
	var frame []byte
	if len(p) > 0 {
		frame = appendChunk(nil, p)
	}
	if end {
		frame = append(frame, "0\r\n\r\n"...)
	}
	s.bridge.push(frame, end)
}
