//go:build linux

package loophttp

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fluxgate/fluxgate/internal/conncap"
	"github.com/fluxgate/fluxgate/internal/eventloop"
	"github.com/fluxgate/fluxgate/internal/http1"
	"github.com/fluxgate/fluxgate/internal/looptls"
)

// conn is a client connection on a loop. Everything in it is its loop's.
type conn struct {
	st     *loopState
	fd     int
	remote string
	slot   *conncap.Slot // nil without a Cap

	req      http1.Request
	pend     []byte // bytes read and not served: a partial head, or what follows a waiting request
	wq       []byte // answer bytes the socket has not taken
	interest uint32
	timer    *eventloop.Timer
	timing   timing

	more       bool               // pend may hold whole requests, left for the answers' bound (maxQueued)
	waiting    bool               // a handler runs on a goroutine
	cancel     context.CancelFunc // ends the waiting request's context
	closeAfter bool               // close once wq is out
	handAfter  bool               // hand over to Fallback once wq is out
	closed     bool
	failed     bool // a write failed: no close_notify
	inRead     bool // within read, which reads on while the tls.Conn may hold more

	// Over TLS (tls.go): wq is then a view of the records waiting, pend
	// and the answers plaintext.
	tls      *looptls.TLS         // nil: plain
	tlsState *tls.ConnectionState // the handshake's, for requests (r.TLS); nil: plain
}

// maxQueued bounds the answers a connection formats before the client
// takes them: pipelined requests past it wait in pend (and the kernel's
// buffer), so that a client that sends and does not read holds at most
// this much of the agent's memory and one answer.
const maxQueued = 64 << 10

// timing is what the connection's timer is set for.
type timing uint8

const (
	timeNone  timing = iota
	timeHead         // a head to arrive
	timeIdle         // the next request
	timeWrite        // the client to take the answer
)

func (c *conn) onEvent(ev uint32) {
	if c.closed {
		return
	}
	if ev&(unix.EPOLLERR|unix.EPOLLHUP) != 0 && (c.waiting || ev&unix.EPOLLIN == 0) ||
		ev&unix.EPOLLRDHUP != 0 && c.waiting {
		c.close()
		return
	}
	if ev&eventloop.Writable != 0 && len(c.wq) > 0 {
		c.flush(nil)
		if c.closed {
			return
		}
	}
	if ev&(eventloop.Readable|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
		switch {
		case c.reading():
			c.read()
			return
		case c.waiting:
			c.readAside()
		}
	}
	c.next()
}

// readInterest is the interest of a connection that reads: its client's
// going is told apart from its bytes, for a request that waits.
const readInterest = eventloop.Readable | unix.EPOLLRDHUP

// readAside keeps what a client sends while its request waits, for after
// the answer (the interest stays as it was: no epoll_ctl a waiting
// request), up to MaxHead bytes; next then stops reading.
func (c *conn) readAside() {
	in := c.st.in
	if in == nil {
		in = make([]byte, readSize)
		c.st.in = in
	}
	n, err := c.readSocket(in)
	switch {
	case n > 0:
		c.pend = append(c.pend, in[:n]...)
	case n == 0 && err == nil, err != nil && !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EINTR):
		c.close()
	}
}

// reading reports whether the connection reads requests now: not while a
// handler waits or answers wait for the socket (pipelined requests stay
// in the kernel's buffer, as net/http leaves them in its own).
func (c *conn) reading() bool {
	return !c.waiting && len(c.wq) == 0 && !c.closeAfter && !c.handAfter
}

// read reads once into the loop's buffer, after the partial head kept,
// and serves what came; over TLS, on while the tls.Conn may hold records
// the socket will not tell of.
func (c *conn) read() {
	c.inRead = true
	defer func() { c.inRead = false }() // a panic the loop recovers leaves no stale flag
	for {
		in := c.st.in
		if in == nil {
			in = make([]byte, readSize)
			c.st.in = in
		}
		have := copy(in, c.pend)
		n, err := c.readSocket(in[have:])
		switch {
		case n > 0:
			c.pend = c.pend[:0]
			c.serveBytes(in[:have+n])
		case n == 0 && err == nil: // the client closed its side
			c.close()
		case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
			c.next()
		default:
			c.close()
		}
		if c.closed || c.tls == nil || !c.tls.More() || !c.reading() {
			return
		}
	}
}

// readSocket reads the client once into p: plaintext, decrypted over
// TLS. It returns (0, nil) at the client's end, as unix.Read does.
func (c *conn) readSocket(p []byte) (int, error) {
	if c.tls == nil {
		return unix.Read(c.fd, p)
	}
	n, err := c.tls.Read(&c.st.tls, c.fd, p)
	c.wq = c.tls.Waiting() // what the read wrote (a KeyUpdate's reply) waits as answers do
	return n, err
}

// serveBytes answers the whole requests at the start of b (the loop's
// buffer), writes the answers, and keeps what remains.
func (c *conn) serveBytes(b []byte) {
	st := c.st
	out := st.out[:0]
	i := 0
	for i < len(b) {
		if len(out)+len(c.wq) >= maxQueued {
			c.more = true // the rest once the client took these answers
			break
		}
		n, err := http1.ParseRequest(b[i:], MaxHead, &c.req)
		if n == 0 && err == nil {
			break // a partial head
		}
		if err != nil || c.req.Chunked || c.req.ContentLength > MaxRequestBody || !c.serves() {
			c.handAfter = true // net/http serves it, and the connection from then on
			break
		}
		c.slot.Busy()
		size := n + int(max(c.req.ContentLength, 0))
		if len(b)-i < size {
			break // the body to come (the head is read again then)
		}
		r, ok := newRequest(b[i:i+size], n, &c.req, c.remote)
		if !ok {
			c.handAfter = true
			break
		}
		r.TLS = c.tlsState
		i += size
		c.timing = timeNone // next sets the timer afresh after the answer
		if w := st.s.o.Waits; w != nil && w(r) {
			c.wait(r)
			break
		}
		if st.header == nil {
			st.header = make(http.Header, 16)
		}
		w := response{header: st.header, closing: r.Close}
		ok = st.s.serve(&w, r)
		if ok {
			w.closing = w.closing || w.tooBig
			out = w.format(out, st.date.at(st.l.Now()))
		}
		clear(st.header)
		if !ok {
			c.closeAfter, c.handAfter = true, false
			i = len(b)
			break
		}
		if w.closing {
			c.closeAfter = true
			i = len(b)
			break
		}
	}
	c.pend = append(c.pend, b[i:]...)
	if len(c.pend) == 0 {
		c.pend = nil
	}
	c.flush(out)
	if cap(out) <= readSize {
		st.out = out[:0]
	}
}

// serves reports whether the loops serve c.req (Options.Serves); a
// target whose path has escapes goes to net/http, which unescapes it.
func (c *conn) serves() bool {
	path := c.req.Target
	if q := bytes.IndexByte(path, '?'); q >= 0 {
		path = path[:q]
	}
	return bytes.IndexByte(path, '%') < 0 && c.st.s.o.Serves(c.req.Method, path)
}

// wait answers r on a worker: the connection reads nothing more until
// the answer is out; r's context ends if the client goes.
func (c *conn) wait(r *http.Request) {
	ctx, cancel := context.WithCancel(context.Background())
	c.waiting, c.cancel = true, cancel
	r = r.WithContext(ctx)
	s, l := c.st.s, c.st.l
	s.group.Workers().Run(func() {
		w := waitedResponses.Get().(*response)
		w.closing = r.Close
		ok := s.serve(w, r)
		if !l.Post(func() { c.waited(w, ok) }) {
			cancel() // the loops stopped: Shutdown closed the connection
		}
	})
}

// waitedResponses holds the ResponseWriters of requests that waited,
// between them: a handler keeps none after it returns (http.Handler's
// contract), and waited is done with one once it formatted the answer.
var waitedResponses = sync.Pool{New: func() any { return &response{header: make(http.Header, 8)} }}

// keepWaitedBody bounds the body a kept response holds on to.
const keepWaitedBody = 4 << 10

// freeWaited empties w and keeps it for another request that waits,
// unless its header grew past what a check's answer sets.
func freeWaited(w *response) {
	if len(w.header) > 16 {
		return
	}
	clear(w.header)
	body := w.body[:0]
	if cap(body) > keepWaitedBody {
		body = nil
	}
	*w = response{header: w.header, body: body}
	waitedResponses.Put(w)
}

// waited writes the answer of a request that waited and goes on with the
// requests read after it.
func (c *conn) waited(w *response, ok bool) {
	defer freeWaited(w)
	c.cancel()
	c.waiting, c.cancel = false, nil
	if c.closed {
		return
	}
	if !ok {
		c.close()
		return
	}
	w.closing = w.closing || w.tooBig || c.closeAfter
	if w.closing {
		c.closeAfter = true
	}
	st := c.st
	out := w.format(st.out[:0], st.date.at(st.l.Now()))
	if len(c.pend) == 0 || c.closeAfter {
		c.flush(out)
		st.out = out[:0]
		return
	}
	// Requests pipelined after it: the answer goes out with theirs.
	c.enqueue(out)
	st.out = out[:0]
	pend := c.pend // the connection's own memory, up to MaxHead and a read
	c.pend = nil
	c.serveBytes(pend)
}

// enqueue keeps out (the loop's memory) to be written after what waits:
// copied to wq, or over TLS encrypted after the records waiting (and
// sent as far as the socket takes them).
func (c *conn) enqueue(out []byte) {
	if c.tls == nil {
		c.wq = append(c.wq, out...)
		return
	}
	rest, err := c.tls.Write(&c.st.tls, c.fd, out)
	if err != nil {
		c.failed, c.closeAfter, c.handAfter = true, true, false // next closes it
	}
	c.wq = rest
}

// flush writes what waits and then out (the loop's memory: what the
// socket does not take is copied), then goes on.
func (c *conn) flush(out []byte) {
	if c.tls != nil {
		c.flushTLS(out)
		return
	}
	if len(c.wq) > 0 && len(out) > 0 {
		c.wq = append(c.wq, out...)
		out = nil
	}
	if len(c.wq) > 0 {
		rest, ok := c.write(c.wq)
		if !ok {
			c.failed = true
			c.close()
			return
		}
		if len(rest) == 0 {
			c.wq = nil
		} else {
			c.wq = rest
		}
	} else if len(out) > 0 {
		rest, ok := c.write(out)
		if !ok {
			c.failed = true
			c.close()
			return
		}
		if len(rest) > 0 {
			c.wq = append([]byte(nil), rest...)
		}
	}
	c.next()
}

// write writes p until the socket takes no more; it returns what is left
// and false when the client is gone.
func (c *conn) write(p []byte) ([]byte, bool) {
	n, err := eventloop.Write(c.fd, p)
	return p[n:], err == nil
}

// flushTLS is flush over TLS: the records waiting, then out's, encrypted
// after them (c.wq is a view of the tls.Conn's buffer).
func (c *conn) flushTLS(out []byte) {
	var err error
	if len(c.wq) > 0 {
		c.wq, err = c.tls.Flush(&c.st.tls, c.fd)
	}
	if err == nil && len(out) > 0 {
		c.wq, err = c.tls.Write(&c.st.tls, c.fd, out)
	}
	if err != nil {
		c.failed = true
		c.close()
		return
	}
	c.next()
}

// next sets the interest and the timer for what the connection waits for.
func (c *conn) next() {
	if c.closed {
		return
	}
	s := c.st.s
	switch {
	case len(c.wq) > 0:
		c.setInterest(eventloop.Writable)
		if c.timing != timeWrite {
			c.setTimer(timeWrite, s.o.WriteTimeout)
		}
	case c.more && !c.waiting && !c.closeAfter && !c.handAfter:
		// Requests read and not served for the answers' bound.
		c.more = false
		pend := c.pend // the connection's own memory
		c.pend = nil
		c.serveBytes(pend)
	case c.closeAfter:
		c.close()
	case c.handAfter:
		c.handOver()
	case c.waiting:
		// The client's going (its FIN, or an error) ends the request's
		// context, as net/http's does; what it sends is read aside.
		if len(c.pend) >= MaxHead {
			c.setInterest(unix.EPOLLRDHUP)
		} else {
			c.setInterest(readInterest)
		}
		c.setTimer(timeNone, 0)
	case len(c.pend) > 0:
		c.setInterest(readInterest)
		if c.timing != timeHead {
			c.setTimer(timeHead, s.o.HeaderTimeout)
		}
		c.readHeld()
	default:
		c.setInterest(readInterest)
		// timeHead here: no request yet (a TLS client's first read may
		// come up empty), and the head's timer runs from the start.
		if c.timing != timeIdle && c.timing != timeHead {
			c.slot.IdleAt(c.st.l.Now())
			c.setTimer(timeIdle, s.o.IdleTimeout)
		}
		if s.front.Shutting() {
			c.close()
			return
		}
		c.readHeld()
	}
}

// readHeld reads again, on the loop after this turn, when the tls.Conn
// may hold requests the socket's readiness will not tell of (read reads
// on by itself while it runs).
func (c *conn) readHeld() {
	if c.tls != nil && c.tls.More() && !c.inRead {
		c.st.l.Post(func() {
			if !c.closed && c.reading() {
				c.read()
			}
		})
	}
}

func (c *conn) setInterest(ev uint32) {
	if ev != c.interest {
		if err := c.st.l.Modify(c.fd, ev); err != nil {
			c.close()
			return
		}
		c.interest = ev
	}
}

func (c *conn) setTimer(t timing, d time.Duration) {
	c.timing = t
	if t == timeNone {
		c.timer.Stop()
		return
	}
	c.timer.Reset(d)
}

// timedOut closes the connection: a head, the next request or the
// client's reading took too long.
func (c *conn) timedOut() {
	if !c.closed && c.timing != timeNone {
		c.close()
	}
}

// evict closes the connection for a newcomer if no request has begun on
// it since it went idle (the Cap's choice, posted to the loop: one may
// have begun meanwhile).
func (c *conn) evict() {
	if !c.closed && !c.waiting && len(c.pend) == 0 && len(c.wq) == 0 {
		c.close()
		return
	}
	c.slot.Spared()
}

// quiesce is Shutdown's: an idle connection closes now, a busy one after
// its answer.
func (c *conn) quiesce() {
	if c.waiting || len(c.wq) > 0 {
		c.closeAfter, c.handAfter = true, false
		return
	}
	c.close()
}

// close closes the connection (a waiting request's context ends); over
// TLS after its close_notify, one try, unless records wait or a write
// failed.
func (c *conn) close() {
	if c.closed {
		return
	}
	if c.tls != nil && !c.failed && len(c.wq) == 0 {
		c.tls.CloseNotify(&c.st.tls, c.fd)
	}
	c.forget()
	_ = unix.Close(c.fd)
	c.slot.Release()
}

// forget takes the connection off its loop.
func (c *conn) forget() {
	c.closed = true
	c.timer.Stop()
	if c.cancel != nil {
		c.cancel()
	}
	_ = c.st.l.Delete(c.fd)
	delete(c.st.conns, c)
	c.st.s.front.Closed()
	c.pend, c.wq = nil, nil
}

// handOver gives the connection, with the bytes read and not served, to
// Fallback, which serves it from then on.
func (c *conn) handOver() {
	pre := c.pend
	c.forget()
	nc, err := eventloop.Conn(c.fd)
	if err != nil {
		c.st.s.logger.Warn("HTTP loop could not hand a connection to net/http", "err", err)
		c.slot.Release()
		return
	}
	var hc net.Conn = &prefixConn{Conn: nc, pre: pre}
	if c.tls != nil { // the same tls.Conn, over nc now, after what the loop decrypted
		hc = &prefixConn{Conn: c.tls.Resume(nc), pre: pre, state: c.tlsState}
	}
	if c.slot != nil {
		c.slot.SetEvict(func() { _ = nc.Close() })
		hc = conncap.NewConn(hc, c.slot)
	}
	c.st.s.hand.push(hc)
}
