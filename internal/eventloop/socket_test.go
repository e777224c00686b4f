//go:build linux

package eventloop

import (
	"testing"

	"golang.org/x/sys/unix"
)

// Write writes what the socket takes and says how much; a full socket is
// not an error, a closed peer is.
func TestWrite(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	if n, err := Write(fds[0], []byte("hello")); n != 5 || err != nil {
		t.Fatalf("a short write: %d, %v", n, err)
	}
	big := make([]byte, 8<<20) // more than a socket buffer holds
	n, err := Write(fds[0], big)
	if err != nil || n == 0 || n >= len(big) {
		t.Fatalf("a write past the socket's buffer: %d of %d, %v; want part of it and no error", n, len(big), err)
	}
	unix.Close(fds[1])
	if _, err := Write(fds[0], []byte("x")); err == nil {
		t.Fatal("a write to a closed peer reported no error")
	}
}
