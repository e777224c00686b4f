//go:build linux

package loopgrpc

import "sync/atomic"

// Calls that may wait run on goroutines kept from one call to the next
// (at most maxWorkers; past them, on a goroutine of their own). A
// goroutine started for each call grew its stack on every call — an
// exact check through Redis goes deep enough — and the copying was a
// tenth of what the agent spent on one (runtime.newstack, copystack); a
// kept goroutine has grown its stack already. Idle workers wait for work
// on an unbuffered channel, so a call never queues behind another: it
// goes to a worker that is free or to a new goroutine. The workers end
// when Shutdown has stopped the loops (no call can come any more).
type workers struct {
	work    chan func() // unbuffered: a send finds a free worker or fails
	running atomic.Int32
	idle    atomic.Int32 // of running, waiting for work
	closed  atomic.Bool
}

// maxWorkers bounds the goroutines kept: enough for the calls a few
// hundred clients keep waiting on Redis at once.
const maxWorkers = 256

func newWorkers() *workers { return &workers{work: make(chan func())} }

// run runs f on a free worker, a new one, or (past maxWorkers) a
// goroutine of its own. Called on the loops only.
func (w *workers) run(f func()) {
	select {
	case w.work <- f:
		return
	default:
	}
	if w.running.Add(1) <= maxWorkers {
		go w.serve(f)
		return
	}
	w.running.Add(-1)
	go f()
}

func (w *workers) serve(f func()) {
	defer w.running.Add(-1)
	for ok := true; ok; {
		f()
		w.idle.Add(1)
		f, ok = <-w.work
		w.idle.Add(-1)
	}
}

// close ends the workers once they are free. No run may follow.
func (w *workers) close() {
	if !w.closed.Swap(true) {
		close(w.work)
	}
}
