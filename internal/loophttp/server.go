//go:build linux

package loophttp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fluxgate/fluxgate/internal/eventloop"
	"github.com/fluxgate/fluxgate/internal/looptls"
)

// readSize is a loop's read buffer: a read takes at most this much.
const readSize = 64 << 10

// Server serves a listener on event loops (see the package doc).
type Server struct {
	o      Options
	logger *slog.Logger
	group  *eventloop.Group
	loops  []*loopState
	hand   *handListener
	front  *eventloop.Front

	acceptLog eventloop.AcceptLog
	next      atomic.Uint32 // the loop the next TLS connection goes to, round robin

	mu    sync.Mutex
	shut  bool         // guarded by mu: Shutdown began
	tlsLn net.Listener // guarded by mu: ServeTLS's listener, which Shutdown closes
}

// loopState is one loop's: its connections and buffers, touched only on
// the loop.
type loopState struct {
	s     *Server
	l     *eventloop.Loop
	conns map[*conn]struct{}
	in    []byte // reads land here; a connection keeps only a partial head
	out   []byte // answers are formatted here; a connection keeps only what its socket did not take
	// header is the answer's header of a request answered on the loop,
	// cleared after each (a handler does not keep it past its return).
	header http.Header
	date   dateCache
	tls    looptls.Buffers // TLS clients' (tls.go)
}

// New returns a Server; on other systems than Linux, ErrUnsupported.
func New(o Options) (*Server, error) {
	if o.Handler == nil || o.Serves == nil || o.Fallback == nil {
		return nil, errors.New("loophttp: Handler, Serves and Fallback are needed")
	}
	if o.HeaderTimeout <= 0 {
		o.HeaderTimeout = 10 * time.Second
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 2 * time.Minute
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 30 * time.Second
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{o: o, logger: logger, acceptLog: eventloop.AcceptLog{Logger: logger, What: "HTTP"}, hand: newHandListener()}
	group, err := eventloop.New(eventloop.Options{Loops: o.Loops, NoSpareP: true, OnPanic: func(p any) {
		logger.Error("HTTP event loop recovered a panic", "panic", p)
	}})
	if err != nil {
		return nil, err
	}
	s.group = group
	var gate eventloop.Gate
	var setResume func(func())
	if k := o.Cap; k != nil {
		gate, setResume = eventloop.Gate{Admit: k.Admit, Unadmit: k.Give, Full: k.Full}, k.SetResume
	}
	s.front = eventloop.NewFront(group, gate, setResume, &s.acceptLog)
	for _, l := range group.Loops() {
		s.loops = append(s.loops, &loopState{s: s, l: l, conns: map[*conn]struct{}{}})
	}
	return s, nil
}

// Serve serves ln until Shutdown, then returns nil (or Fallback's error).
// ln stays open: the caller closes it.
func (s *Server) Serve(ln *net.TCPListener) error {
	s.hand.addr = ln.Addr()
	shut, err := s.front.Start(ln, s.accepted)
	switch {
	case shut:
		return http.ErrServerClosed
	case errors.Is(err, eventloop.ErrServing):
		return fmt.Errorf("loophttp: %w", err) // the first Serve goes on
	case err != nil: // Fallback was not started
		_ = s.hand.Close()
		return fmt.Errorf("loophttp: %w", err)
	}
	fallback := make(chan error, 1)
	go func() { fallback <- s.o.Fallback.Serve(s.hand) }()
	s.front.Wait()
	return serveErr(<-fallback)
}

// serveErr is Fallback.Serve's error, nil for the end of its listener.
func serveErr(err error) error {
	if errors.Is(err, http.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// accepted takes a new connection on loop l.
func (s *Server) accepted(l *eventloop.Loop, fd int, sa unix.Sockaddr) {
	st := s.loops[l.Index()]
	if s.front.Shutting() {
		s.front.Refuse(fd)
		return
	}
	c := &conn{st: st, fd: fd, remote: eventloop.AddrString(sa)}
	c.timer = l.NewTimer(c.timedOut)
	if err := l.Add(fd, readInterest, c.onEvent); err != nil {
		s.front.Refuse(fd)
		return
	}
	if s.o.Cap != nil {
		c.slot = s.o.Cap.Add(func() { l.Post(c.evict) })
	}
	c.interest = readInterest
	st.conns[c] = struct{}{}
	s.front.Opened()
	c.timer.Reset(s.o.HeaderTimeout) // the first request's head, from the connection's start
	c.timing = timeHead
}

// Shutdown stops accepting, closes idle connections, lets the answers in
// flight finish (a connection closes after its current answer), shuts
// Fallback down, and waits for all of it until ctx ends; it then closes
// what is left and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.shut = true
	if s.tlsLn != nil {
		_ = s.tlsLn.Close() // handshakes in progress end; ServeTLS's accepting too
	}
	s.mu.Unlock()
	fallbackDone := make(chan error, 1)
	go func() { fallbackDone <- s.o.Fallback.Shutdown(ctx) }()
	serving, err := s.front.Shutdown(ctx,
		func(l *eventloop.Loop) {
			for c := range s.loops[l.Index()].conns {
				c.quiesce()
			}
		},
		func(l *eventloop.Loop) {
			for c := range s.loops[l.Index()].conns {
				c.close()
			}
		})
	_ = s.hand.Close()
	if ferr := <-fallbackDone; serving && err == nil {
		err = ferr
	}
	return err
}

// serve calls the handler, recovering a panic as net/http does (the
// connection closes without an answer); it reports whether it answered.
func (s *Server) serve(w *response, r *http.Request) (ok bool) {
	defer func() {
		if p := recover(); p != nil {
			if err, ok := p.(error); !ok || !errors.Is(err, http.ErrAbortHandler) {
				s.logger.Error("HTTP handler panicked", "method", r.Method, "path", r.URL.Path, "panic", p)
			}
			ok = false
		}
	}()
	s.o.Handler.ServeHTTP(w, r)
	return true
}

// handListener is the listener Fallback serves: the connections the
// loops hand over.
type handListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newHandListener() *handListener {
	return &handListener{ch: make(chan net.Conn, 64), done: make(chan struct{})}
}

func (h *handListener) Accept() (net.Conn, error) {
	select {
	case c := <-h.ch:
		return c, nil
	case <-h.done:
		return nil, net.ErrClosed
	}
}

func (h *handListener) Close() error {
	h.once.Do(func() { close(h.done) })
	return nil
}

func (h *handListener) Addr() net.Addr { return h.addr }

// push hands c to Fallback without blocking the loop; c is closed if
// the listener is.
func (h *handListener) push(c net.Conn) {
	select {
	case h.ch <- c:
		return
	case <-h.done:
		_ = c.Close()
		return
	default:
	}
	go func() {
		select {
		case h.ch <- c:
		case <-h.done:
			_ = c.Close()
		}
	}()
}

// prefixConn reads pre before the socket: the bytes the loop read and did
// not serve (over TLS, decrypted; Conn is then the tls.Conn).
type prefixConn struct {
	net.Conn
	pre   []byte
	state *tls.ConnectionState // over TLS, the handshake's; nil: plain
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(p, c.pre)
		c.pre = c.pre[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}
