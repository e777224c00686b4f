//go:build unix

package gateway

import (
	"crypto/tls"
	"errors"
	"net"
	"syscall"
	"time"
)

// idleReadable reports whether an idle connection to a target has
// anything to read: bytes the target sent after its answer ended, or its
// end (the target closed it). Either way it cannot carry the next
// request: bytes read after it would be taken for that request's answer
// (another client's, maybe), and a closed one would fail it. One
// non-blocking peek at the socket (recv MSG_PEEK), as net/http's
// transport and nginx's keepalive module watch their idle connections;
// over TLS, a look at the bytes the TLS connection holds first.
func idleReadable(c net.Conn) bool {
	for {
		switch u := c.(type) {
		case *upstreamConn:
			c = u.Conn
			continue
		case tlsUpstreamConn:
			c = u.Conn
			continue
		case *tls.Conn:
			if tlsBuffered(u) {
				return true
			}
			c = u.NetConn()
			continue
		}
		break
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	var buf [1]byte
	readable := false
	err = raw.Read(func(fd uintptr) bool {
		_, _, rerr := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		// Anything but "nothing yet": data (n > 0), the end (n == 0), an
		// error such as a reset.
		readable = !errors.Is(rerr, syscall.EAGAIN) && !errors.Is(rerr, syscall.EINTR)
		return true // never wait
	})
	return readable || err != nil
}

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
