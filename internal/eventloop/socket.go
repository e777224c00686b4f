//go:build linux

package eventloop

import (
	"errors"
	"net"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// Write writes p to fd, a non-blocking socket, until all of it is written
// or the socket takes no more (EAGAIN, not an error here; EINTR is
// retried). It returns the bytes written and the error that stopped it
// otherwise: the peer is gone, for a socket.
func Write(fd int, p []byte) (int, error) {
	written := 0
	for written < len(p) {
		n, err := unix.Write(fd, p[written:])
		if n > 0 {
			written += n
			continue
		}
		switch {
		case errors.Is(err, unix.EINTR):
		case errors.Is(err, unix.EAGAIN), err == nil:
			return written, nil
		default:
			return written, err
		}
	}
	return written, nil
}

// Each runs f on every loop of g and waits until each has (f runs on
// none that stopped). Not to be called from a loop.
func (g *Group) Each(f func(l *Loop)) {
	var wg sync.WaitGroup
	for _, l := range g.loops {
		wg.Add(1)
		if !l.Post(func() {
			defer wg.Done()
			f(l)
		}) {
			wg.Done() // the loop is stopped
		}
	}
	wg.Wait()
}

// Conn hands fd, a connected socket no longer registered on a loop, to
// Go's poller: the net.Conn of a duplicate; fd itself is closed, even on
// error.
func Conn(fd int) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), "")
	defer func() { _ = f.Close() }()
	return net.FileConn(f)
}
