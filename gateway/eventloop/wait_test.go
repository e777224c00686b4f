//go:build linux

package eventloop

import (
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// notInGo is the runtime's count of goroutines in a system call (or cgo).
func notInGo() uint64 {
	s := []metrics.Sample{{Name: "/sched/goroutines/not-in-go:goroutines"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// Loops with nothing to do wait parked on Go's poller, not in a system
// call: a goroutine blocked in epoll_wait keeps its P, and loops that all
// wait so made the runtime hand their Ps to other threads over and over
// (Loop.wait). Loops blocked in epoll_wait would count in not-in-go for
// as long as they wait.
func TestWaitingLoopsAreNotInSystemCalls(t *testing.T) {
	const n = 4
	g := startGroup(t, n)
	for _, l := range g.Loops() {
		if l.rc == nil {
			t.Fatalf("loop %d: its epoll descriptor is not on Go's poller", l.Index())
		}
	}
	var wg sync.WaitGroup
	for _, l := range g.Loops() {
		wg.Add(1)
		l.Post(wg.Done) // each loop has waited, run this, and waits again
	}
	wg.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for notInGo() >= n {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines in system calls with %d loops waiting: the loops block in epoll_wait", notInGo(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// Off Go's poller (the fallback when os.NewFile cannot put the epoll
// descriptor there), a loop blocks in epoll_wait and serves the same:
// descriptors' events, posted functions, timers.
func TestLoopWaitsWithoutPoller(t *testing.T) {
	g, err := New(Options{Loops: 1})
	if err != nil {
		t.Fatal(err)
	}
	l := g.Loops()[0]
	l.rc = nil
	g.Start()
	t.Cleanup(g.Close)

	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Close(fds[0]); _ = unix.Close(fds[1]) })
	readable := make(chan struct{})
	fired := make(chan struct{})
	added := make(chan error, 1)
	l.Post(func() {
		added <- l.Add(fds[0], Readable, func(uint32) {
			var b [8]byte
			_, _ = unix.Read(fds[0], b[:])
			close(readable)
			_ = l.Delete(fds[0])
		})
		l.NewTimer(func() { close(fired) }).Reset(5 * time.Millisecond)
	})
	if err := <-added; err != nil {
		t.Fatal(err)
	}
	for _, ch := range []chan struct{}{fired, readable} {
		if ch == readable {
			if _, err := unix.Write(fds[1], []byte("x")); err != nil {
				t.Fatal(err)
			}
		}
		select {
		case <-ch:
		case <-time.After(5 * time.Second):
			t.Fatal("the loop off the poller did not run its timer or its handler")
		}
	}
}
