//go:build linux

package eventloop

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// AcceptFunc takes a connection accepted on loop l: fd is non-blocking,
// close-on-exec, with TCP_NODELAY set (as Go sets it), and sa is the
// peer's address. The connection is the function's to register and
// close.
type AcceptFunc func(l *Loop, fd int, sa unix.Sockaddr)

// Acceptor accepts connections on a listener's socket on every loop of a
// group (see Group.Accept).
type Acceptor struct {
	g    *Group
	fd   int
	fn   AcceptFunc
	once sync.Once
	// onError is told the accept errors that pause accepting (out of
	// descriptors and the like); nil: not told.
	onError func(error)
	closed  atomic.Bool
	gate    Gate   // AcceptGated's; zero: none
	paused  []bool // paused[i] is loop i's own: it stopped watching the socket as the gate was shut
}

// Gate bounds the connections an Acceptor takes (AcceptGated).
type Gate struct {
	// Admit takes a place for the connection a loop is about to accept,
	// or reports false when there is none: the loop then stops watching
	// the socket until Acceptor.Resume. Called on the loop.
	Admit func() bool
	// Unadmit gives back a place Admit took for a connection that did not
	// come (another loop took it, an error).
	Unadmit func()
	// Full, when set, is called on the loop when Admit refused while a
	// client waits in the listen backlog (to make room, say).
	Full func()
}

// acceptBatch bounds the connections one readiness event accepts: a
// loop serves its connections between batches.
const acceptBatch = 16

// AcceptPause is how long a loop stops accepting after EMFILE and the
// like (the listener stays readable: level-triggered, it would spin).
const AcceptPause = 100 * time.Millisecond

// Accept takes a duplicate of ln's socket (ln stays open and is the
// caller's to close) and accepts its connections on every loop of g,
// calling fn on the loop that accepted each: the socket is registered on
// each loop with EPOLLEXCLUSIVE, so a new connection wakes one loop that
// waits, not all. onError (nil: none) is told errors that pause accepting
// for a moment. Close the Acceptor to stop. The group must be started.
func (g *Group) Accept(ln *net.TCPListener, fn AcceptFunc, onError func(error)) (*Acceptor, error) {
	return g.AcceptGated(ln, fn, onError, Gate{})
}

// AcceptGated is Accept with a bound: before each accept a loop asks
// gate.Admit for a place (a zero Gate admits all); while there is none it
// stops watching the socket (clients wait in the listen backlog) until
// Resume. fn owns the place of each connection it gets.
func (g *Group) AcceptGated(ln *net.TCPListener, fn AcceptFunc, onError func(error), gate Gate) (*Acceptor, error) {
	f, err := ln.File()
	if err != nil {
		return nil, fmt.Errorf("eventloop: listener's socket: %w", err)
	}
	fd, err := unix.Dup(int(f.Fd()))
	_ = f.Close()
	if err != nil {
		return nil, fmt.Errorf("eventloop: dup: %w", err)
	}
	unix.CloseOnExec(fd)
	if err := unix.SetNonblock(fd, true); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("eventloop: listener non-blocking: %w", err)
	}
	a := &Acceptor{g: g, fd: fd, fn: fn, onError: onError, gate: gate, paused: make([]bool, len(g.loops))}
	errs := make(chan error, len(g.loops))
	for _, l := range g.loops {
		if !l.Post(func() { errs <- a.watch(l) }) {
			errs <- ErrClosed
		}
	}
	var all []error
	for range g.loops {
		if err := <-errs; err != nil {
			all = append(all, err)
		}
	}
	if len(all) > 0 {
		a.Close()
		return nil, errors.Join(all...)
	}
	return a, nil
}

// watch registers the socket on l, exclusively.
func (a *Acceptor) watch(l *Loop) error {
	l.gen++
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLEXCLUSIVE, Fd: int32(a.fd), Pad: l.gen}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, a.fd, &ev); err != nil {
		return fmt.Errorf("eventloop: watch listener: %w", err)
	}
	for a.fd >= len(l.handlers) {
		l.handlers = append(l.handlers, make([]slot, len(l.handlers)+64)...)
	}
	l.handlers[a.fd] = slot{h: func(uint32) { a.accept(l) }, gen: l.gen}
	return nil
}

// accept accepts up to acceptBatch connections on l.
func (a *Acceptor) accept(l *Loop) {
	for range acceptBatch {
		if a.gate.Admit != nil && !a.gate.Admit() {
			if l.Delete(a.fd) == nil {
				a.paused[l.index] = true
			}
			if a.gate.Full != nil && a.pending() {
				a.gate.Full()
			}
			return
		}
		fd, sa, err := unix.Accept4(a.fd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		if err != nil && a.gate.Unadmit != nil {
			a.gate.Unadmit()
		}
		switch {
		case err == nil:
		case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
			return
		case errors.Is(err, unix.ECONNABORTED), errors.Is(err, unix.EPERM), errors.Is(err, unix.EPROTO):
			continue // that connection only
		default:
			// Out of descriptors or memory: stop for a moment, as
			// net/http backs off.
			if a.onError != nil {
				a.onError(err)
			}
			if l.Delete(a.fd) == nil {
				t := l.NewTimer(func() {
					if !a.closed.Load() && !a.paused[l.index] {
						_ = a.watch(l)
					}
				})
				t.Reset(AcceptPause)
			}
			return
		}
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		a.fn(l, fd, sa)
	}
}

// pending reports whether a client waits in the listen backlog.
func (a *Acceptor) pending() bool {
	fds := []unix.PollFd{{Fd: int32(a.fd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, 0)
	return err == nil && n > 0 && fds[0].Revents&unix.POLLIN != 0
}

// Resume makes the loops that admit paused (AcceptGated) watch the
// socket again. Safe for concurrent use, from a loop too.
func (a *Acceptor) Resume() {
	for _, l := range a.g.loops {
		l.Post(func() {
			if a.paused[l.index] && !a.closed.Load() {
				a.paused[l.index] = false
				_ = a.watch(l)
			}
		})
	}
}

// Close stops accepting on every loop and closes the duplicate socket.
// Connections accepted stay. Not to be called from a loop.
func (a *Acceptor) Close() {
	a.once.Do(func() {
		a.closed.Store(true)
		if !a.g.closed.Load() {
			var wg sync.WaitGroup
			for _, l := range a.g.loops {
				wg.Add(1)
				if !l.Post(func() {
					defer wg.Done()
					_ = l.Delete(a.fd)
				}) {
					wg.Done() // the loop is stopped
				}
			}
			wg.Wait()
		}
		_ = unix.Close(a.fd)
	})
}

// AddrString is an accepted connection's address (AcceptFunc's sa) as
// net.Addr.String writes a TCP address ("" for another kind).
func AddrString(sa unix.Sockaddr) string {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)).String()
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), uint16(a.Port)).String()
	}
	return ""
}

// AcceptLog logs the accept errors that pause a group's accepting (out of
// descriptors) to Logger, at most once a second: each loop fails again
// after every pause, and a line a pause would flood the log when it is
// least welcome. Its Failed is an Acceptor's onError; safe for
// concurrent use.
type AcceptLog struct {
	Logger *slog.Logger
	What   string // the loops', for the message: "HTTP", "gRPC"
	last   atomic.Int64
}

// Failed logs err unless a failure was logged within the second.
func (a *AcceptLog) Failed(err error) {
	now := time.Now().UnixNano()
	if last := a.last.Load(); now-last < int64(time.Second) || !a.last.CompareAndSwap(last, now) {
		return
	}
	a.Logger.Warn("accept failed; the "+a.What+" loops pause accepting and retry", "err", err, "pause", AcceptPause)
}
