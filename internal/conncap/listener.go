package conncap

import (
	"net"
	"net/http"
	"sync"
)

// Listener returns ln under the cap: Accept accepts a connection and then
// waits, with it, for a slot, making room as the Cap does (so the server
// holds the cap and that one connection at most); the connections it
// returns are *Conn and give their slot back when closed. Closing the
// listener ends a wait with net.ErrClosed.
func (k *Cap) Listener(ln net.Listener) net.Listener {
	return &listener{Listener: ln, k: k, done: make(chan struct{})}
}

type listener struct {
	net.Listener
	k    *Cap
	done chan struct{}
	once sync.Once
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	// A connection is accepted before its slot is taken: a full listener
	// then knows a client waits (and makes room for it) and does not
	// accept another until it has a slot.
	if !l.k.Take() && !l.k.wait(l.done) {
		_ = c.Close()
		return nil, net.ErrClosed
	}
	return NewConn(c, l.k.Add(func() { _ = c.Close() })), nil
}

func (l *listener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// Conn is a connection under a cap: Close gives its slot back.
type Conn struct {
	net.Conn
	slot *Slot
}

// NewConn returns c holding slot s (a connection handed over keeps the
// slot it had).
func NewConn(c net.Conn, s *Slot) *Conn { return &Conn{Conn: c, slot: s} }

// Slot is the connection's slot.
func (c *Conn) Slot() *Slot { return c.slot }

// Close closes the connection and gives its slot back.
func (c *Conn) Close() error {
	err := c.Conn.Close()
	c.slot.Release()
	return err
}

// SlotOf is the slot of c: a *Conn, or a connection that wraps one, which
// SlotOf finds through NetConn (a *tls.Conn) or unwrap (nil: none), the
// connection a caller's own type wraps or nil. It is nil when c has none.
func SlotOf(c net.Conn, unwrap func(net.Conn) net.Conn) *Slot {
	for c != nil {
		switch x := c.(type) {
		case *Conn:
			return x.slot
		case interface{ NetConn() net.Conn }: // *tls.Conn
			c = x.NetConn()
		default:
			if unwrap == nil {
				return nil
			}
			c = unwrap(c)
		}
	}
	return nil
}

// Track marks the slot busy or idle by an http.Server's connection state:
// a connection with a request in flight, or hijacked, is busy; between
// requests it is idle.
func (s *Slot) Track(st http.ConnState) {
	switch st {
	case http.StateActive, http.StateHijacked:
		s.Busy()
	case http.StateIdle:
		s.Idle()
	}
}

// TrackConnState is an http.Server ConnState hook for connections from a
// Listener, plain or under TLS.
func TrackConnState(c net.Conn, st http.ConnState) { SlotOf(c, nil).Track(st) }
