//go:build linux

package eventloop

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A Front accepts on its group's loops, refuses a second Start, and at
// Shutdown stops accepting, quiesces, waits for the connections the
// server counts and cuts what is left when ctx ends.
func TestFront(t *testing.T) {
	g, err := New(Options{Loops: 2, NoSpareP: true})
	if err != nil {
		t.Fatal(err)
	}
	f := NewFront(g, Gate{}, nil, &AcceptLog{Logger: slog.New(slog.DiscardHandler), What: "test"})
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var fds atomic.Int64
	accepted := func(l *Loop, fd int, _ unix.Sockaddr) {
		f.Opened()
		fds.Store(int64(fd))
	}
	if shut, err := f.Start(ln, accepted); shut || err != nil {
		t.Fatalf("Start: %v, %v", shut, err)
	}
	if _, err := f.Start(ln, accepted); !errors.Is(err, ErrServing) {
		t.Fatalf("a second Start: %v, want ErrServing", err)
	}
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for deadline := time.Now().Add(5 * time.Second); f.Open() != 1 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if f.Open() != 1 {
		t.Fatal("the connection was not accepted")
	}
	waited := make(chan struct{})
	go func() { f.Wait(); close(waited) }()
	var quiesced, cut atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	serving, err := f.Shutdown(ctx, func(*Loop) { quiesced.Add(1) }, func(*Loop) {
		if cut.Add(1) == 1 {
			_ = unix.Close(int(fds.Load()))
			f.Closed()
		}
	})
	if !serving || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown with a connection that stays: %v, %v; want the deadline", serving, err)
	}
	if quiesced.Load() != 2 || cut.Load() != 2 || f.Open() != 0 {
		t.Errorf("quiesce ran on %d loops, the cut on %d, %d open; want 2, 2, 0", quiesced.Load(), cut.Load(), f.Open())
	}
	<-waited
	if serving, err := f.Shutdown(context.Background(), nil, nil); serving || err != nil {
		t.Errorf("a second Shutdown: %v, %v; want nothing done", serving, err)
	}
}

// Shutdown before Start: Start does nothing and says so.
func TestFrontShutdownFirst(t *testing.T) {
	g, err := New(Options{Loops: 1, NoSpareP: true})
	if err != nil {
		t.Fatal(err)
	}
	f := NewFront(g, Gate{}, nil, &AcceptLog{Logger: slog.New(slog.DiscardHandler)})
	if serving, err := f.Shutdown(context.Background(), nil, nil); serving || err != nil {
		t.Fatalf("Shutdown: %v, %v", serving, err)
	}
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if shut, err := f.Start(ln, func(*Loop, int, unix.Sockaddr) {}); !shut || err != nil {
		t.Fatalf("Start after Shutdown: %v, %v; want shut", shut, err)
	}
}
