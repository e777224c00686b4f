//go:build unix

package gateway

import (
	"crypto/tls"
	"errors"
	"net"
	"syscall"
)

// idleReadable reports whether an idle connection to a target has
// anything to read: bytes the target sent after its answer ended, or its
// end (the target closed it). Either way it cannot carry the next
// request: bytes read after it would be taken for that request's answer
// (another client's, maybe), and a closed one would fail it. One
// non-blocking peek at the socket (recv MSG_PEEK), as net/http's
// transport and nginx's keepalive module watch their idle connections.
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
