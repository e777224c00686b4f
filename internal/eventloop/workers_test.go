//go:build linux

package eventloop

import (
	"sync"
	"testing"
	"time"
)

// Work one piece after another reuses one worker; pieces at once take
// free workers up to maxWorkers, and then goroutines of their own, none
// waiting for another; close ends the workers once free.
func TestWorkers(t *testing.T) {
	w := newWorkers()
	for range 1000 {
		done := make(chan struct{})
		w.Run(func() { close(done) })
		<-done
		for w.idle.Load() < w.running.Load() {
			time.Sleep(10 * time.Microsecond) // the worker between its call and its next wait
		}
	}
	if n := w.running.Load(); n != 1 {
		t.Fatalf("%d workers for calls one after another, want 1", n)
	}

	const calls = maxWorkers + 44
	release := make(chan struct{})
	var started, finished sync.WaitGroup
	started.Add(calls)
	finished.Add(calls)
	for range calls {
		w.Run(func() {
			started.Done()
			<-release
			finished.Done()
		})
	}
	started.Wait() // every call runs at once: none waits for a worker
	if n := w.running.Load(); n != maxWorkers {
		t.Errorf("%d workers with %d calls at once, want %d", n, calls, maxWorkers)
	}
	close(release)
	finished.Wait()
	w.close()
	for w.running.Load() > 0 {
		time.Sleep(time.Millisecond) // each ends once free; the test's timeout, should one not
	}
	done := make(chan struct{})
	w.Run(func() { close(done) }) // after close: still runs, on no worker
	<-done
	if n := w.running.Load(); n != 0 {
		t.Errorf("%d workers after close", n)
	}
}

// A group's Close ends its workers.
func TestGroupCloseEndsWorkers(t *testing.T) {
	g, err := New(Options{Loops: 1})
	if err != nil {
		t.Fatal(err)
	}
	g.Start()
	done := make(chan struct{})
	g.Workers().Run(func() { close(done) })
	<-done
	g.Close()
	for g.Workers().running.Load() > 0 {
		time.Sleep(time.Millisecond) // each ends once free; the test's timeout, should one not
	}
}
