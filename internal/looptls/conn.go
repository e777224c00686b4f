//go:build linux

package looptls

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fluxgate/fluxgate/internal/conncap"
)

// errWouldBlock is what a Conn's Read returns on a loop when it holds no
// ciphertext: a temporary net.Error, which tls.Conn returns without
// keeping (a partial record stays in its buffer).
var errWouldBlock error = wouldBlock{}

type wouldBlock struct{}

func (wouldBlock) Error() string   { return "looptls: read would block" }
func (wouldBlock) Timeout() bool   { return true }
func (wouldBlock) Temporary() bool { return true }

// Conn is the connection a client's *tls.Conn is built on (Wrap). It has
// two modes. With its net.Conn set (the handshake on its goroutine, and
// after Resume), reads and writes go to that connection, after the bytes
// the loop left: ciphertext read from the socket and not yet read by the
// tls.Conn, written by it and not yet sent. Once detached, a loop owns
// the socket: Read returns what the loop read, then the socket's end, or
// would block; Write appends to a buffer the loop sends. Only one
// goroutine uses it at a time (the handshake's, then the loop, then
// maybe another goroutine); the moves between them are synchronised by
// their hand-offs.
type Conn struct {
	net.Conn      // nil while on a loop
	local, remote net.Addr

	in   []byte // in[inR:] is ciphertext read, not yet read by the tls.Conn
	inR  int
	end  error  // on a loop: the socket's end (io.EOF) or error, once in is read
	out  []byte // out[outR:] is ciphertext written, not yet sent
	outR int
}

var _ net.Conn = (*Conn)(nil)

// Wrap is the wrap of a TLS listener whose connections move to loops
// (certs.Reloader.WrappedListener): it returns a *Conn over c.
func Wrap(c net.Conn) net.Conn {
	return &Conn{Conn: c, local: c.LocalAddr(), remote: c.RemoteAddr()}
}

// Read reads ciphertext: what the loop read first, then the connection
// under w, or on a loop the socket's end or errWouldBlock.
func (w *Conn) Read(p []byte) (int, error) {
	if w.inR < len(w.in) {
		n := copy(p, w.in[w.inR:])
		w.inR += n
		if w.inR == len(w.in) {
			w.in, w.inR = nil, 0
		}
		return n, nil
	}
	switch {
	case w.Conn != nil:
		return w.Conn.Read(p)
	case w.end != nil:
		return 0, w.end
	}
	return 0, errWouldBlock
}

// Write writes ciphertext: on a loop into the buffer the loop sends,
// otherwise to the connection under w after what the loop left.
func (w *Conn) Write(p []byte) (int, error) {
	if w.Conn == nil {
		w.out = append(w.out, p...)
		return len(p), nil
	}
	if w.outR < len(w.out) {
		if _, err := w.Conn.Write(w.out[w.outR:]); err != nil {
			return 0, err
		}
		w.out, w.outR = nil, 0
	}
	return w.Conn.Write(p)
}

// Close closes the connection under w; on a loop the loop closes the
// socket.
func (w *Conn) Close() error {
	if w.Conn == nil {
		return nil
	}
	return w.Conn.Close()
}

// LocalAddr is the address the connection was accepted on.
func (w *Conn) LocalAddr() net.Addr { return w.local }

// RemoteAddr is the client's address.
func (w *Conn) RemoteAddr() net.Addr { return w.remote }

// SetDeadline sets the connection's under w; on a loop it does nothing
// (the loop keeps its own timers), as SetReadDeadline and
// SetWriteDeadline.
func (w *Conn) SetDeadline(t time.Time) error {
	if w.Conn == nil {
		return nil
	}
	return w.Conn.SetDeadline(t)
}

// SetReadDeadline is SetDeadline for reads.
func (w *Conn) SetReadDeadline(t time.Time) error {
	if w.Conn == nil {
		return nil
	}
	return w.Conn.SetReadDeadline(t)
}

// SetWriteDeadline is SetDeadline for writes.
func (w *Conn) SetWriteDeadline(t time.Time) error {
	if w.Conn == nil {
		return nil
	}
	return w.Conn.SetWriteDeadline(t)
}

// NetConn is the connection under w (nil on a loop), through which
// conncap.SlotOf finds the connection's slot and an HTTP/2 server
// closes it.
func (w *Conn) NetConn() net.Conn { return w.Conn }

// Handshaken returns c, a connection a TLS listener built on Wrap
// accepted, as its *tls.Conn and the Conn under it; an error names what c
// is otherwise.
func Handshaken(c net.Conn) (*tls.Conn, *Conn, error) {
	if tc, ok := c.(*tls.Conn); ok {
		if w, ok := tc.NetConn().(*Conn); ok {
			return tc, w, nil
		}
	}
	return nil, nil, fmt.Errorf("looptls: a %T not built on looptls.Wrap", c)
}

// Take detaches w (Detach) and returns the TLS of tc, built on it, for
// the loop that takes the socket, with the socket and its slot.
func Take(tc *tls.Conn, w *Conn) (*TLS, int, *conncap.Slot, error) {
	fd, slot, err := w.Detach()
	if err != nil {
		return nil, -1, nil, err
	}
	return New(tc, w), fd, slot, nil
}

// Detach takes the socket from under w for a loop: it returns a
// duplicate of its descriptor, non-blocking, and the slot the connection
// holds under a conncap.Cap (nil without one), and closes the connection
// accepted (Go's poller forgets it) without giving the slot back. On
// error w is as it was.
func (w *Conn) Detach() (int, *conncap.Slot, error) {
	raw := w.Conn
	var slot *conncap.Slot
	if cc, ok := raw.(*conncap.Conn); ok {
		raw, slot = cc.Conn, cc.Slot()
	}
	sc, ok := raw.(syscall.Conn)
	if !ok {
		return -1, nil, fmt.Errorf("looptls: a %T has no descriptor for a loop", raw)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, nil, err
	}
	fd := -1
	var dupErr error
	if err := rc.Control(func(s uintptr) {
		fd, dupErr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return -1, nil, err
	}
	if dupErr != nil {
		return -1, nil, os.NewSyscallError("fcntl", dupErr)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		_ = unix.Close(fd)
		return -1, nil, os.NewSyscallError("setnonblock", err)
	}
	_ = raw.Close()
	w.Conn = nil
	return fd, slot, nil
}
