//go:build linux

package eventloop

import "sync/atomic"

// Workers run what a loop hands off to wait (a call on Redis, say) on
// goroutines kept from one piece of work to the next, at most
// maxWorkers; past them each runs on a goroutine of its own. A goroutine
// started for each piece grows its stack anew every time — an exact
// check through Redis goes deep enough, and the copying was a tenth of
// what the agent spent on one over gRPC (runtime.newstack, copystack) —
// where a kept one has grown it already. Free workers wait on an
// unbuffered channel, so work never queues behind other work: it goes
// to a free worker or to a new goroutine. A Group has one
// (Group.Workers), for its loops, and ends them when Close has stopped
// the loops: each ends as it comes free.
type Workers struct {
	work    chan func() // unbuffered: a send finds a free worker or fails
	running atomic.Int32
	idle    atomic.Int32 // of running, waiting for work
	closed  atomic.Bool
}

// maxWorkers bounds the goroutines kept: enough for the calls a few
// hundred clients keep waiting on Redis at once.
const maxWorkers = 256

func newWorkers() *Workers { return &Workers{work: make(chan func())} }

// Run runs f on a free worker, a new one, or (past maxWorkers) a
// goroutine of its own; once the workers are closed, on a goroutine of
// its own.
func (w *Workers) Run(f func()) {
	if w.closed.Load() {
		go f()
		return
	}
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

func (w *Workers) serve(f func()) {
	defer w.running.Add(-1)
	for ok := true; ok; {
		f()
		w.idle.Add(1)
		f, ok = <-w.work
		w.idle.Add(-1)
	}
}

// close ends the workers as they come free (Group.Close, the loops
// stopped: no Run races with it); a Run after it still runs its work.
func (w *Workers) close() {
	if !w.closed.Swap(true) {
		close(w.work)
	}
}
