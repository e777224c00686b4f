package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
	"golang.org/x/net/http2"

	"github.com/fluxgate/fluxgate/internal/conncap"
	"github.com/fluxgate/fluxgate/internal/h2"
	"github.com/fluxgate/fluxgate/internal/http1"
	"github.com/fluxgate/fluxgate/metricnames"
)

// The lean engine serves the plain HTTP/1.1 requests most clients send
// itself, with the least work a request: it reads the head strictly
// (package http1), forwards it to a pooled upstream connection as it came
// but for the hop-by-hop fields, Forwarded and X-Forwarded-*, and relays the
// target's response head and body as they come, framing untouched. The
// fast engine parses and writes every message twice (into fasthttp's
// structures and out again, on each side); that work was most of the
// gateway's CPU a request beyond nginx's (issue 20).
//
// A connection whose request the lean engine does not serve goes, with
// the bytes it has read, to the fast engine (LeanServer.full), which
// serves it from then on: a head outside http1's subset (HTTP/1.0,
// Expect, Upgrade, obs-fold, absolute-form, …), a body that is chunked
// or larger than leanMaxBody, and routes the fast engine hands on to
// net/http (HTTP/2 groups). Nothing is written to such a connection
// before the hand-over, so the client sees one server.
//
// The same routing, control point, canary split, breaker, balancing,
// retries and metrics as the other engines run on every request (the
// functions are shared). Request bodies up to leanMaxBody are read whole
// before the target is chosen, as nginx buffers them by default.

// leanMaxBody bounds the request body the lean engine reads itself.
const leanMaxBody = 64 << 10

// Timeouts of the lean engine's client connections: the head and idle
// ones as the fast engine's; a write to a client that does not read
// fails after leanWriteTimeout (nginx's send_timeout), so that such a
// client cannot hold its target's connection for good (on the fast
// engine too: clientConn.Write).
const (
	leanHeadTimeout  = 10 * time.Second // a request's head, from its first byte
	leanIdleTimeout  = 2 * time.Minute  // between requests
	leanWriteTimeout = time.Minute      // each write of an answer
)

// LeanServer is the lean engine's server. Serve it on a plain listener;
// Shutdown lets requests in flight finish.
type LeanServer struct {
	g      *Gateway
	logger *slog.Logger

	full    *fasthttp.Server // serves the connections handed over
	fconns  *connTracker
	handoff *handoffListener
	fullRun sync.Once
	fullErr chan error

	headTimeout  time.Duration // leanHeadTimeout; tests shorten it
	writeTimeout time.Duration // leanWriteTimeout; tests shorten it

	// On a TLS listener (ServeTLSWith): proto is "https" (X-Forwarded-Proto
	// and the scheme labels),
	// and the connections that negotiated HTTP/2 go to h2own, the
	// gateway's HTTP/2 server, or without it to h2 through h2conns.
	proto   string
	h2      *http.Server
	h2conns *handoffListener
	h2Run   sync.Once
	h2own   *h2.Server

	// On a plain listener with gateway.h2c (ServeH2CWith): a connection
	// that opens with the HTTP/2 client preface goes to h2own, or without
	// it to h2, and a request outside http1's subset (Upgrade: h2c among
	// them) to h2, whose handler serves h2c, instead of the fast engine.
	h2c bool

	shutting atomic.Bool
	mu       sync.Mutex
	conns    map[*leanConn]struct{} // guarded by mu
	active   sync.WaitGroup         // connections being served
}

// NewLeanServer returns the lean engine's server for g. A nil logger
// means silent.
func (g *Gateway) NewLeanServer(logger *slog.Logger) *LeanServer {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	full, fconns := g.newFastServer(slog.NewLogLogger(logger.Handler(), slog.LevelWarn))
	return &LeanServer{
		g: g, logger: logger, full: full, fconns: fconns,
		handoff: newHandoffListener(), fullErr: make(chan error, 1),
		conns: map[*leanConn]struct{}{}, headTimeout: leanHeadTimeout, writeTimeout: leanWriteTimeout,
		proto: "http",
	}
}

// ServeTLSWith readies s for a listener whose connections are *tls.Conn
// with the handshake done (certs.Reloader's Listener): requests are
// forwarded with X-Forwarded-Proto https, and a connection that
// negotiated HTTP/2 by ALPN goes to h2, the net/http engine, which serves
// it from then on (Shutdown stops h2 too). Call it before Serve.
func (s *LeanServer) ServeTLSWith(h2 *http.Server) {
	s.proto, s.h2, s.h2conns = "https", h2, newHandoffListener()
}

// ServeHTTP2With makes the connections that negotiated HTTP/2 go to srv,
// the gateway's own HTTP/2 server (gateway.http2.server lean), instead of
// the net/http engine; Shutdown stops it too. Call it after ServeTLSWith,
// before Serve.
func (s *LeanServer) ServeHTTP2With(srv *h2.Server) { s.h2own = srv }

// ServeH2CWith readies s for gateway.h2c on a plain listener: srv, the
// net/http engine with the h2c handler (frontend), serves the requests
// outside http1's subset, Upgrade: h2c included, as it does without the
// lean engine; a connection that opens with the HTTP/2 client preface
// (prior knowledge) goes, with the bytes read, to the HTTP/2 server set
// by ServeHTTP2With, or without one to srv. Shutdown stops srv too. Call
// it before Serve.
func (s *LeanServer) ServeH2CWith(srv *http.Server) {
	s.h2, s.h2conns, s.h2c = srv, newHandoffListener(), true
}

// Serve accepts connections on ln until ln is closed (it then returns
// nil) or Accept fails otherwise.
func (s *LeanServer) Serve(ln net.Listener) error {
	s.startEngines()
	ln = FastListener(ln)
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || s.shutting.Load() {
				return nil
			}
			if backoff = acceptBackoff(err, backoff, s.logger); backoff > 0 {
				continue
			}
			return err
		}
		backoff = 0
		lc := s.track(c.(*clientConn))
		if lc == nil {
			_ = c.Close() // shutting down
			continue
		}
		go s.serve(lc)
	}
}

// startEngines starts the engines s hands connections to.
func (s *LeanServer) startEngines() {
	s.fullRun.Do(func() { go func() { s.fullErr <- s.full.Serve(s.handoff) }() })
	if s.h2 != nil && (s.h2own == nil || s.h2c) {
		s.h2Run.Do(func() { go func() { _ = s.h2.Serve(s.h2conns) }() })
	}
}

// serveFrom serves c, a connection another engine (the loop engine)
// hands over, starting with pre, the bytes it read from c and did not
// serve: as if the lean engine had read them itself. It reports false
// when shutting down (c is then to be closed).
func (s *LeanServer) serveFrom(c *clientConn, pre []byte) bool {
	s.startEngines()
	lc := s.track(c)
	if lc == nil {
		return false
	}
	lc.buf = make([]byte, max(leanBufStart, len(pre)))
	lc.w = copy(lc.buf, pre)
	go s.serve(lc)
	return true
}

// acceptBackoff waits after an Accept error that passes (out of file
// descriptors and the like), as net/http does: twice the last wait, from
// 5 ms to a second; it returns the wait, or 0 for an error that does not
// pass (the caller returns it).
func acceptBackoff(err error, last time.Duration, logger *slog.Logger) time.Duration {
	var ne net.Error
	if !(errors.As(err, &ne) && ne.Timeout() || isTemporaryAccept(err)) {
		return 0
	}
	d := min(max(2*last, 5*time.Millisecond), time.Second)
	logger.Warn("gateway accept failed; retrying", "err", err, "in", d)
	time.Sleep(d)
	return d
}

// isTemporaryAccept reports whether an Accept error passes (EMFILE,
// ENFILE, ECONNABORTED): the listener stays usable.
func isTemporaryAccept(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// track registers a new connection, or returns nil when shutting down.
func (s *LeanServer) track(c *clientConn) *leanConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutting.Load() {
		return nil
	}
	lc := &leanConn{s: s, c: c, slot: slotOf(c)}
	s.conns[lc] = struct{}{}
	s.active.Add(1)
	return lc
}

func (s *LeanServer) forget(lc *leanConn) {
	s.mu.Lock()
	delete(s.conns, lc)
	s.mu.Unlock()
	s.active.Done()
}

// Shutdown stops serving: idle connections close at once, connections
// with a request in flight once it is answered, and the connections
// handed to the fast engine the same way. It returns when all are closed,
// or with ctx's error when ctx ends first; the caller closes the
// listener. Connections still open then are closed.
func (s *LeanServer) Shutdown(ctx context.Context) error {
	s.shutting.Store(true)
	_ = s.handoff.Close()
	s.closeIdle()
	fullDone := make(chan error, 1)
	go func() { fullDone <- s.full.ShutdownWithContext(ctx) }()
	if s.h2conns != nil {
		_ = s.h2conns.Close()
	}
	h2Done := make(chan error, 1)
	go func() {
		var errs []error
		if s.h2own != nil {
			errs = append(errs, s.h2own.Shutdown(ctx))
		}
		if s.h2 != nil && (s.h2own == nil || s.h2c) {
			err := s.h2.Shutdown(ctx)
			if err != nil {
				_ = s.h2.Close()
			}
			errs = append(errs, err)
		}
		h2Done <- errors.Join(errs...)
	}()
	leanDone := make(chan struct{})
	go func() { s.active.Wait(); close(leanDone) }()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-leanDone:
			err := <-fullDone
			if err != nil {
				s.fconns.closeAll()
			}
			return errors.Join(err, <-h2Done)
		case <-tick.C:
			s.closeIdle() // connections that were busy the last time
		case <-ctx.Done():
			s.closeAll()
			s.fconns.closeAll()
			return ctx.Err()
		}
	}
}

// closeIdle ends the connections waiting for a request: their read
// fails at once (a deadline passed) and each closes itself on its own
// goroutine. Closing them here, under mu, could wait: over TLS, Close
// writes a close_notify, for up to 5 s to a client that does not read,
// and Shutdown would wait that long for each, past its context. One that
// starts reading meanwhile sees the shutdown itself (leanConn.waitHead).
func (s *LeanServer) closeIdle() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for lc := range s.conns {
		if lc.idle.Load() {
			_ = lc.c.SetReadDeadline(aLongTimeAgo)
		}
	}
}

// aLongTimeAgo is a deadline that has passed.
var aLongTimeAgo = time.Unix(1, 0)

// closeAll cuts every connection (closeNow), a TLS one whose close_notify
// waits on a client that does not read included.
func (s *LeanServer) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for lc := range s.conns {
		_ = closeNow(lc.c)
	}
}

// handOver gives c, with the bytes read from it and not yet served, to
// the fast engine. It reports false when the server is shutting down
// (c is then to be closed). reason labels the hand-over's count.
// With gateway.h2c, a request outside the subset goes to the net/http
// engine instead, whose h2c handler serves Upgrade: h2c.
func (s *LeanServer) handOver(c *clientConn, unread []byte, reason string) bool {
	c.writeTimeout, c.writeAt = s.writeTimeout, time.Time{}
	hc := &handedConn{clientConn: c, pre: append([]byte(nil), unread...)}
	s.g.metrics.handovers.WithLabelValues(reason).Inc()
	if s.h2c && reason == metricnames.HandoverRequest {
		return s.h2conns.push(hc)
	}
	if tc, ok := c.Conn.(tlsConn); ok {
		return s.handoff.push(&tlsHandedConn{handedConn: hc, tc: tc})
	}
	return s.handoff.push(hc)
}

// tlsConn is a client connection over TLS: a *tls.Conn, or an HTTP/2
// stream of one the loop engine hands over (tlsStreamConn).
type tlsConn interface {
	net.Conn
	ConnectionState() tls.ConnectionState
}

// handOverH2 gives a TLS connection that negotiated HTTP/2 to the
// gateway's HTTP/2 server, or to the net/http engine, before anything is
// read from it. It reports false when there is none, or when shutting
// down (c is then to be closed).
func (s *LeanServer) handOverH2(tc *tls.Conn) bool {
	if s.h2 == nil || s.shutting.Load() {
		return false
	}
	s.g.metrics.handovers.WithLabelValues(metricnames.HandoverHTTP2).Inc()
	if s.h2own != nil {
		go func() { _ = s.h2own.ServeConn(tc) }() // it closes tc
		return true
	}
	return s.h2conns.push(tc)
}

// handOverH2C gives a plain connection that opened with the HTTP/2
// client preface, with the bytes read from it (unread), to the gateway's
// HTTP/2 server, or to the net/http engine's h2c handler. It reports
// false when shutting down (c is then to be closed).
func (s *LeanServer) handOverH2C(c *clientConn, unread []byte) bool {
	if s.shutting.Load() {
		return false
	}
	hc := &handedConn{clientConn: c, pre: append([]byte(nil), unread...)}
	s.g.metrics.handovers.WithLabelValues(metricnames.HandoverH2C).Inc()
	if s.h2own != nil {
		c.writeTimeout = 0                        // the HTTP/2 server sets its own write deadlines
		go func() { _ = s.h2own.ServeConn(hc) }() // it closes hc
		return true
	}
	c.writeTimeout, c.writeAt = s.writeTimeout, time.Time{}
	return s.h2conns.push(hc)
}

// tlsHandedConn is a handed-over TLS connection. Its Handshake and
// ConnectionState tell the fast engine the connection is TLS
// (RequestCtx.IsTLS), so that it forwards X-Forwarded-Proto https and its
// net/http adapter sets Request.TLS.
type tlsHandedConn struct {
	*handedConn
	tc tlsConn
}

func (c *tlsHandedConn) Handshake() error { return nil } // done by the listener

func (c *tlsHandedConn) ConnectionState() tls.ConnectionState { return c.tc.ConnectionState() }

// closeNow closes c at once. Over TLS it closes the socket under it, so
// without the close_notify alert tls.Conn.Close writes first, with a
// deadline of 5 s: a client that does not read would hold the closing
// goroutine (and Shutdown, or a lock) that long. For connections cut
// short (a write that failed, which leaves a tls.Conn broken for good; a
// shutdown out of time), where the alert is of no use.
func closeNow(c net.Conn) error {
	switch u := c.(type) {
	case *tlsHandedConn:
		c = u.tc
	case *handedConn:
		c = u.clientConn.Conn
	case *clientConn:
		c = u.Conn
	}
	if tc, ok := c.(*tls.Conn); ok {
		return tc.NetConn().Close()
	}
	return c.Close()
}

// handedConn is a client connection the lean engine handed to the fast
// engine: its reads return first what the lean engine had read.
type handedConn struct {
	*clientConn
	pre []byte
}

func (h *handedConn) Read(p []byte) (int, error) {
	if len(h.pre) > 0 {
		n := copy(p, h.pre)
		h.pre = h.pre[n:]
		return n, nil
	}
	return h.clientConn.Read(p)
}

// handoffListener is the listener the fast engine serves: Accept returns
// the connections the lean engine handed over.
type handoffListener struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newHandoffListener() *handoffListener {
	return &handoffListener{conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *handoffListener) push(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.closed:
		return false
	}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return handoffAddr{} }

type handoffAddr struct{}

func (handoffAddr) Network() string { return "handoff" }
func (handoffAddr) String() string  { return "lean-engine" }

// leanConn is one client connection of the lean engine, served by one
// goroutine.
type leanConn struct {
	s    *LeanServer
	c    *clientConn
	idle atomic.Bool   // waiting for the first byte of a request
	slot *conncap.Slot // under gateway.max_connections; nil without the cap

	buf    []byte // read buffer: buf[r:w] is read and not yet served
	r, w   int
	reqEnd int // where the current request, head and body, ends in buf
	req    http1.Request
	out    []byte      // the head being written, to a target or the client
	hdr    leanHeaders // response fields set before the target answers (decision, rejection)
	body   []byte      // the request's body, when it has one

	// pending is the end of the answer, written once the request's
	// bookkeeping is done (flush); up is the target's connection it
	// comes from, released then to pool (reused if upReusable).
	labels     map[string]string // the flow labels, remade when over flow.KeepLabels (see leanLabels)
	target     string            // the request target as in labels, a part of their copy of the head (leanLabels)
	fl         proxied           // the current request's flow (serveLean)
	pending    []byte
	up         *leanUpConn
	pool       *leanPool
	upReusable bool

	// ended is the clock's reading when serveLean ended the request,
	// flushed the one after its answer's last write (flush), each for
	// the stamps that follow with no wait between; zero: none.
	ended, flushed time.Time

	status      int  // of the answer to the current request
	wrote       bool // something of the answer to the current request went out
	writeFailed bool // a write to the client failed (see closeNow)

	// The client's read deadline: its length and when it was set.
	deadlineFor time.Duration
	deadlineAt  time.Time
	// When the client's write deadline was set (writeTimeout after it).
	writeAt time.Time
}

// The read buffer starts small and grows, up to a head's bound and a
// body; an idle connection keeps at most leanKeepBuf of it, and of its
// write buffer.
const (
	leanBufStart = 4 << 10
	leanKeepBuf  = 16 << 10
)

// serve serves lc's requests until the connection ends or is handed over.
func (s *LeanServer) serve(lc *leanConn) {
	handed := false
	defer func() {
		switch {
		case handed:
		case lc.writeFailed:
			_ = closeNow(lc.c)
		default:
			_ = lc.c.Close()
		}
		s.forget(lc)
	}()
	if tc, ok := lc.c.Conn.(*tls.Conn); ok && tc.ConnectionState().NegotiatedProtocol == "h2" {
		handed = s.handOverH2(tc)
		return
	}
	if lc.buf == nil { // else bytes handed over (serveFrom)
		lc.buf = make([]byte, leanBufStart)
	}
	if s.h2c {
		h2, err := lc.priorKnowledge()
		switch {
		case err != nil:
			return
		case h2:
			handed = s.handOverH2C(lc.c, lc.buf[lc.r:lc.w])
			return
		}
	}
	for {
		handover, err := lc.waitHead()
		if err != nil {
			lc.flush() // an answer to a body that failed
			return
		}
		if handover != "" {
			handed = s.handOver(lc.c, lc.buf[lc.r:lc.w], handover)
			return
		}
		switch lc.serveOne() {
		case leanClose:
			return
		case leanHandOver:
			handed = s.handOver(lc.c, lc.buf[lc.r:lc.w], metricnames.HandoverRoute)
			return
		}
		if s.shutting.Load() {
			return
		}
	}
}

// priorKnowledge reads the connection's first bytes until they differ
// from the HTTP/2 client preface, reporting false (they stay in buf for
// waitHead), or are the whole preface, reporting true. It waits for the
// first byte as for an idle connection's next request, and for the rest
// of the preface up to the head timeout; it fails as waitHead does.
func (lc *leanConn) priorKnowledge() (bool, error) {
	const preface = http2.ClientPreface
	lc.idle.Store(true)
	lc.slot.Idle()
	if lc.s.shutting.Load() {
		return false, net.ErrClosed
	}
	lc.idleDeadline()
	for {
		got := lc.buf[lc.r:lc.w]
		n := min(len(got), len(preface))
		switch {
		case string(got[:n]) != preface[:n]:
			return false, nil
		case n == len(preface):
			return true, nil
		case n > 0 && lc.idle.Load():
			lc.idle.Store(false)
			lc.slot.Busy()
			lc.setDeadline(time.Now(), lc.s.headTimeout)
		}
		if err := lc.fill(len(preface)); err != nil {
			return false, err
		}
	}
}

// waitHead reads until buf[r:] starts with a whole request head in
// http1's subset, with its body, or bytes that are not: then it returns
// why the connection is to be handed over (a metricnames.Handover*
// reason). It fails when the connection ends, a deadline passes or the
// server is shutting down while the connection is idle; a connection
// that ends mid-head is handed over too.
func (lc *leanConn) waitHead() (handover string, err error) {
	if lc.r == lc.w {
		lc.r, lc.w = 0, 0
		// A connection that carried a large request does not keep its
		// memory while it waits for the next.
		if len(lc.buf) > leanKeepBuf {
			lc.buf = make([]byte, leanBufStart)
		}
		if cap(lc.out) > leanKeepBuf {
			lc.out = nil
		}
		// One reading for the idle stamps: flush's, when the answer's
		// last write was just taken.
		now := lc.flushed
		if now.IsZero() {
			now = time.Now()
		}
		lc.idle.Store(true)
		lc.slot.IdleAt(now)
		if lc.s.shutting.Load() {
			return "", net.ErrClosed
		}
		lc.idleDeadlineAt(now)
	}
	lc.flushed = time.Time{}
	// The head timeout starts with the first read of a head not yet
	// whole, a pipelined one's too: the deadline set before it ran while
	// the request before it was served.
	started := false
	for {
		if lc.r < lc.w {
			if lc.idle.Load() {
				lc.idle.Store(false)
				lc.slot.Busy()
			}
			n, err := http1.ParseRequest(lc.buf[lc.r:lc.w], headerBuffer, &lc.req)
			switch {
			case err != nil:
				return metricnames.HandoverRequest, nil
			case n > 0:
				return lc.readBody(n)
			}
			if !started {
				started = true
				lc.setDeadline(time.Now(), lc.s.headTimeout)
			}
		}
		if err := lc.fill(headerBuffer); err != nil {
			switch {
			case errors.Is(err, errLeanFull):
				return metricnames.HandoverRequest, nil // the fast engine answers 431
			case lc.r < lc.w && errors.Is(err, io.EOF):
				// The client ended its side mid-head: the fast engine
				// reads the same end and answers 400, as net/http does.
				return metricnames.HandoverRequest, nil
			}
			return "", err
		}
	}
}

// idleDeadline bounds the wait for the next request by leanIdleTimeout.
// A deadline of that kind set less than leanDeadlineSlack ago is kept:
// on a busy connection most requests then cost no timer update.
func (lc *leanConn) idleDeadline() { lc.idleDeadlineAt(time.Now()) }

// idleDeadlineAt is idleDeadline at now, the caller's reading of the
// clock with no wait since.
func (lc *leanConn) idleDeadlineAt(now time.Time) {
	if lc.deadlineFor == leanIdleTimeout && now.Sub(lc.deadlineAt) < leanDeadlineSlack {
		return
	}
	lc.setDeadline(now, leanIdleTimeout)
}

// setDeadline sets the client's read deadline d after now.
func (lc *leanConn) setDeadline(now time.Time, d time.Duration) {
	_ = lc.c.SetReadDeadline(now.Add(d))
	lc.deadlineFor, lc.deadlineAt = d, now
}

// errLeanFull: the read buffer reached its bound.
var errLeanFull = errors.New("gateway: lean read buffer full")

// fill reads more into buf, moving the unread bytes to its start or
// growing it (up to limit bytes unread) when it is full.
func (lc *leanConn) fill(limit int) error {
	if lc.w == len(lc.buf) {
		unread := lc.w - lc.r
		switch {
		case lc.r > 0 && unread < len(lc.buf)/2:
			copy(lc.buf, lc.buf[lc.r:lc.w])
		case unread >= limit:
			return errLeanFull
		default:
			nb := make([]byte, min(2*len(lc.buf), limit+leanBufStart))
			copy(nb, lc.buf[lc.r:lc.w])
			lc.buf = nb
		}
		lc.r, lc.w = 0, unread
	}
	n, err := lc.c.Read(lc.buf[lc.w:])
	lc.w += n
	if n > 0 {
		return nil
	}
	if err == nil {
		err = errors.New("gateway: empty read")
	}
	return err
}

// readBody makes sure the body of the head of length n at buf[r:] is
// read whole, up to leanMaxBody, and sets lc.body. It returns
// HandoverBody for a body the lean engine leaves to the fast one
// (chunked, or too large), and an error when the client's body fails:
// then the client has been answered and the connection is to close.
func (lc *leanConn) readBody(n int) (handover string, err error) {
	req := &lc.req
	lc.body = nil
	if req.Chunked || req.ContentLength > leanMaxBody {
		return metricnames.HandoverBody, nil
	}
	if req.ContentLength <= 0 {
		lc.reqEnd = lc.r + n
		return "", nil
	}
	need := n + int(req.ContentLength)
	if lc.w-lc.r < need {
		lc.setDeadline(time.Now(), lc.s.g.opts.BodyReadTimeout)
		for lc.w-lc.r < need {
			if err := lc.fill(need); err != nil {
				// The head is in: answer as the other engines do (408 when
				// the client stalled, 400 otherwise).
				lc.hdr.reset()
				clientFault(leanResponder{lc: lc, close: true}, err)
				return "", err
			}
		}
		// Reading may have moved the head, which req views: read it again
		// where it is now (it parsed before; it parses the same).
		if _, err := http1.ParseRequest(lc.buf[lc.r:lc.w], headerBuffer, req); err != nil {
			return "", err
		}
	}
	lc.reqEnd = lc.r + need
	lc.body = lc.buf[lc.r+n : lc.reqEnd]
	return "", nil
}

// Outcomes of serveOne.
type leanNext int

const (
	leanKeep     leanNext = iota // serve the next request
	leanClose                    // close the connection
	leanHandOver                 // hand buf[r:] over to the fast engine
)

// serveOne serves the request whose head (and body) starts buf[r:] and
// ends at reqEnd.
func (lc *leanConn) serveOne() (next leanNext) {
	s := lc.s.g.state.Load()
	rt := s.route(leanRequest{lc})
	if rt != nil && !rt.fast {
		return leanHandOver
	}
	lc.wrote = false
	defer func() {
		if p := recover(); p != nil {
			lc.s.logger.Error("gateway handler panicked", "panic", p, "uri", string(lc.req.Target))
			lc.pending = nil
			lc.upReusable = false
			next = leanClose
			if !lc.wrote { // answer 500, as the fast engine does
				lc.hdr.reset()
				leanResponder{lc: lc, close: true}.json(http.StatusInternalServerError, map[string]string{"error": "internal"})
			}
		}
		if lc.flush() {
			next = leanClose
		}
		lc.r = lc.reqEnd
	}()
	lc.hdr.reset()
	if rt == nil {
		leanResponder{lc: lc, close: lc.req.Close}.json(404, map[string]string{"error": "no_route"})
	} else if !lc.s.g.serveLean(lc, rt) {
		return leanClose
	}
	if lc.req.Close {
		return leanClose
	}
	return leanKeep
}
