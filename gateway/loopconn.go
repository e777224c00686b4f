//go:build linux

package gateway

import (
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/fluxgate/fluxgate/controlpoint/breaker"
	"github.com/fluxgate/fluxgate/controlpoint/client"
	"github.com/fluxgate/fluxgate/internal/conncap"
	"github.com/fluxgate/fluxgate/internal/eventloop"
	"github.com/fluxgate/fluxgate/internal/http1"
	"github.com/fluxgate/fluxgate/internal/looptls"
)

// loopConn is one client connection of the loop engine, a state machine
// driven by its loop's events. lc holds what the lean engine's functions
// read and write (the request, the head out, the decision's fields, the
// pending answer): the loop shares them (outbound, responseHead,
// leanLabels, the responders) rather than copy them. lc.c is a stand-in
// with the client's addresses: the loop reads and writes the socket
// itself. This file holds the client's side; the request's exchange with
// the targets is in loopexchange.go.
type loopConn struct {
	lc    leanConn
	st    *loopState
	fd    int
	tls   *looptls.TLS // nil: a plain connection
	stage loopStage
	slot  *conncap.Slot // under gateway.max_connections; moves with a hand-over

	interest   uint32
	registered bool // in the loop's epoll set
	readPaused bool // client bytes came while a request was served: reading waits
	closed     bool

	timer     *eventloop.Timer // the client's: idle, head, body, write
	timerKind loopTimer
	ut        *eventloop.Timer // the upstream's: dial, response head, a pool's wait
	utKind    loopTimer

	headStarted bool // the current head's timeout runs
	inBody      bool // the head is in, its body not yet
	need, headN int  // the request's length, head and body, and the head's

	wq []byte // of the answer, what the client's socket did not take yet

	// The request being served.
	rt       *route
	start    time.Time
	method   string
	inflight prometheus.Gauge // nil when no request is counted in flight
	adm      client.Admitted
	hasAdm   bool
	u        *upstream
	permit   breaker.Permit
	entered  bool // u.enter passed, u.leave not yet called
	fwdStart time.Time
	headReq  bool
	again    bool // retryable
	msg      []byte
	tried    []*target
	attempt  int
	last     error
	t        *target
	tStart   time.Time
	up       *loopUp
	reused   bool
	resent   int // of the request on another pooled connection (resendOnNew)
	// attempting: an attempt on t is counted in flight (attemptTarget)
	// and not yet ended (attemptDone).
	attempting bool
	waiting    *loopPool

	mode        int64 // the response body's length, or http1.Body*
	remaining   int64
	chunk       http1.Chunked
	upReusable  bool
	keep        bool // the connection carries another request after this answer
	writeFailed bool

	served bool        // a request was read on the connection
	h2     *loopStream // a stream of an HTTP/2 connection (looph2.go): no socket of its own
}

type loopStage uint8

const (
	stRead     loopStage = iota // reading a request
	stAdmit                     // the control point decides on a goroutine
	stUpstream                  // the request goes to a target, its answer's head comes
	stRelay                     // the answer's body is relayed
	stFlush                     // the answer's last bytes go out
)

type loopTimer uint8

const (
	tNone loopTimer = iota
	tIdle
	tHead
	tBody
	tWrite
	tDial
	tAnswer
	tPoolWait
)

// loopAddrConn stands in for a loop connection's net.Conn where the lean
// engine's shared functions ask it for addresses; it is never read or
// written.
type loopAddrConn struct {
	net.Conn // nil: any other method fails loudly
	remote   net.Addr
}

func (c loopAddrConn) RemoteAddr() net.Addr { return c.remote }

func newLoopConn(st *loopState, fd int, remote *net.TCPAddr) *loopConn {
	return newLoopConnFor(st, fd, &clientConn{Conn: loopAddrConn{remote: remote}, ip: remote.IP.String()})
}

// newLoopConnFor is newLoopConn with the client's addresses in cc.
func newLoopConnFor(st *loopState, fd int, cc *clientConn) *loopConn {
	c := &loopConn{st: st, fd: fd, registered: true}
	c.lc.s = st.s.lean
	c.lc.c = cc
	c.timer = st.l.NewTimer(c.clientTimeout)
	c.ut = st.l.NewTimer(c.upstreamTimeout)
	return c
}

// idle reports whether c waits for a request's first byte.
func (c *loopConn) idle() bool {
	return c.stage == stRead && c.lc.r == c.lc.w && !c.closed
}

func (c *loopConn) setInterest(ev uint32) {
	if c.interest != ev && c.registered && !c.closed {
		if c.st.l.Modify(c.fd, ev) == nil {
			c.interest = ev
		}
	}
}

// serveInterest is c's interest while it serves a request: the client's
// bytes (unless they came and wait) and room to write when bytes wait.
func (c *loopConn) serveInterest() uint32 {
	var ev uint32
	if !c.readPaused {
		ev = eventloop.Readable
	}
	if len(c.wq) > 0 {
		ev |= eventloop.Writable
	}
	return ev
}

func (c *loopConn) setTimer(k loopTimer, d time.Duration) {
	c.timerKind = k
	c.timer.Reset(d)
}

func (c *loopConn) stopTimer() {
	c.timerKind = tNone
	c.timer.Stop()
}

func (c *loopConn) setUT(k loopTimer, d time.Duration) {
	c.utKind = k
	c.ut.Reset(d)
}

func (c *loopConn) stopUT() {
	c.utKind = tNone
	c.ut.Stop()
}

// guard recovers a panic of request code: the client gets 500 when
// nothing of the answer went out, the request's bookkeeping is done and
// the connection closes, as serveOne does. The loop goes on.
func (c *loopConn) guard() {
	p := recover()
	if p == nil {
		return
	}
	c.st.s.logger.Error("gateway handler panicked", "panic", p, "uri", string(c.lc.req.Target))
	if c.closed {
		return
	}
	if c.inflight != nil && !c.lc.wrote && !c.writeFailed {
		c.lc.hdr.reset()
		leanResponder{lc: &c.lc, close: true}.json(http.StatusInternalServerError, map[string]string{"error": "internal"})
		c.lc.status = http.StatusInternalServerError
		switch {
		case c.h2 != nil:
			c.sendStream(c.lc.pending)
		case c.tls != nil:
			_, _ = c.tls.Write(&c.st.tls, c.fd, c.lc.pending) // one try: the connection closes
		default:
			_, _ = unix.Write(c.fd, c.lc.pending) // one try: the connection closes
		}
		c.lc.pending = nil
	}
	c.abort()
}

// onClient is the client socket's handler.
func (c *loopConn) onClient(ev uint32) {
	defer c.guard()
	if c.closed {
		return
	}
	if c.stage == stRead {
		c.readClient()
		if c.tls != nil {
			c.readHeld()
		}
		return
	}
	if len(c.wq) > 0 && ev&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
		c.drain()
		return
	}
	if ev&unix.EPOLLIN != 0 && !c.readPaused {
		c.readPaused = true // read once this request is answered
		c.setInterest(c.serveInterest())
	}
	if ev&(unix.EPOLLERR|unix.EPOLLHUP) != 0 && len(c.wq) == 0 {
		// Both ways closed (or reset): the answer's write will fail.
		// Level-triggered, the event would come again: stop watching.
		if c.st.l.Delete(c.fd) == nil {
			c.registered = false
		}
	}
}

// startRead waits for, or reads, the next request.
func (c *loopConn) startRead() {
	c.stage = stRead
	c.headStarted, c.inBody = false, false
	lc := &c.lc
	if c.readPaused {
		c.readPaused = false
	}
	c.setInterest(eventloop.Readable)
	if lc.r == lc.w {
		lc.r, lc.w = 0, 0
		// A connection waiting for its next request keeps no read
		// buffer (the next read takes one, see readClient), and no
		// large answer buffer.
		c.st.giveBuf(lc.buf)
		lc.buf, lc.body = nil, nil
		if cap(lc.out) > leanKeepBuf {
			lc.out = nil
		}
		if c.st.s.lean.shutting.Load() {
			c.close()
			return
		}
		c.setTimer(tIdle, c.st.s.idleTimeout)
		c.slot.IdleAt(c.st.l.Now())
		if c.tls != nil {
			c.readHeld() // the tls.Conn may hold the next request
		}
		return
	}
	c.stopTimer()
	c.parse()
	if c.tls != nil {
		c.readHeld()
	}
}

// readClient reads the client once and serves what it completes.
func (c *loopConn) readClient() {
	lc := &c.lc
	limit := headerBuffer
	if c.inBody {
		limit = c.need
	}
	if lc.buf == nil { // idle until now: no buffer held (startRead)
		lc.buf = c.st.takeBuf()
	}
	if lc.w == len(lc.buf) {
		unread := lc.w - lc.r
		switch {
		case lc.r > 0 && unread < len(lc.buf)/2:
			copy(lc.buf, lc.buf[lc.r:lc.w])
		case unread >= limit:
			c.handOver() // a head over the bound: the fast engine answers 431
			return
		default:
			nb := make([]byte, min(2*len(lc.buf), limit+leanBufStart))
			copy(nb, lc.buf[lc.r:lc.w])
			lc.buf = nb
		}
		lc.r, lc.w = 0, unread
	}
	var n int
	var err error
	if c.tls == nil {
		n, err = unix.Read(c.fd, lc.buf[lc.w:])
	} else {
		n, err = c.tls.Read(&c.st.tls, c.fd, lc.buf[lc.w:])
	}
	if n > 0 {
		lc.w += n
		c.slot.Busy()
		c.parse()
		return
	}
	if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
		if lc.w == 0 && c.stage == stRead {
			// Nothing came (over TLS, a look for records the tls.Conn
			// may have held): still idle, it holds no buffer.
			c.st.giveBuf(lc.buf)
			lc.buf = nil
		}
		return
	}
	switch {
	case err == nil:
		err = io.EOF
	case c.tls == nil:
		err = os.NewSyscallError("read", err)
	}
	switch {
	case c.inBody:
		c.bodyFault(err)
	case lc.r < lc.w && errors.Is(err, io.EOF):
		// The client ended its side mid-head: the fast engine reads
		// the same end and answers 400, as net/http does.
		c.handOver()
	default:
		c.close()
	}
}

// parse serves the request at buf[r:] once it is whole, head and body.
func (c *loopConn) parse() {
	lc := &c.lc
	req := &lc.req
	if c.inBody {
		if lc.w-lc.r < c.need {
			return
		}
		// Reading may have moved the head, which req views: read it
		// again where it is now (it parsed before; it parses the same).
		if _, err := http1.ParseRequest(lc.buf[lc.r:lc.w], headerBuffer, req); err != nil {
			c.close()
			return
		}
		c.inBody = false
		lc.reqEnd = lc.r + c.need
		lc.body = lc.buf[lc.r+c.headN : lc.reqEnd]
		c.process()
		return
	}
	if !c.served && c.st.s.h2 != nil && c.h2 == nil {
		if prefix, whole := isH2Preface(lc.buf[lc.r:lc.w]); prefix {
			if whole {
				c.toH2()
			} else {
				c.headPending()
			}
			return
		}
	}
	n, err := http1.ParseRequest(lc.buf[lc.r:lc.w], headerBuffer, req)
	switch {
	case err != nil:
		c.handOver()
		return
	case n == 0:
		c.headPending()
		return
	}
	lc.body = nil
	if req.Chunked || req.ContentLength > leanMaxBody {
		c.handOver()
		return
	}
	if req.ContentLength <= 0 {
		lc.reqEnd = lc.r + n
		c.process()
		return
	}
	need := n + int(req.ContentLength)
	if lc.w-lc.r >= need {
		lc.reqEnd = lc.r + need
		lc.body = lc.buf[lc.r+n : lc.reqEnd]
		c.process()
		return
	}
	c.inBody, c.need, c.headN = true, need, n
	c.setTimer(tBody, c.st.s.g.opts.BodyReadTimeout)
}

// headPending: a head (or the HTTP/2 preface) is not yet whole. The head
// timeout starts with the first read of a head not yet whole, a
// pipelined one's too.
func (c *loopConn) headPending() {
	if !c.headStarted {
		c.headStarted = true
		c.setTimer(tHead, c.st.s.lean.headTimeout)
	}
}

// bodyFault answers a body that failed to arrive (408 when the client
// stalled, 400 otherwise) and closes the connection after it.
func (c *loopConn) bodyFault(err error) {
	c.inBody = false
	c.stopTimer()
	c.lc.hdr.reset()
	clientFault(leanResponder{lc: &c.lc, close: true}, err)
	c.finish(false)
}

// clientTimeout is the client's timer: the idle and head timeouts close
// the connection, the body's answers 408, the write's drops the client.
func (c *loopConn) clientTimeout() {
	defer c.guard()
	if c.h2 != nil && c.h2.bridge != nil {
		c.bridgeTimeout()
		return
	}
	if c.closed {
		return
	}
	k := c.timerKind
	c.timerKind = tNone
	switch k {
	case tIdle, tHead:
		c.close()
	case tBody:
		c.bodyFault(&net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded})
	case tWrite:
		c.clientGone()
	}
}

// handOver gives the connection, with the bytes read and not served, to
// the lean engine, which serves it from then on. Nothing of an answer
// has been written to it.
func (c *loopConn) handOver() {
	if c.h2 != nil {
		c.handStream()
		return
	}
	c.stopTimer()
	c.stopUT()
	if c.registered {
		_ = c.st.l.Delete(c.fd)
		c.registered = false
	}
	c.closed = true
	c.st.forget(c)
	nc, err := eventloop.Conn(c.fd)
	if err != nil {
		c.st.s.logger.Warn("gateway loop engine could not hand a connection over", "err", err)
		c.slot.Release()
		return
	}
	lc := &c.lc
	// The connection keeps its slot under the cap: closing it there gives
	// the slot back.
	c.slot.SetEvict(func() { _ = nc.Close() })
	var conn net.Conn = conncap.NewConn(nc, c.slot)
	if c.tls != nil {
		conn = c.tls.Resume(conn) // the same tls.Conn, over nc now
	}
	cc := &clientConn{Conn: conn, ip: lc.c.ip, writeTimeout: leanWriteTimeout}
	if !c.st.s.lean.serveFrom(cc, lc.buf[lc.r:lc.w]) {
		_ = closeNow(cc) // and gives the slot back; over TLS without the close_notify, which could wait
	}
}

// send writes p to the client; what the socket does not take waits in
// c.wq (p is not copied: its owner leaves it alone until drain) for the
// client to be writable, within the write timeout. It reports false when
// the client is gone.
func (c *loopConn) send(p []byte) bool {
	c.lc.wrote = true
	if c.h2 != nil {
		return c.sendStream(p)
	}
	if c.tls != nil {
		rest, err := c.tls.Write(&c.st.tls, c.fd, p)
		if err != nil {
			c.writeFailed = true
			return false
		}
		return c.queue(rest)
	}
	n, err := eventloop.Write(c.fd, p)
	if err != nil {
		c.writeFailed = true
		return false
	}
	return c.queue(p[n:])
}

// queue keeps p, the part of an answer the client's socket did not take,
// for drain (nothing when p is empty); it reports true.
func (c *loopConn) queue(p []byte) bool {
	if len(p) == 0 {
		return true
	}
	c.wq = p
	c.st.s.noteQueued(len(p))
	c.setTimer(tWrite, c.st.s.lean.writeTimeout)
	c.setInterest(c.serveInterest())
	return true
}

// drain writes what waits for the client, then goes on: the relay reads
// the target again, or the answer is out.
func (c *loopConn) drain() {
	if c.h2 != nil && !c.drainStream() {
		return
	}
	if c.tls != nil { // c.wq is a view of the ciphertext waiting
		rest, err := c.tls.Flush(&c.st.tls, c.fd)
		c.wq = rest
		if err != nil {
			c.writeFailed = true
			c.clientGone()
			return
		}
		if len(rest) > 0 {
			return
		}
	}
	n, err := eventloop.Write(c.fd, c.wq)
	c.wq = c.wq[n:]
	if err != nil {
		c.writeFailed = true
		c.clientGone()
		return
	}
	if len(c.wq) > 0 {
		return
	}
	c.wq = nil
	c.stopTimer()
	c.setInterest(c.serveInterest())
	switch c.stage {
	case stRelay:
		if up := c.up; up != nil && up.paused {
			up.paused = false
			up.watch()
		}
	case stFlush:
		c.flushed()
	}
}

// clientGone: a write to the client failed or timed out.
func (c *loopConn) clientGone() {
	c.writeFailed = true
	c.wq = nil
	switch c.stage {
	case stRelay:
		c.relayDone(false, true)
	default:
		c.keep = false
		c.flushed()
	}
}

// abort cuts the connection with its request, if any: a shutdown out of
// time, a panic. The request's bookkeeping is done as a failure.
func (c *loopConn) abort() {
	if c.closed {
		return
	}
	c.stopUT()
	if c.waiting != nil {
		c.waiting.unwait(c)
		c.waiting = nil
	}
	if c.up != nil {
		c.up.p.closeUp(c.up)
		c.up = nil
	}
	if c.attempting { // attemptDone not called: the target's count
		c.attempting = false
		c.t.inFlight.Add(-1)
	}
	if c.entered {
		c.entered = false
		c.u.leave(c.rt, c.permit, c.fwdStart, c.st.l, false, true)
	}
	if c.stage == stAdmit {
		// The check's goroutine owns lc until its decision is posted (a
		// rejection writes its answer there): the request is cut
		// unanswered, status 0 (process set it).
		c.endRequestAs(0, true, true)
	} else {
		c.endRequest(true, true)
	}
	c.close()
}

// close closes the client's connection.
func (c *loopConn) close() {
	if c.closed {
		return
	}
	c.closed = true
	c.stopTimer()
	c.stopUT()
	if c.waiting != nil {
		c.waiting.unwait(c)
		c.waiting = nil
	}
	if c.up != nil {
		c.up.p.closeUp(c.up)
		c.up = nil
	}
	if c.h2 != nil {
		c.closeStream()
		return
	}
	if c.registered {
		_ = c.st.l.Delete(c.fd)
		c.registered = false
	}
	if c.tls != nil && !c.writeFailed && len(c.wq) == 0 {
		c.tls.CloseNotify(&c.st.tls, c.fd)
	}
	_ = unix.Close(c.fd)
	c.st.forget(c)
	c.slot.Release()
}

// evict closes the connection to make room under the cap if it still
// waits for a request (conncap.Cap.Full, posted to its loop).
func (c *loopConn) evict() {
	if c.idle() {
		c.close()
		return
	}
	c.slot.Spared()
}

// noteQueued records n bytes held for a client (maxQueued).
func (s *LoopServer) noteQueued(n int) {
	s.mu.Lock()
	s.maxQueued = max(s.maxQueued, n)
	s.mu.Unlock()
}
