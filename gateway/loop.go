//go:build linux

package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fluxgate/fluxgate/internal/eventloop"
	"github.com/fluxgate/fluxgate/internal/h2"
	"github.com/fluxgate/fluxgate/internal/looptls"
)

// The loop engine (gateway.engine loop, Linux) serves the requests the
// lean engine serves itself, with the lean engine's semantics, on event
// loops (package eventloop) instead of a goroutine a connection: each
// loop reads a socket once per readiness event and serves many sockets a
// wait, where Go's poller reads until EAGAIN and parks and wakes a
// goroutine for each wait; idle connections to targets are watched by
// epoll, so that a byte or a close from the target closes them at once.
// A connection idle since before the loop's last wait, which that wait
// did not report (eventloop's Reported), is reused as it is; any other
// is peeked at first (as the lean pool peeks at every one): a request
// may take a connection in the very iteration its target's bytes
// arrived, before the loop is told.
//
// What the loop does not serve itself it hands to the lean engine (a
// LeanServer the LoopServer owns), connection and bytes read, before
// anything is written to the client: a head outside http1's subset, a
// body that is chunked or over leanMaxBody, a route the lean engine
// hands to the fast engine, a route to a group with upstream TLS. The
// lean engine serves such a connection from then on (and hands on what
// it does not serve itself, as it always does). A check at the control
// point is decided on the loop unless it would wait (client.Gate.TryAdmit:
// a scheduler's queue, Redis, a remote Checker); that one runs on a
// goroutine, and the request resumes on its loop with the decision.
//
// A connection lives on the loop that accepted it (over TLS, the loop it
// was moved to after its handshake: looptls.go), and so do the
// connections to targets it uses: each loop has its own pool of each
// target (loopPool).

// LoopServer is the loop engine's server. Serve it on a *net.TCPListener,
// or after ServeTLSWith on a TLS listener; Shutdown lets requests in
// flight finish.
type LoopServer struct {
	g      *Gateway
	logger *slog.Logger
	lean   *LeanServer // serves the connections handed over
	h2     *h2.Server  // HTTP/2's limits when the loops serve it (gateway.http2.server loop), else nil

	group  *eventloop.Group
	loops  []*loopState // by loop index
	accept *eventloop.Acceptor

	tls   bool          // ServeTLSWith: Serve takes a listener of handshaken *tls.Conn
	tlsLn net.Listener  // guarded by mu: that listener, once serving
	next  atomic.Uint32 // the loop the next TLS connection goes to, round

	mu      sync.Mutex
	conns   int           // guarded by mu: connections on the loops
	served  chan struct{} // closed when Serve is to return
	ready   chan struct{} // closed when Serve has registered the listener on the loops, or failed to
	serving bool          // guarded by mu
	shut    bool          // guarded by mu: Shutdown was called

	idleTimeout time.Duration // leanIdleTimeout; tests shorten it
	sndBuf      int           // SO_SNDBUF of client sockets, when > 0 (tests)
	upSndBuf    int           // SO_SNDBUF of sockets to targets, when > 0 (tests)

	// maxQueued is the most bytes of an answer a connection held for a
	// client that did not read them yet (tests; see loopConn.send).
	maxQueued int
	// peeks counts the idle target connections peeked at before reuse
	// (tests; see loopPool.get).
	peeks atomic.Int64

	acceptMu     sync.Mutex
	acceptLogged time.Time // guarded by acceptMu: when acceptFailed last logged
	acceptFails  int       // guarded by acceptMu: failures since
}

// loopState is what one loop owns: its connections and its pools.
type loopState struct {
	s     *LoopServer
	l     *eventloop.Loop
	conns map[*loopConn]struct{}
	h2s   map[*loopH2]struct{} // HTTP/2 connections (looph2.go)
	// streams are HTTP/2 streams' loopConns kept for the next (recycle).
	streams []*loopConn
	// h2In is the read buffer of the loop's HTTP/2 connections (looph2.go):
	// each reads into it and keeps only a frame not yet whole.
	h2In  []byte
	pools map[string]*loopPool // by target address
	limit int                  // connections open to one target from this loop
	// bufs are read buffers of leanBufStart bytes given back by
	// connections that went idle, for the next that reads (at most
	// loopSpareBufs kept): a connection waiting for its next request
	// holds no read buffer, as nginx frees an idle keep-alive
	// connection's header buffer.
	bufs [][]byte
	// tls are the buffers of the loop's TLS clients (looptls.go).
	tls looptls.Buffers
}

// loopSpareBufs bounds a loop's spare read buffers (1 MiB).
const loopSpareBufs = 256

// takeBuf returns a read buffer of leanBufStart bytes.
func (st *loopState) takeBuf() []byte {
	if n := len(st.bufs); n > 0 {
		b := st.bufs[n-1]
		st.bufs[n-1] = nil
		st.bufs = st.bufs[:n-1]
		return b
	}
	return make([]byte, leanBufStart)
}

// giveBuf keeps b, a read buffer no longer used, for takeBuf; one of
// another size, or past the bound, is left to the collector.
func (st *loopState) giveBuf(b []byte) {
	if len(b) == leanBufStart && len(st.bufs) < loopSpareBufs {
		st.bufs = append(st.bufs, b)
	}
}

// NewLoopServer returns the loop engine's server for g, on loops event
// loops (0: GOMAXPROCS). A nil logger means silent.
func (g *Gateway) NewLoopServer(logger *slog.Logger, loops int) (*LoopServer, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &LoopServer{g: g, logger: logger, lean: g.NewLeanServer(logger), served: make(chan struct{}), ready: make(chan struct{}), idleTimeout: leanIdleTimeout}
	group, err := eventloop.New(eventloop.Options{Loops: loops, OnPanic: func(p any) {
		logger.Error("gateway event loop recovered a panic", "panic", p)
	}})
	if err != nil {
		return nil, err
	}
	s.group = group
	n := len(group.Loops())
	for _, l := range group.Loops() {
		// The bound of the lean pools (leanMaxConns a target) is shared
		// by the loops, each its part: a loop never waits for another's
		// connection, nor counts with another.
		s.loops = append(s.loops, &loopState{s: s, l: l, conns: map[*loopConn]struct{}{}, h2s: map[*loopH2]struct{}{},
			pools: map[string]*loopPool{}, limit: max(1, (leanMaxConns+n-1)/n)})
	}
	return s, nil
}

// Serve serves the connections of ln until Shutdown (it then returns
// nil). ln must be a *net.TCPListener, or after ServeTLSWith a listener
// of handshaken *tls.Conn built on looptls.Wrap (which Shutdown closes);
// a TCP listener stays open (the caller closes it).
func (s *LoopServer) Serve(ln net.Listener) error {
	tl, ok := ln.(*net.TCPListener)
	if !ok && !s.tls {
		return fmt.Errorf("gateway: the loop engine serves a TCP listener, not %T", ln)
	}
	s.mu.Lock()
	switch {
	case s.serving:
		s.mu.Unlock()
		return errors.New("gateway: loop server already serving")
	case s.shut:
		s.mu.Unlock()
		return nil
	}
	s.serving = true
	s.mu.Unlock()
	s.lean.startEngines()
	s.group.Start()
	s.g.loopMu.Lock()
	if s.g.loopServers == nil {
		s.g.loopServers = map[*LoopServer]struct{}{}
	}
	s.g.loopServers[s] = struct{}{}
	s.g.loopMu.Unlock()
	if s.tls {
		// The listener accepts under the cap (conncap.Cap.Listener) and
		// hands out connections with the handshake done.
		return s.serveTLS(ln)
	}
	// gateway.max_connections: a loop takes a slot before each accept and
	// stops accepting while there is none (conncap.Cap.Admit).
	acc, err := s.group.AcceptGated(tl, s.accepted, func(err error) { s.acceptFailed(time.Now(), err) },
		eventloop.Gate{Admit: s.g.conns.Admit, Unadmit: s.g.conns.Give, Full: s.g.conns.Full})
	if acc != nil {
		s.g.conns.SetResume(acc.Resume)
	}
	s.mu.Lock()
	s.accept = acc
	s.mu.Unlock()
	close(s.ready) // Shutdown waits for it once serving
	if err != nil {
		return err
	}
	<-s.served
	return nil
}

// acceptLogEvery bounds the log of failed accepts: each loop pauses
// after each failure (out of descriptors: eventloop's acceptPause), and
// a line a pause on every loop would flood the log when it is least
// welcome. The lean engine's backoff logs about once a second too.
const acceptLogEvery = time.Second

// acceptFailed is told, on a loop, an accept error that pauses that
// loop's accepting; it logs at most once per acceptLogEvery, with the
// number of failures since the last line.
func (s *LoopServer) acceptFailed(now time.Time, err error) {
	s.acceptMu.Lock()
	s.acceptFails++
	if !s.acceptLogged.IsZero() && now.Sub(s.acceptLogged) < acceptLogEvery {
		s.acceptMu.Unlock()
		return
	}
	n := s.acceptFails
	s.acceptLogged, s.acceptFails = now, 0
	s.acceptMu.Unlock()
	s.logger.Warn("gateway accept failed; the loops pause accepting and retry", "err", err, "failures", n, "pause", eventloop.AcceptPause)
}

// accepted takes a new connection on loop l.
func (s *LoopServer) accepted(l *eventloop.Loop, fd int, sa unix.Sockaddr) {
	st := s.loops[l.Index()]
	if s.lean.shutting.Load() {
		_ = unix.Close(fd)
		s.g.conns.Give()
		return
	}
	if s.sndBuf > 0 {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, s.sndBuf)
	}
	c := newLoopConn(st, fd, sockaddrTCP(sa))
	if err := l.Add(fd, eventloop.Readable, c.onClient); err != nil {
		_ = unix.Close(fd)
		s.g.conns.Give()
		return
	}
	c.slot = s.g.conns.Add(func() { l.Post(c.evict) })
	c.interest = eventloop.Readable
	st.conns[c] = struct{}{}
	s.mu.Lock()
	s.conns++
	s.mu.Unlock()
	c.startRead()
}

// forget drops a connection closed or handed over.
func (st *loopState) forget(c *loopConn) {
	delete(st.conns, c)
	st.s.mu.Lock()
	st.s.conns--
	st.s.mu.Unlock()
}

func sockaddrTCP(sa unix.Sockaddr) *net.TCPAddr {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return net.TCPAddrFromAddrPort(netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)))
	case *unix.SockaddrInet6:
		return net.TCPAddrFromAddrPort(netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), uint16(a.Port)))
	}
	return &net.TCPAddr{}
}

// onLoops runs f on every loop and waits for it (not from a loop).
func (s *LoopServer) onLoops(f func(st *loopState)) {
	s.group.Each(func(l *eventloop.Loop) { f(s.loops[l.Index()]) })
}

// Shutdown stops serving: idle connections close at once, connections
// with a request in flight once it is answered, and the connections
// handed to the lean engine as it shuts down. It returns when all are
// closed, or with ctx's error when ctx ends first (connections still open
// are closed then). The caller closes the listener.
func (s *LoopServer) Shutdown(ctx context.Context) error {
	s.lean.shutting.Store(true)
	s.mu.Lock()
	serving, again := s.serving, s.shut
	s.shut = true
	s.mu.Unlock()
	if again { // the loops are stopped: only the lean engine's connections may be left
		return s.lean.Shutdown(ctx)
	}
	if serving {
		<-s.ready // Serve registers the listener (or fails) without waiting on anything
	}
	s.mu.Lock()
	acc, tlsLn := s.accept, s.tlsLn
	s.mu.Unlock()
	if acc != nil {
		acc.Close()
	}
	if tlsLn != nil {
		_ = tlsLn.Close() // handshakes in progress end; Serve's accepting too
	}
	leanDone := make(chan error, 1)
	go func() { leanDone <- s.lean.Shutdown(ctx) }()
	var err error
	if serving && s.group != nil && (acc != nil || tlsLn != nil) {
		s.onLoops(func(st *loopState) { st.closeIdle() })
		tick := time.NewTicker(50 * time.Millisecond)
	wait:
		for {
			s.mu.Lock()
			n := s.conns
			s.mu.Unlock()
			if n == 0 {
				break
			}
			select {
			case <-tick.C:
				s.onLoops(func(st *loopState) { st.closeIdle() })
			case <-ctx.Done():
				s.onLoops(func(st *loopState) {
					for c := range st.conns {
						c.abort()
					}
					for h := range st.h2s {
						h.close()
					}
				})
				err = ctx.Err()
				break wait
			}
		}
		tick.Stop()
		s.onLoops(func(st *loopState) {
			for _, p := range st.pools {
				p.closeIdle()
			}
		})
	}
	s.g.loopMu.Lock()
	delete(s.g.loopServers, s)
	s.g.loopMu.Unlock()
	s.group.Close()
	s.mu.Lock()
	select {
	case <-s.served:
	default:
		close(s.served)
	}
	s.mu.Unlock()
	return errors.Join(err, <-leanDone)
}

// loopsKeepOnly tells the loop servers serving g that an Update kept
// only the targets in keep: see keepOnly.
func (g *Gateway) loopsKeepOnly(keep map[fastKey]bool) {
	g.loopMu.Lock()
	defer g.loopMu.Unlock()
	for s := range g.loopServers {
		s.keepOnly(keep)
	}
}

// keepOnly closes, on each loop, the idle connections to the targets not
// in keep (the plain ones: the loop serves no others) and forgets their
// pools, as the lean engine's pools are closed on Update. Connections in
// use close when their answer is relayed (the lean engine's age out in
// their forgotten pool): a forgotten pool holds none that Shutdown would
// not find. It does not wait for the loops.
func (s *LoopServer) keepOnly(keep map[fastKey]bool) {
	for _, st := range s.loops {
		st.l.Post(func() { // refused: the loops stopped, their pools closed
			for addr, p := range st.pools {
				if !keep[fastKey{addr: addr}] {
					p.retired = true
					p.closeIdle()
					delete(st.pools, addr)
				}
			}
		})
	}
}

// closeIdle closes the loop's connections waiting for a request.
func (st *loopState) closeIdle() {
	for c := range st.conns {
		if c.idle() {
			c.close()
		}
	}
	for h := range st.h2s { // GOAWAY: no new streams, closed once those open are done
		h.goAway()
	}
}

// pool is the loop's pool of connections to addr.
func (st *loopState) pool(addr string) *loopPool {
	p := st.pools[addr]
	if p == nil {
		p = newLoopPool(st, addr)
		st.pools[addr] = p
	}
	return p
}

// loopsSupported reports whether this system runs the loop engine.
const loopsSupported = true

// serveWith readies the loop engine for cfg: over TLS (tls), HTTP/1.1 on
// the loops and HTTP/2 on gateway.http2.server, as lean; with h2c, prior
// knowledge on the loops and Upgrade: h2c to srv through lean; with
// http2.server loop, HTTP/2 clients on the loops too.
func (s *LoopServer) serveWith(g *Gateway, cfg Config, srv *http.Server, tls bool, logger *slog.Logger) {
	if tls {
		s.ServeTLSWith(srv)
		s.ServeHTTP2With(http2Server(g, cfg, logger))
	}
	if cfg.H2C {
		s.lean.ServeH2CWith(srv)
	}
	if cfg.http2Server() == HTTP2ServerLoop {
		s.h2 = g.NewHTTP2Server(logger)
	}
}
