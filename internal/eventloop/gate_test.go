//go:build linux

package eventloop

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A gated Acceptor takes no more connections than its Gate admits: a
// client past it waits in the backlog (Full is told it waits) until a
// place is given back and Resume called; places taken for connections
// that did not come are given back.
func TestAcceptGated(t *testing.T) {
	g := startGroup(t, 2)
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	const limit = 2
	var places, fulls atomic.Int64
	var mu sync.Mutex
	var fds []int // accepted
	var acc atomic.Pointer[Acceptor]
	gate := Gate{
		Admit: func() bool {
			for {
				n := places.Load()
				if n >= limit {
					// As its user does: look again a moment later, for
					// a client that came while the loop did not watch.
					time.AfterFunc(10*time.Millisecond, func() {
						if a := acc.Load(); a != nil {
							a.Resume()
						}
					})
					return false
				}
				if places.CompareAndSwap(n, n+1) {
					return true
				}
			}
		},
		Unadmit: func() { places.Add(-1) },
		Full:    func() { fulls.Add(1) },
	}
	a, err := g.AcceptGated(ln, func(_ *Loop, fd int, _ unix.Sockaddr) {
		mu.Lock()
		fds = append(fds, fd)
		mu.Unlock()
	}, nil, gate)
	if err != nil {
		t.Fatal(err)
	}
	acc.Store(a)
	defer a.Close()
	accepted := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(fds)
	}
	for range limit + 1 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	waitUntil(t, "the gate told a client waits", func() bool { return fulls.Load() > 0 })
	if n := accepted(); n != limit {
		t.Fatalf("%d connections accepted past a gate of %d", n, limit)
	}
	// One place given back: the waiting client is taken.
	mu.Lock()
	_ = unix.Close(fds[0])
	mu.Unlock()
	places.Add(-1)
	a.Resume()
	waitUntil(t, "the waiting client accepted", func() bool { return accepted() == limit+1 })
	if n := places.Load(); n != limit {
		t.Errorf("%d places taken for %d connections open", n, limit)
	}
	mu.Lock()
	for _, fd := range fds[1:] {
		_ = unix.Close(fd)
	}
	mu.Unlock()
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
	}
}
