//go:build linux

package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/fluxgate/fluxgate/controlpoint/breaker"
	"github.com/fluxgate/fluxgate/controlpoint/client"
	"github.com/fluxgate/fluxgate/gateway/eventloop"
	"github.com/fluxgate/fluxgate/gateway/http1"
	"github.com/fluxgate/fluxgate/internal/conncap"
	"github.com/fluxgate/fluxgate/metricnames"
)

// loopConn is one client connection of the loop engine, a state machine
// driven by its loop's events. lc holds what the lean engine's functions
// read and write (the request, the head out, the decision's fields, the
// pending answer): the loop shares them (outbound, responseHead,
// leanLabels, the responders) rather than copy them. lc.c is a stand-in
// with the client's addresses: the loop reads and writes the socket
// itself.
type loopConn struct {
	lc    leanConn
	st    *loopState
	fd    int
	tls   *loopTLS // nil: a plain connection
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
			_, _ = c.tls.write(c.st, c.fd, c.lc.pending) // one try: the connection closes
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
		n, err = c.tls.read(c.st, c.fd, lc.buf[lc.w:])
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
	f := os.NewFile(uintptr(c.fd), "")
	nc, err := net.FileConn(f) // a duplicate, on Go's poller
	_ = f.Close()
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
		conn = c.tls.resume(conn) // the same tls.Conn, over nc now
	}
	cc := &clientConn{Conn: conn, ip: lc.c.ip, writeTimeout: leanWriteTimeout}
	if !c.st.s.lean.serveFrom(cc, lc.buf[lc.r:lc.w]) {
		_ = closeNow(cc) // and gives the slot back; over TLS without the close_notify, which could wait
	}
}

// loopCarries reports whether the loop serves rt's requests itself: the
// lean engine would (rt.fast), to groups of plain HTTP/1.1 targets.
func loopCarries(rt *route) bool {
	return rt.fast && rt.primary.scheme != "https" && (rt.canary == nil || rt.canary.scheme != "https")
}

// process serves the request whose head and body are buf[r:reqEnd].
func (c *loopConn) process() {
	c.stopTimer()
	g := c.st.s.g
	lc := &c.lc
	rt := g.state.Load().route(leanRequest{lc})
	if rt != nil && !loopCarries(rt) {
		if rt.fast { // the lean engine serves it itself: the one hand-over it does not count
			g.metrics.handovers.WithLabelValues(metricnames.HandoverUpstreamTLS).Inc()
		}
		c.handOver()
		return
	}
	lc.wrote = false
	lc.hdr.reset()
	c.stage = stUpstream
	c.served = true
	if rt == nil {
		leanResponder{lc: lc, close: lc.req.Close}.json(http.StatusNotFound, map[string]string{"error": "no_route"})
		c.finish(true)
		return
	}
	c.rt = rt
	c.start = c.st.l.Now()
	lc.status = 0 // a request cut before its answer (Shutdown's end) is recorded as unanswered, not as the last one's status
	c.method = methodString(lc.req.Method)
	c.inflight = rt.series.started(c.method)
	lc.fl = proxied{route: rt}
	if rt.gate == nil {
		c.forward()
		return
	}
	labels := leanLabels(lc, rt, c.method)
	// On the loop whenever the control point decides without waiting:
	// an in-process engine tries (a scheduler with tokens to spare, a
	// concurrency limiter with room); a Checker that cannot try says
	// whether its checks may wait at all. On the loop, the check, the
	// flow's start and its record are at the wake's clock reading.
	if a, ok, decided := rt.gate.TryAdmitAt(context.Background(), c.start, leanExchange{lc}, labels, 0); decided {
		c.admitted(a, ok)
		return
	}
	if !rt.gate.Tries() && !g.checkMayWait(rt.controlPoint) {
		a, ok := rt.gate.AdmitAt(context.Background(), c.start, leanExchange{lc}, labels, 0)
		c.admitted(a, ok)
		return
	}
	// The check would wait (a scheduler's queue, Redis, a remote agent):
	// on a goroutine, the request resuming on the loop with the decision.
	// Nothing else touches lc meanwhile. The goroutine reads the wall
	// clock (the loop's is the loop's own); the flow ends by the loop's.
	c.stage = stAdmit
	l := c.st.l
	go func() {
		a, ok := rt.gate.Admit(context.Background(), leanExchange{lc}, labels, 0)
		if !l.Post(func() {
			defer c.guard()
			if c.closed || c.stage != stAdmit {
				if ok {
					a.EndAt(l.Now(), 0, true) // the connection was cut meanwhile
				}
				return
			}
			c.stage = stUpstream
			c.admitted(a, ok)
		}) && ok {
			a.End(0, true) // the loops stopped: Shutdown cut the connection
		}
	}()
}

// admitted goes on with the control point's decision.
func (c *loopConn) admitted(a client.Admitted, ok bool) {
	if !ok {
		c.endRequest(false, false)
		c.finish(true)
		return
	}
	c.adm, c.hasAdm = a, true
	c.forward()
}

// forward sends the request to the route's upstream group through its
// breaker, as forwardLean does.
func (c *loopConn) forward() {
	lc := &c.lc
	u := c.rt.choose(leanRequest{lc})
	lc.fl.upstream = u
	c.u = u
	permit, ok := u.enter((*leanRejecter)(lc), c.st.l)
	if !ok {
		c.endRequest(false, false)
		c.finish(true)
		return
	}
	c.permit, c.entered, c.fwdStart = permit, true, c.st.l.Now()
	c.headReq = c.method == http.MethodHead
	c.again = retryable(c.method, lc.body == nil)
	c.msg = lc.outbound()
	c.tried, c.attempt, c.last = c.tried[:0], 0, nil
	c.nextAttempt()
}

// nextAttempt sends the request to a target not tried yet.
func (c *loopConn) nextAttempt() {
	t, start, err := c.u.attemptTarget(&c.lc.fl, c.tried, c.last, c.st.l)
	if err != nil {
		c.upstreamFailed(err)
		return
	}
	c.t, c.tStart, c.resent, c.attempting = t, start, 0, true
	c.getConn()
}

// getConn takes a connection to the attempt's target from the loop's
// pool, or waits for one.
func (c *loopConn) getConn() {
	p := c.st.pool(c.t.addr)
	up, reused, wait, err := p.get(c)
	switch {
	case err != nil:
		c.attemptFailed(err, false)
	case wait:
		p.waitFor(c)
		c.waiting = p
		c.setUT(tPoolWait, c.st.s.g.opts.DialTimeout)
	case up.connecting:
		c.up, c.reused = up, false
		c.setUT(tDial, c.st.s.g.opts.DialTimeout)
	default:
		c.up, c.reused = up, reused
		c.sendRequest()
	}
}

// poolFreed: a connection came back or closed while c waited.
func (c *loopConn) poolFreed() {
	defer c.guard()
	c.waiting = nil
	c.stopUT()
	c.getConn()
}

// connected: the dial of c.up ended, with err or not.
func (c *loopConn) connected(up *loopUp, err error) {
	defer c.guard()
	if c.up != up {
		return
	}
	c.stopUT()
	if err != nil {
		c.attemptFailed(err, false)
		return
	}
	c.sendRequest()
}

// sendRequest writes the request on c.up and waits for the answer's
// head, within ResponseHeaderTimeout from now.
func (c *loopConn) sendRequest() {
	up := c.up
	up.r, up.w = 0, 0
	if t := c.st.s.g.opts.ResponseHeaderTimeout; t > 0 {
		c.setUT(tAnswer, t)
	}
	up.out = c.msg
	c.writeUp()
}

// writeUp writes what is left of the request to the target.
func (c *loopConn) writeUp() {
	up := c.up
	for len(up.out) > 0 {
		n, err := unix.Write(up.fd, up.out)
		if n > 0 {
			up.out = up.out[n:]
			continue
		}
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if errors.Is(err, unix.EAGAIN) {
			up.setInterest(eventloop.Readable | eventloop.Writable)
			return
		}
		c.attemptFailed(&net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", err)}, false)
		return
	}
	up.out = nil
	up.setInterest(eventloop.Readable)
}

// onUp handles an event of c.up.
func (c *loopConn) onUp(up *loopUp, ev uint32) {
	defer c.guard()
	if c.up != up || c.closed {
		return
	}
	switch {
	case up.connecting:
		if ev&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) == 0 {
			return
		}
		c.stopUT()
		if err := up.finishConnect(); err != nil {
			c.attemptFailed(err, false)
			return
		}
		c.sendRequest()
	case c.stage == stUpstream:
		if len(up.out) > 0 && ev&unix.EPOLLOUT != 0 {
			c.writeUp()
			if c.up != up || len(up.out) > 0 {
				return
			}
		}
		if ev&(unix.EPOLLIN|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
			c.readHead()
		}
	case c.stage == stRelay:
		c.readBody(ev)
	case c.stage == stFlush:
		// The answer is read to its end and its last piece waits for
		// the client: what comes now (bytes, the end, an error) is past
		// it, and the connection carries no other request. Closed now:
		// level-triggered, the event would come again until the client
		// took the piece (which is in c.wq, not in the socket).
		c.upReusable = false
		c.up = nil
		up.p.closeUp(up)
	}
}

// upstreamTimeout is the upstream's timer.
func (c *loopConn) upstreamTimeout() {
	defer c.guard()
	if c.closed {
		return
	}
	k := c.utKind
	c.utKind = tNone
	switch k {
	case tDial:
		c.attemptFailed(c.up.p.dialError(loopDialTimeout{}), false)
	case tAnswer:
		c.attemptFailed(&net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}, c.up != nil && c.up.w > 0)
	case tPoolWait:
		if c.waiting != nil {
			c.waiting.unwait(c)
			c.waiting = nil
		}
		c.attemptFailed(errLeanPoolFull, false)
	}
}

// readUp reads the target once into buf[w:]; it reports what it read,
// and err (io.EOF for the end) when nothing.
func readUp(up *loopUp, b []byte) (int, error) {
	n, err := unix.Read(up.fd, b)
	switch {
	case n > 0:
		return n, nil
	case err == nil:
		return 0, io.EOF
	case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
		return 0, nil
	}
	return 0, &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", err)}
}

// readHead reads the answer's head, past any 1xx, as leanUpConn.exchange.
func (c *loopConn) readHead() {
	up := c.up
	if up.w == len(up.buf) {
		if len(up.buf) >= headerBuffer {
			c.attemptFailed(errLeanBadResponseOver, true)
			return
		}
		nb := make([]byte, 2*len(up.buf))
		copy(nb, up.buf[:up.w])
		up.buf = nb
	}
	n, err := readUp(up, up.buf[up.w:])
	if err != nil {
		c.attemptFailed(err, up.w > 0)
		return
	}
	if n == 0 {
		return
	}
	up.w += n
	for up.w > 0 {
		n, err := http1.ParseResponse(up.buf[:up.w], headerBuffer, &up.resp)
		switch {
		case err != nil:
			c.attemptFailed(fmt.Errorf("%w: %w", errLeanBadResponse, err), true)
			return
		case n == 0:
			return
		case up.resp.Status >= 200:
			up.r = n
			c.gotHead()
			return
		case up.resp.Status == 101:
			c.attemptFailed(errSwitching, true)
			return
		}
		// 1xx: informational; the final response follows.
		copy(up.buf, up.buf[n:up.w])
		up.w -= n
	}
}

var errLeanBadResponseOver = fmt.Errorf("%w: head over %d bytes", errLeanBadResponse, headerBuffer)

// attemptFailed ends an attempt that failed with err (answered: some of
// an answer came), with g.try's rules and leanPool.roundTrip's.
func (c *loopConn) attemptFailed(err error, answered bool) {
	c.stopUT()
	if c.up != nil {
		c.up.p.closeUp(c.up)
		c.up = nil
	}
	if resendOnNew(c.reused, answered, c.again, c.resent, err) {
		c.resent++
		c.reused = false
		c.getConn()
		return
	}
	fl := &c.lc.fl
	c.attempting = false
	if c.st.s.g.attemptDone(c.u, fl, c.t, c.tStart, c.st.l, 0, err, c.again, c.attempt, nil) {
		c.tried = append(c.tried, c.t)
		c.last = err
		c.attempt++
		c.nextAttempt()
		return
	}
	c.upstreamFailed(err)
}

// upstreamFailed answers a request no target answered, as forwardLean.
func (c *loopConn) upstreamFailed(err error) {
	c.st.s.g.upstreamError((*leanRejecter)(&c.lc), &c.lc.fl, err)
	c.entered = false
	c.u.leave(c.rt, c.permit, c.fwdStart, c.st.l, false, true)
	c.endRequest(false, false)
	c.finish(true)
}

// gotHead relays the answer whose head c.up read.
func (c *loopConn) gotHead() {
	c.stopUT()
	c.attempting = false
	c.st.s.g.attemptDone(c.u, &c.lc.fl, c.t, c.tStart, c.st.l, c.up.resp.Status, nil, c.again, c.attempt, nil)
	up := c.up
	resp := &up.resp
	length := resp.BodyLength(c.headReq)
	out := c.lc.responseHead(resp, length)
	c.upReusable = !resp.Close && length != http1.BodyToClose
	if len(up.out) > 0 {
		// The target answered before it took the whole request: the
		// rest is not sent, and the connection, cut short in the
		// request, carries no other.
		c.upReusable = false
		up.out = nil
		up.setInterest(eventloop.Readable)
	}
	if length != http1.BodyNone && len(up.buf) < headerBuffer {
		nb := make([]byte, headerBuffer) // bodies are read in large pieces
		up.w = copy(nb, up.buf[up.r:up.w])
		up.r, up.buf = 0, nb
	}
	c.stage = stRelay
	c.mode = length
	switch {
	case length == http1.BodyNone:
		c.lc.pending = out
		c.relayDone(false, false)
	case length > 0:
		take := min(int64(up.w-up.r), length)
		out = append(out, up.buf[up.r:up.r+int(take)]...)
		c.lc.out = out
		up.r += int(take)
		c.remaining = length - take
		if c.remaining == 0 {
			c.lc.pending = out
			c.relayDone(false, false)
			return
		}
		c.sendBody(out)
	case length == http1.BodyChunked:
		c.chunk = http1.Chunked{}
		n, done, err := c.chunk.Scan(up.buf[up.r:up.w])
		if err != nil {
			c.relayDone(true, false)
			return
		}
		out = append(out, up.buf[up.r:up.r+n]...)
		c.lc.out = out
		up.r += n
		if done {
			c.lc.pending = out
			c.relayDone(false, false)
			return
		}
		c.sendBody(out)
	default:
		if up.r < up.w {
			out = appendChunk(out, up.buf[up.r:up.w])
			up.r = up.w
		}
		c.lc.out = out
		c.sendBody(out)
	}
}

// sendBody writes a piece of the answer's body; when the client does not
// take it all, the target is read again only once it has.
func (c *loopConn) sendBody(p []byte) {
	if !c.send(p) {
		c.relayDone(false, true)
	}
}

// readBody reads the target once and relays what came, as relayLength,
// relayChunked and relayToClose do.
func (c *loopConn) readBody(ev uint32) {
	up := c.up
	if len(c.wq) > 0 { // back-pressure: the client has not taken the last piece
		up.paused = true
		up.setInterest(0)
		if ev&(unix.EPOLLERR|unix.EPOLLHUP) != 0 {
			// They come whatever the interest: stop watching until the
			// client drains, then read what is left and the error.
			up.unwatch()
		}
		return
	}
	// A whole buffer, not just what is left: bytes past the end stay
	// unread (up.r < up.w), and the connection is not reused.
	n, err := readUp(up, up.buf)
	if n == 0 && err == nil {
		return
	}
	switch {
	case c.mode > 0:
		take := min(int64(n), c.remaining)
		up.r, up.w = int(take), n
		out := up.buf[:take]
		c.remaining -= take
		switch {
		case c.remaining == 0:
			c.lc.pending = out
			c.relayDone(false, false)
		case err != nil:
			c.relayDone(true, false)
		default:
			c.sendBody(out)
		}
	case c.mode == http1.BodyChunked:
		if err != nil {
			c.relayDone(true, false)
			return
		}
		k, done, serr := c.chunk.Scan(up.buf[:n])
		if serr != nil {
			c.relayDone(true, false)
			return
		}
		up.r, up.w = k, n
		out := up.buf[:k]
		if done {
			c.lc.pending = out
			c.relayDone(false, false)
			return
		}
		c.sendBody(out)
	default: // to close: chunked to the client
		up.r, up.w = 0, 0
		switch {
		case n > 0:
			c.lc.out = appendChunk(c.lc.out[:0], up.buf[:n])
			c.sendBody(c.lc.out)
		case errors.Is(err, io.EOF):
			c.lc.out = append(c.lc.out[:0], "0\r\n\r\n"...)
			c.lc.pending = c.lc.out
			c.relayDone(false, false)
		default:
			c.relayDone(true, false)
		}
	}
}

// relayDone ends the relay: the breaker and the canary learn the outcome,
// the request's bookkeeping is done, then the last piece goes out.
func (c *loopConn) relayDone(bodyFailed, gone bool) {
	up := c.up
	if bodyFailed || gone || up.r != up.w {
		c.upReusable = false
	}
	c.entered = false
	c.u.leave(c.rt, c.permit, c.fwdStart, c.st.l, gone, bodyFailed || c.lc.status >= 500)
	c.endRequest(bodyFailed, gone)
	c.finish(!bodyFailed && !gone)
}

// endRequest does the request's bookkeeping, as serveLean.
func (c *loopConn) endRequest(failed, gone bool) { c.endRequestAs(c.lc.status, failed, gone) }

// endRequestAs is endRequest with the answer's status given.
func (c *loopConn) endRequestAs(status int, failed, gone bool) {
	now := c.st.l.Now()
	if c.hasAdm {
		c.hasAdm = false
		c.adm.EndAt(now, status, failed || gone)
	}
	if c.inflight == nil {
		return
	}
	hostLabel := ""
	if h := c.lc.fl.host.Load(); h != nil {
		hostLabel = *h
	}
	c.rt.series.finished(hostLabel, c.method, status, now.Sub(c.start))
	c.inflight.Dec()
	c.inflight = nil
}

// finish writes the pending end of the answer; once it is out, the
// target's connection goes back to its pool and the next request is read
// (keep, and the client did not ask to close) or the connection closes.
func (c *loopConn) finish(keep bool) {
	c.stage = stFlush
	c.keep = keep && !c.lc.req.Close
	if p := c.lc.pending; p != nil {
		c.lc.pending = nil
		if !c.send(p) {
			c.keep = false
		}
	}
	if len(c.wq) == 0 {
		c.flushed()
	}
}

// flushed: the answer is out.
func (c *loopConn) flushed() {
	if up := c.up; up != nil {
		c.up = nil
		if c.upReusable && !c.writeFailed {
			up.p.put(up)
		} else {
			up.p.closeUp(up)
		}
	}
	c.rt, c.u, c.t = nil, nil, nil
	if !c.keep || c.writeFailed || !c.registered || c.st.s.lean.shutting.Load() {
		c.close()
		return
	}
	c.lc.r = c.lc.reqEnd
	c.startRead()
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
		rest, err := c.tls.write(c.st, c.fd, p)
		if err != nil {
			c.writeFailed = true
			return false
		}
		return c.queue(rest)
	}
	for len(p) > 0 {
		n, err := unix.Write(c.fd, p)
		if n > 0 {
			p = p[n:]
			continue
		}
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if errors.Is(err, unix.EAGAIN) {
			break
		}
		c.writeFailed = true
		return false
	}
	return c.queue(p)
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
		rest, err := c.tls.flush(c.st, c.fd)
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
	for len(c.wq) > 0 {
		n, err := unix.Write(c.fd, c.wq)
		if n > 0 {
			c.wq = c.wq[n:]
			continue
		}
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if errors.Is(err, unix.EAGAIN) {
			return
		}
		c.writeFailed = true
		c.clientGone()
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
		c.tls.closeNotify(c.st, c.fd)
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
