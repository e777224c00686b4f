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

	"golang.org/x/sys/unix"

	"github.com/fluxgate/fluxgate/controlpoint/client"
	"github.com/fluxgate/fluxgate/internal/eventloop"
	"github.com/fluxgate/fluxgate/internal/http1"
	"github.com/fluxgate/fluxgate/metricnames"
)

// The exchange of a loop connection's request (loopConn): routing, the
// control point, the upstream group's breaker, attempts on targets from
// the loop's pools, the answer's head and its relay, the request's
// bookkeeping. The client's side (reading, writing, timeouts, hand-over,
// closing) is in loopconn.go.

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
	n, err := eventloop.Write(up.fd, up.out)
	up.out = up.out[n:]
	if err != nil {
		c.attemptFailed(&net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", err)}, false)
		return
	}
	if len(up.out) > 0 {
		up.setInterest(eventloop.Readable | eventloop.Writable)
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
