//go:build unix

package gateway

import (
	"crypto/tls"
	"errors"
	"net"
	"syscall"
	"time"
)

// peeker tells whether an idle connection to a target has anything to
// read: bytes the target sent after its answer ended, or its end (the
// target closed it). Either way it cannot carry the next request: bytes
// read after it would be taken for that request's answer (another
// client's, maybe), and a closed one would fail it. One non-blocking
// peek at the socket (recv MSG_PEEK), as net/http's transport and nginx's
// keepalive module watch their idle connections; over TLS, a look at the
// bytes the TLS connection holds first. Made once per connection, it
// peeks without allocating.
type peeker struct {
	raw      syscall.RawConn // nil: the connection has no socket to peek at
	tls      *tls.Conn
	readable bool
	buf      [1]byte
	fn       func(fd uintptr) // peek, bound once
}

func newPeeker(c net.Conn) *peeker {
	p := &peeker{}
	for {
		switch u := c.(type) {
		case *upstreamConn:
			c = u.Conn
			continue
		case tlsUpstreamConn:
			c = u.Conn
			continue
		case *tls.Conn:
			p.tls = u
			c = u.NetConn()
			continue
		}
		break
	}
	if sc, ok := c.(syscall.Conn); ok {
		p.raw, _ = sc.SyscallConn()
	}
	p.fn = p.peek
	return p
}

func (p *peeker) peek(fd uintptr) {
	_, _, err := syscall.Recvfrom(int(fd), p.buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	// Anything but "nothing yet": data, the end (no error), an error
	// such as a reset.
	p.readable = !errors.Is(err, syscall.EAGAIN) && !errors.Is(err, syscall.EINTR)
}

// idleReadable reports whether the idle connection has anything to read
// (see peeker); a connection it cannot look at is taken as unused.
func (p *peeker) idleReadable() bool {
	if p.tls != nil && tlsBuffered(p.tls) {
		return true
	}
	if p.raw == nil {
		return false
	}
	p.readable = false
	// Control, not Read: Read fails at once when the read deadline has
	// passed, and a pooled lean connection keeps the response-head
	// deadline of its last request (leanUpConn.armed). The peek never
	// waits, so it needs none of what Read adds.
	if p.raw.Control(p.fn) != nil {
		return true
	}
	return p.readable
}

// clearsDeadline reports whether idleReadable clears the connection's
// read deadline: over TLS, where it looks at the TLS buffer.
func (p *peeker) clearsDeadline() bool { return p.tls != nil }

// tlsBuffered reports whether c holds bytes read from its socket and not
// yet from it: a record read along with the one before. A read with a
// deadline passed returns them, or times out at once without touching
// the socket (Go's poller checks the deadline first); a timeout leaves a
// TLS connection usable. The caller discards c when this is true, so the
// byte taken does not matter.
func tlsBuffered(c *tls.Conn) bool {
	if c.SetReadDeadline(time.Unix(1, 0)) != nil {
		return true
	}
	var b [1]byte
	n, err := c.Read(b[:])
	if c.SetReadDeadline(time.Time{}) != nil {
		return true
	}
	return n > 0 || !isTimeout(err)
}
