//go:build linux

package gateway

import (
	"errors"
	"net"
	"net/http"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/sys/unix"

	"github.com/fluxgate/fluxgate/internal/conncap"
	"github.com/fluxgate/fluxgate/internal/eventloop"
	"github.com/fluxgate/fluxgate/internal/h2"
	"github.com/fluxgate/fluxgate/internal/http1"
	"github.com/fluxgate/fluxgate/internal/looptls"
)

// HTTP/2 on the loop engine (gateway.http2.server loop): a connection
// that opens with the HTTP/2 preface is served on its loop by an
// h2.Session, which decodes the frames and answers the control frames.
// Each stream is served by a loopConn of its own, with no socket: the
// stream's head is written into its read buffer as an HTTP/1.1 request
// (h1Request), its body appended as DATA arrives, and the answer the
// exchange writes is turned into the stream's frames (streamAnswer), within
// the client's windows. So a stream takes the HTTP/1.1 path of the loop —
// routing, the control point on the loop's clock, balancing, retries, the
// loop's target pools and relay — unchanged. What the loop would hand to the
// lean engine (a head outside http1's subset, a body past leanMaxBody, a
// route to upstream TLS or to the fast engine) goes there as a connection
// of its own, one stream (looph2bridge.go): the client's connection stays
// on the loop, as its HPACK state is the Session's.

// loopH2MaxOut is the most bytes of frames a connection holds for a
// client that does not read them before it stops reading the client.
const loopH2MaxOut = 256 << 10

// loopH2ReadBuf is a connection's read buffer: the Session takes whole
// frames, so what waits is less than one frame (16 KiB and its header).
const loopH2ReadBuf = 2 * (16<<10 + 9)

// loopH2 is an HTTP/2 client connection on a loop.
type loopH2 struct {
	st     *loopState
	fd     int
	slot   *conncap.Slot
	remote *net.TCPAddr
	cc     *clientConn  // the client's addresses, for its streams
	tls    *looptls.TLS // nil for h2c
	ss     *h2.Session
	in     []byte // read and not yet taken by the Session (a frame not yet whole); nil when none
	wq     []byte // over TLS, the records the socket did not take (a view of the TLS buffer)

	interest   uint32
	registered bool
	closed     bool
	failed     bool // a write failed: the connection closes (posted)
	feeding    bool // within the Session's Feed: the stream code it calls does not close the connection
	timer      *eventloop.Timer
	timerKind  loopTimer // tHead (the preface), tIdle, tWrite

	waiting map[*loopConn]struct{} // streams whose answer waits for the client's windows
}

// loopStream is a stream's part of its loopConn.
type loopStream struct {
	h   *loopH2
	st  *h2.SessionStream
	ans streamAnswer

	// Handed to the lean engine (looph2bridge.go):
	bridge  *streamConn
	chunked bool     // the request's body goes chunked (its length unknown)
	out     [][]byte // answer bytes the goroutine wrote, waiting for the windows
	closing bool     // the goroutine closed: the stream ends once out is empty
	ended   bool     // the stream is over for the loop
}

// isH2Preface reports whether b, a connection's first bytes, are the
// HTTP/2 client preface or its start (more to read: whole false).
func isH2Preface(b []byte) (prefix, whole bool) {
	k := min(len(b), len(http2.ClientPreface))
	return string(b[:k]) == http2.ClientPreface[:k], k == len(http2.ClientPreface)
}

// toH2 makes c, a connection whose first bytes are the HTTP/2 preface, an
// HTTP/2 connection on its loop.
func (c *loopConn) toH2() {
	lc := &c.lc
	pre := lc.buf[lc.r:lc.w]
	c.stopTimer()
	c.closed = true // c is done; h has its socket, slot and TLS
	delete(c.st.conns, c)
	if c.registered {
		_ = c.st.l.Delete(c.fd)
	}
	startH2(c.st, c.fd, c.slot, lc.c, c.tls, pre)
	c.st.giveBuf(lc.buf)
	lc.buf = nil
}

// startH2 serves an HTTP/2 connection on st's loop: its socket fd (not in
// the loop's epoll set yet), its slot, addresses and TLS (nil for h2c),
// and pre, what was read of it already. The connection counts among the
// loop server's (s.conns) already.
func startH2(st *loopState, fd int, slot *conncap.Slot, cc *clientConn, t *looptls.TLS, pre []byte) {
	l := st.l
	remote, _ := cc.RemoteAddr().(*net.TCPAddr)
	h := &loopH2{st: st, fd: fd, slot: slot, remote: remote, cc: cc, tls: t, waiting: map[*loopConn]struct{}{}}
	if len(pre) > 0 {
		h.in = append(make([]byte, 0, loopH2ReadBuf), pre...)
	}
	st.h2s[h] = struct{}{}
	h.ss = st.s.h2.NewSession(h)
	h.timer = l.NewTimer(h.timeout)
	if err := l.Add(h.fd, eventloop.Readable, h.onEvent); err != nil {
		h.close()
		return
	}
	h.registered, h.interest = true, eventloop.Readable
	h.slot.SetEvict(func() { l.Post(h.evict) })
	h.slot.Spared() // an eviction that came during the move closed nothing: the cap may evict again
	h.slot.Busy()
	if len(h.in) > 0 {
		h.feed(h.in)
	}
	if t != nil && t.More() && !h.closed { // the handshake's reads may hold the preface
		h.read()
	}
	if !h.closed {
		h.arm()
	}
}

// remote is the client's address.
func (c *loopConn) remote() *net.TCPAddr {
	a, _ := c.lc.c.RemoteAddr().(*net.TCPAddr)
	return a
}

// onEvent is the socket's handler.
func (h *loopH2) onEvent(ev uint32) {
	if h.closed {
		return
	}
	if h.waitingOut() > 0 && ev&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
		h.flush()
		if h.closed {
			return
		}
	}
	if ev&(unix.EPOLLIN|unix.EPOLLERR|unix.EPOLLHUP) != 0 && h.waitingOut() <= loopH2MaxOut {
		h.read()
	}
}

// waitingOut is how many bytes wait for the client: frames, and records.
func (h *loopH2) waitingOut() int { return len(h.ss.Output()) + len(h.wq) }

// read reads the client once and feeds the Session.
func (h *loopH2) read() {
	for {
		// Into the loop's buffer, unless a frame not yet whole waits in
		// the connection's own: an idle connection holds no read buffer.
		dst := h.in[len(h.in):cap(h.in)]
		if len(h.in) == 0 {
			if h.st.h2In == nil {
				h.st.h2In = make([]byte, loopH2ReadBuf)
			}
			dst = h.st.h2In
		}
		var n int
		var err error
		if h.tls == nil {
			n, err = unix.Read(h.fd, dst)
		} else {
			n, err = h.tls.Read(&h.st.tls, h.fd, dst)
		}
		switch {
		case n > 0 && len(h.in) == 0:
			h.feed(dst[:n])
		case n > 0:
			h.in = h.in[:len(h.in)+n]
			h.feed(h.in)
		case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
		default: // the end, or an error
			h.close()
		}
		// Over TLS the tls.Conn may hold records the socket will not
		// tell of: read on while the last read filled what it was given.
		if h.closed || h.tls == nil || !h.tls.More() || h.waitingOut() > loopH2MaxOut {
			return
		}
	}
}

// feed gives the Session b, what was read (the loop's buffer or h.in);
// the requests it opens start on the loop within it. A frame not yet
// whole stays in h.in, which holds up to loopH2ReadBuf.
func (h *loopH2) feed(b []byte) {
	h.feeding = true
	k, err := h.ss.Feed(h.st.l.Now(), b)
	h.feeding = false
	switch rest := b[k:]; {
	case len(rest) == 0:
		h.in = nil
	case len(h.in) == 0: // b is the loop's: the rest moves into a buffer of the connection's
		h.in = append(make([]byte, 0, loopH2ReadBuf), rest...)
	default:
		h.in = h.in[:copy(h.in, rest)]
	}
	if err == nil && len(h.in) == cap(h.in) && cap(h.in) > 0 {
		err = errors.New("unreachable: a frame past the read buffer") // the Session refuses frames past 16 KiB
	}
	h.flush()
	if err != nil && !h.closed && len(h.ss.Output()) == 0 {
		h.close()
	}
}

// flush writes the Session's frames; what the socket does not take waits
// for it to be writable, within the write timeout. A connection whose
// Session ended closes once its last frames are out.
func (h *loopH2) flush() {
	if h.closed || h.failed {
		return
	}
	if err := h.write(); err != nil {
		// Gone. Closing resets the streams, whose code may be on the
		// stack (a stream's send): close once it returned.
		h.failed = true
		if !h.st.l.Post(h.close) {
			h.close()
		}
		return
	}
	if h.waitingOut() == 0 && h.ss.Ended() {
		if !h.feeding {
			h.close()
		}
		return
	}
	h.arm()
}

// write writes the Session's frames, over TLS as records: the frames are
// encrypted whole once the records before them went (the records waiting
// are bounded by what one flush encrypts; the frames by loopH2MaxOut).
func (h *loopH2) write() error {
	if h.tls != nil {
		var err error
		if out := h.ss.Output(); len(out) > 0 && len(h.wq) == 0 {
			h.wq, err = h.tls.Write(&h.st.tls, h.fd, out)
			h.ss.Wrote(len(out))
		} else if len(h.wq) > 0 {
			h.wq, err = h.tls.Flush(&h.st.tls, h.fd)
		}
		return err
	}
	for out := h.ss.Output(); len(out) > 0; out = h.ss.Output() {
		n, err := eventloop.Write(h.fd, out)
		h.ss.Wrote(n)
		if err != nil || n < len(out) {
			return err
		}
	}
	return nil
}

// arm sets the socket's interest and the connection's timer for its
// state: frames waiting (writable, the write timeout; reading stops past
// loopH2MaxOut), no stream open (the idle timeout, or the read timeout
// until the client's SETTINGS came), or neither.
func (h *loopH2) arm() {
	waiting := h.waitingOut()
	ev := uint32(0)
	if waiting <= loopH2MaxOut {
		ev = eventloop.Readable
	}
	if waiting > 0 {
		ev |= eventloop.Writable
	}
	if h.interest != ev && h.registered {
		if h.st.l.Modify(h.fd, ev) == nil {
			h.interest = ev
		}
	}
	switch {
	case waiting > 0:
		if h.timerKind != tWrite {
			h.setTimer(tWrite, h.st.s.lean.writeTimeout)
		}
	case h.ss.Open() > 0:
		h.slot.Busy()
		if h.timerKind != tNone {
			h.timerKind = tNone
			h.timer.Stop()
		}
	case !h.ss.Started():
		if h.timerKind != tHead {
			h.setTimer(tHead, h.st.s.lean.headTimeout)
		}
	case h.timerKind != tIdle:
		h.slot.IdleAt(h.st.l.Now())
		h.setTimer(tIdle, h.st.s.idleTimeout)
	}
}

func (h *loopH2) setTimer(k loopTimer, d time.Duration) {
	h.timerKind = k
	h.timer.Reset(d)
}

// timeout is the connection's timer: a client that sends no preface, or
// reads nothing, is closed; an idle one gets GOAWAY.
func (h *loopH2) timeout() {
	if h.closed {
		return
	}
	k := h.timerKind
	h.timerKind = tNone
	switch k {
	case tIdle:
		h.st.s.g.metrics.h2errors.WithLabelValues(h2.ReasonIdleTimeout).Inc()
		h.goAway()
	case tHead:
		h.st.s.g.metrics.h2errors.WithLabelValues(h2.ReasonBadPreface).Inc()
		h.close()
	case tWrite:
		h.st.s.g.metrics.h2errors.WithLabelValues(h2.ReasonWriteTimeout).Inc()
		h.close()
	}
}

// goAway ends the connection gracefully: no stream after those open,
// which finish; it closes once they did.
func (h *loopH2) goAway() {
	h.ss.GoAway()
	h.flush()
}

// evict closes the connection to make room under the cap if no stream is
// open (conncap.Cap.Full, posted to its loop).
func (h *loopH2) evict() {
	if !h.closed && h.ss.Open() == 0 {
		h.close()
		return
	}
	h.slot.Spared()
}

// close closes the connection; its open streams are cut.
func (h *loopH2) close() {
	if h.closed {
		return
	}
	h.closed = true
	h.timer.Stop()
	h.ss.End() // resets every open stream: their loopConns abort
	if h.registered {
		_ = h.st.l.Delete(h.fd)
		h.registered = false
	}
	if h.tls != nil && !h.failed && len(h.wq) == 0 {
		h.tls.CloseNotify(&h.st.tls, h.fd)
	}
	_ = unix.Close(h.fd)
	delete(h.st.h2s, h)
	h.st.s.mu.Lock()
	h.st.s.conns--
	h.st.s.mu.Unlock()
	h.slot.Release()
}

// Request starts a stream's exchange on the loop (h2.SessionHandler).
func (h *loopH2) Request(st *h2.SessionStream, req *h2.SessionRequest) {
	c := h.st.streamConn(h)
	c.h2.h, c.h2.st, c.h2.ans.headReq = h, st, req.Method == http.MethodHead
	st.Value = c
	bodyLen := req.ContentLength
	if bodyLen < 0 && !req.End {
		// A body of unknown length (a stream, as gRPC's) goes chunked as
		// it comes: the loop hands such a request to the lean engine.
		bodyLen, c.h2.chunked = h1Chunked, true
	}
	c.request(req, bodyLen)
}

// request writes the stream's request, with a body of bodyLen bytes (-1:
// none; h1Chunked), and serves it once whole.
func (c *loopConn) request(req *h2.SessionRequest, bodyLen int64) {
	defer c.guard()
	lc := &c.lc
	b := h1Request(c.st.takeBuf()[:0], req, bodyLen)
	lc.buf, lc.r, lc.w = b[:cap(b)], 0, len(b)
	c.stage = stRead
	c.parse()
}

// appendBody appends p, DATA of the stream's body, to its request.
func (c *loopConn) appendBody(p []byte) {
	lc := &c.lc
	if lc.w+len(p) > len(lc.buf) {
		nb := make([]byte, max(2*len(lc.buf), lc.w+len(p)))
		copy(nb, lc.buf[lc.r:lc.w])
		lc.w -= lc.r
		lc.r = 0
		lc.buf = nb
	}
	lc.w += copy(lc.buf[lc.w:], p)
}

// Data takes a piece of a stream's body (h2.SessionHandler).
func (h *loopH2) Data(st *h2.SessionStream, p []byte, end bool) {
	c, _ := st.Value.(*loopConn)
	if c == nil {
		h.ss.Consumed(st, len(p))
		return
	}
	s := c.h2
	if s.bridge != nil { // the window is given back as the goroutine reads
		s.bodyIn(p, end)
		return
	}
	h.ss.Consumed(st, len(p)) // the loop reads bodies of at most leanMaxBody
	if c.closed {
		return
	}
	c.appendBody(p)
	if c.stage == stRead && c.inBody {
		func() {
			defer c.guard()
			c.parse()
		}()
	}
}

// Reset cuts a stream's exchange: the client reset it, or the connection
// ends (h2.SessionHandler).
func (h *loopH2) Reset(st *h2.SessionStream) {
	c, _ := st.Value.(*loopConn)
	switch {
	case c == nil:
		h.ss.Close(st)
	case c.h2.bridge != nil:
		c.h2.out = nil
		c.h2.bridge.fail()
		c.bridgeClosed()
	case !c.closed:
		c.abort()
	}
}

// Writable: the client's windows grew; the answers waiting for them go on
// (h2.SessionHandler).
func (h *loopH2) Writable() {
	for c := range h.waiting {
		if c.h2.bridge != nil {
			c.bridgeDrain()
			continue
		}
		func() {
			defer c.guard()
			c.drain()
		}()
	}
}

// sendStream is send for a stream: what the windows take goes into the
// Session's frames, the rest waits in c.wq for Writable.
func (c *loopConn) sendStream(p []byte) bool {
	s := c.h2
	n, err := s.ans.write(s.h.ss, s.st, p)
	if err != nil {
		c.writeFailed = true
		return false
	}
	if n < len(p) {
		c.wq = p[n:]
		s.h.waiting[c] = struct{}{}
		c.setTimer(tWrite, c.st.s.lean.writeTimeout)
	}
	s.h.flush()
	return true
}

// drainStream is drain for a stream: it reports whether c.wq is out.
func (c *loopConn) drainStream() (done bool) {
	s := c.h2
	n, err := s.ans.write(s.h.ss, s.st, c.wq)
	if err != nil {
		c.clientGone()
		return false
	}
	c.wq = c.wq[n:]
	s.h.flush()
	if len(c.wq) > 0 {
		return false
	}
	delete(s.h.waiting, c)
	return true
}

// closeStream is close for a stream: its exchange is done.
func (c *loopConn) closeStream() {
	s := c.h2
	h := s.h
	delete(h.waiting, c)
	c.st.giveBuf(c.lc.buf)
	c.lc.buf, c.wq = nil, nil
	h.ss.Close(s.st)
	c.recycle()
	h.flush()
}

// loopSpareStreams bounds the loopConns a loop keeps for its next streams.
const loopSpareStreams = 64

// streamConn is a loopConn for a new stream of h: one a stream of the loop
// left (recycle), or a new one.
func (st *loopState) streamConn(h *loopH2) *loopConn {
	if n := len(st.streams); n > 0 {
		c := st.streams[n-1]
		st.streams[n-1] = nil
		st.streams = st.streams[:n-1]
		c.lc.c = h.cc
		return c
	}
	c := newLoopConnFor(st, -1, h.cc)
	c.registered = false
	c.h2 = &loopStream{}
	return c
}

// recycle keeps c, a stream's loopConn whose exchange is over, for the
// loop's next stream: its timers (stopped), buffers and slices stay, all
// else is zeroed. Not one whose check's goroutine still owns lc (closed
// while the control point decided: its decision is posted to c later),
// nor past loopSpareStreams.
func (c *loopConn) recycle() {
	st := c.st
	if c.stage == stAdmit || len(st.streams) >= loopSpareStreams {
		return
	}
	s, lc := c.h2, &c.lc
	out := lc.out
	if cap(out) > leanKeepBuf {
		out = nil
	}
	*c = loopConn{st: st, fd: -1, timer: c.timer, ut: c.ut, tried: c.tried[:0], h2: s,
		lc: leanConn{s: lc.s, out: out[:0], hdr: leanHeaders{kv: lc.hdr.kv[:0]}, labels: lc.labels,
			req: http1.Request{Headers: lc.req.Headers[:0]}}}
	*s = loopStream{ans: streamAnswer{resp: http1.Response{Headers: s.ans.resp.Headers[:0]}, fields: s.ans.fields[:0], trailer: s.ans.trailer[:0]}}
	st.streams = append(st.streams, c)
}
