//go:build linux

package eventloop

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestAddrString(t *testing.T) {
	for _, tc := range []struct {
		sa   unix.Sockaddr
		want string
	}{
		{&unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: 8080}, "127.0.0.1:8080"},
		{&unix.SockaddrInet6{Addr: [16]byte{15: 1}, Port: 443}, "[::1]:443"},
		{&unix.SockaddrInet6{Addr: [16]byte{10: 0xff, 11: 0xff, 12: 10, 15: 7}, Port: 1}, "10.0.0.7:1"}, // v4-mapped
		{&unix.SockaddrUnix{Name: "/tmp/s"}, ""},
	} {
		if got := AddrString(tc.sa); got != tc.want {
			t.Errorf("AddrString(%v) = %q, want %q", tc.sa, got, tc.want)
		}
	}
}

// A burst of accept failures logs one line.
func TestAcceptLogOncePerSecond(t *testing.T) {
	var buf bytes.Buffer
	a := AcceptLog{Logger: slog.New(slog.NewTextHandler(&buf, nil)), What: "gRPC"}
	for range 100 {
		a.Failed(errors.New("too many open files"))
	}
	if n := strings.Count(buf.String(), "accept failed; the gRPC loops pause accepting"); n != 1 {
		t.Errorf("%d lines for a burst of 100 failures, want 1:\n%s", n, buf.String())
	}
}
