//go:build linux

package loopgrpc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2/hpack"
	"golang.org/x/sys/unix"

	"github.com/fluxgate/fluxgate/internal/eventloop"
	"github.com/fluxgate/fluxgate/internal/h2"
	"github.com/fluxgate/fluxgate/internal/looptls"
)

// Server serves a listener on event loops (see the package doc).
type Server struct {
	o      Options
	logger *slog.Logger
	h2     *h2.Server
	group  *eventloop.Group
	front  *eventloop.Front
	loops  []*loopState
	local  net.Addr

	calls     sync.WaitGroup // goroutines of calls (waiting answers, Fallback's)
	acceptLog eventloop.AcceptLog
	next      atomic.Uint32 // the loop the next TLS connection goes to, round robin

	mu    sync.Mutex
	shut  bool         // guarded by mu: Shutdown began
	tlsLn net.Listener // guarded by mu: ServeTLS's listener, which Shutdown closes
}

// loopState is one loop's: its connections and scratch buffers, touched
// only on the loop.
type loopState struct {
	s      *Server
	l      *eventloop.Loop
	conns  map[*conn]struct{}
	in     []byte              // reads land here; a connection keeps only a frame not yet whole
	msg    []byte              // a unary answer's message is built here
	fields []hpack.HeaderField // an answer's header fields are gathered here
	waited waitedAnswers       // answers of calls that waited, coming back (waited.go)
	// answerWaitedFn is answerWaited as a func, made once: a method
	// value made at each Post would be an allocation a batch.
	answerWaitedFn func()
	tls            looptls.Buffers // TLS clients' (tls.go)
}

// readSize is a loop's read buffer, and a connection's for a frame not
// yet whole: the Session takes frames of at most 16 KiB.
const readSize = 2 * (16<<10 + 9)

// maxOut is the most bytes of frames a connection holds for a client
// that does not read them before the loop stops reading the client.
const maxOut = 256 << 10

// New returns a Server; on other systems than Linux, ErrUnsupported.
func New(o Options) (*Server, error) {
	if o.Unary == nil || o.Fallback == nil {
		return nil, errors.New("loopgrpc: Unary and Fallback are needed")
	}
	if o.MaxRecvMsgSize <= 0 {
		o.MaxRecvMsgSize = 4 << 20
	}
	if o.PrefaceTimeout <= 0 {
		o.PrefaceTimeout = 10 * time.Second
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 2 * time.Minute
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 30 * time.Second
	}
	if o.MaxConnectionAgeGrace <= 0 {
		o.MaxConnectionAgeGrace = 30 * time.Second
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	hs := o.H2
	if hs == nil {
		hs = &h2.Server{}
	}
	s := &Server{o: o, logger: logger, acceptLog: eventloop.AcceptLog{Logger: logger, What: "gRPC"}, h2: hs}
	group, err := eventloop.New(eventloop.Options{Loops: o.Loops, NoSpareP: true, OnPanic: func(p any) {
		logger.Error("gRPC event loop recovered a panic", "panic", p)
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
		st := &loopState{s: s, l: l, conns: map[*conn]struct{}{}}
		st.answerWaitedFn = st.answerWaited
		s.loops = append(s.loops, st)
	}
	return s, nil
}

// Serve serves ln until Shutdown, then returns nil. ln stays open: the
// caller closes it.
func (s *Server) Serve(ln *net.TCPListener) error {
	s.local = ln.Addr()
	shut, err := s.front.Start(ln, s.accepted)
	if err != nil {
		return fmt.Errorf("loopgrpc: %w", err)
	}
	if !shut {
		s.front.Wait()
	}
	return nil
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
	if err := l.Add(fd, eventloop.Readable, c.onEvent); err != nil {
		s.front.Refuse(fd)
		return
	}
	c.registered, c.interest = true, eventloop.Readable
	if s.o.Cap != nil {
		c.slot = s.o.Cap.Add(func() { l.Post(c.evict) })
	}
	st.conns[c] = struct{}{}
	s.front.Opened()
	c.ss = s.h2.NewSession(c)
	if a := s.o.MaxConnectionAge; a > 0 {
		c.age = l.NewTimer(c.aged)
		c.age.Reset(a)
	}
	c.flush()
}

// Shutdown stops accepting, sends GOAWAY on every connection, lets the
// calls in flight finish (a connection closes after its last), and waits
// for them until ctx ends; it then closes what is left (the calls still
// running see their context end) and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.shut = true
	if s.tlsLn != nil {
		_ = s.tlsLn.Close() // handshakes in progress end; ServeTLS's accepting too
	}
	s.mu.Unlock()
	serving, err := s.front.Shutdown(ctx,
		func(l *eventloop.Loop) {
			for c := range s.loops[l.Index()].conns {
				c.goAway()
			}
		},
		func(l *eventloop.Loop) {
			for c := range s.loops[l.Index()].conns {
				c.close()
			}
		})
	if !serving {
		return err
	}
	done := make(chan struct{})
	go func() { s.calls.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		if err == nil {
			err = ctx.Err()
		}
	}
	return err
}
