//go:build linux

package eventloop

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Front is what a server on a group's loops does around its own
// connections: it accepts a listener's on every loop under a Gate, counts
// those open, and at shutdown stops accepting, lets the server wind its
// connections down, waits for them and stops the group. The server keeps
// its connections and their state; it tells the Front of each one it
// opens (Opened) and closes (Closed).
type Front struct {
	g         *Group
	gate      Gate
	setResume func(resume func()) // the gate's owner learns how to resume accepting; nil: none
	log       *AcceptLog

	shutting atomic.Bool
	open     atomic.Int64

	mu      sync.Mutex
	acc     *Acceptor // guarded by mu
	serving bool      // guarded by mu
	served  chan struct{}
}

// ErrServing is Start's error on a Front already started.
var ErrServing = errors.New("eventloop: already serving")

// NewFront returns the Front of a server on g: gate bounds its
// connections (zero: none), setResume (if set) is given the Acceptor's
// Resume once it runs (conncap.Cap.SetResume), log is told the accept
// failures.
func NewFront(g *Group, gate Gate, setResume func(func()), log *AcceptLog) *Front {
	return &Front{g: g, gate: gate, setResume: setResume, log: log, served: make(chan struct{})}
}

// Start starts the group and accepts ln's connections with accepted
// until Shutdown; shut: Shutdown came first (nothing started). ln stays
// open: the caller closes it. Wait then waits for Shutdown.
func (f *Front) Start(ln *net.TCPListener, accepted AcceptFunc) (shut bool, err error) {
	if shut, err := f.Begin(); shut || err != nil {
		return shut, err
	}
	acc, err := f.g.AcceptGated(ln, accepted, f.log.Failed, f.gate)
	if err != nil {
		f.g.Close()
		return false, err
	}
	if f.setResume != nil {
		f.setResume(acc.Resume)
	}
	f.mu.Lock()
	f.acc = acc
	f.mu.Unlock()
	return false, nil
}

// Begin starts the group for a server that accepts its connections
// itself (after a TLS handshake on a goroutine, for one) and posts each
// to a loop: Start without a listener. shut: Shutdown came first
// (nothing started). Wait then waits for Shutdown.
func (f *Front) Begin() (shut bool, err error) {
	f.mu.Lock()
	if f.serving {
		f.mu.Unlock()
		return false, ErrServing
	}
	f.serving = true
	f.mu.Unlock()
	if f.shutting.Load() {
		return true, nil
	}
	f.g.Start()
	return false, nil
}

// Wait returns once Shutdown has.
func (f *Front) Wait() { <-f.served }

// Shutting reports whether Shutdown has begun: a connection accepted
// now is to be refused (Refuse), an idle one closed.
func (f *Front) Shutting() bool { return f.shutting.Load() }

// Refuse closes fd, a connection accepted and not served, and gives its
// place under the gate back.
func (f *Front) Refuse(fd int) {
	_ = unix.Close(fd)
	if f.gate.Unadmit != nil {
		f.gate.Unadmit()
	}
}

// Opened counts a connection the server opened.
func (f *Front) Opened() { f.open.Add(1) }

// Closed counts one it closed.
func (f *Front) Closed() { f.open.Add(-1) }

// Open is the number of connections open.
func (f *Front) Open() int64 { return f.open.Load() }

// Shutdown stops accepting, runs quiesce on every loop (the server ends
// its idle connections and lets the busy ones finish), waits until none
// is open or ctx ends, then runs closeAll on every loop (what is left is
// cut) and stops the group. It returns ctx's error if it ended first;
// serving false: Start had not run (the group is closed, nothing run).
// Only the first call does anything.
func (f *Front) Shutdown(ctx context.Context, quiesce, closeAll func(l *Loop)) (serving bool, err error) {
	if f.shutting.Swap(true) {
		return false, nil
	}
	f.mu.Lock()
	acc, serving := f.acc, f.serving
	f.mu.Unlock()
	defer close(f.served)
	if !serving {
		f.g.Close()
		return false, nil
	}
	if acc != nil {
		acc.Close()
	}
	f.g.Each(quiesce)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for f.open.Load() > 0 && err == nil {
		select {
		case <-ctx.Done():
			err = ctx.Err()
		case <-tick.C:
		}
	}
	f.g.Each(closeAll)
	f.g.Close()
	return true, err
}
