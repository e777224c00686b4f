package h2

import (
	"context"
	"sync"
	"time"
)

// streamContext is a request's context, part of its stream: done when the
// stream is reset, its handler returns or the connection ends
// (context.Canceled). It has no deadline and no values.
//
// It is what context.WithCancel of a connection context gave before, at
// less cost: no allocation, no entry in a parent's child map, and its
// AfterFunc method, which context.AfterFunc and context.WithCancel use for
// a context that has one, registers a function without a goroutine or an
// allocation of the context package's. A handler that watches the stream
// (the gateway closes a target's connection when the stream is reset)
// then pays a slice entry.
type streamContext struct {
	mu     sync.Mutex
	done   chan struct{} // guarded by mu: made by Done, closed by cancel
	err    error         // guarded by mu: context.Canceled once cancelled
	nextID uint64        // guarded by mu
	funcs  []afterFunc   // guarded by mu: registered by AfterFunc, not stopped or run
	inline [2]afterFunc  // funcs' first array
}

type afterFunc struct {
	id uint64
	f  func()
}

var _ context.Context = (*streamContext)(nil)

// closedDone is Done's channel for a context cancelled before Done was
// first called.
var closedDone = func() chan struct{} {
	ch := make(chan struct{})
	close(ch)
	return ch
}()

func (*streamContext) Deadline() (time.Time, bool) { return time.Time{}, false }

func (*streamContext) Value(any) any { return nil }

func (x *streamContext) Done() <-chan struct{} {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.done == nil {
		if x.err != nil {
			return closedDone
		}
		x.done = make(chan struct{})
	}
	return x.done
}

func (x *streamContext) Err() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.err
}

// AfterFunc arranges to call f in its own goroutine once x is done, at
// once if it is, as context.AfterFunc does (which calls it). stop
// unregisters f and reports whether it did so before f was started.
func (x *streamContext) AfterFunc(f func()) (stop func() bool) {
	x.mu.Lock()
	if x.err != nil {
		x.mu.Unlock()
		go f()
		return func() bool { return false }
	}
	if x.funcs == nil {
		x.funcs = x.inline[:0]
	}
	x.nextID++
	id := x.nextID
	x.funcs = append(x.funcs, afterFunc{id: id, f: f})
	x.mu.Unlock()
	return func() bool {
		x.mu.Lock()
		defer x.mu.Unlock()
		for i, af := range x.funcs {
			if af.id == id {
				x.funcs = append(x.funcs[:i], x.funcs[i+1:]...)
				return true
			}
		}
		return false
	}
}

// cancel makes x done and starts the functions registered with AfterFunc.
// Calls after the first do nothing.
func (x *streamContext) cancel() {
	x.mu.Lock()
	if x.err != nil {
		x.mu.Unlock()
		return
	}
	x.err = context.Canceled
	if x.done != nil {
		close(x.done)
	}
	funcs := x.funcs
	x.funcs = nil
	x.mu.Unlock()
	for _, af := range funcs {
		go af.f()
	}
}
