package h2

import (
	"context"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"
)

func TestStreamContextCancel(t *testing.T) {
	var x streamContext
	if x.Err() != nil {
		t.Fatalf("Err before cancel: %v", x.Err())
	}
	done := x.Done()
	select {
	case <-done:
		t.Fatal("done before cancel")
	default:
	}
	if d, ok := x.Deadline(); ok || !d.IsZero() {
		t.Fatalf("Deadline %v, %v: want none", d, ok)
	}
	ran := make(chan string, 3)
	context.AfterFunc(&x, func() { ran <- "after" })
	child, cancelChild := context.WithCancel(&x)
	defer cancelChild()
	stopped := context.AfterFunc(&x, func() { ran <- "stopped" })
	if !stopped() {
		t.Fatal("stop before cancel reported false")
	}
	x.cancel()
	x.cancel() // a second cancel does nothing
	<-done
	if !errors.Is(x.Err(), context.Canceled) {
		t.Fatalf("Err after cancel: %v", x.Err())
	}
	if got := <-ran; got != "after" {
		t.Fatalf("ran %q", got)
	}
	<-child.Done()
	if !errors.Is(child.Err(), context.Canceled) {
		t.Fatalf("child's Err: %v", child.Err())
	}
	if len(x.funcs) != 0 {
		t.Fatalf("%d functions left registered", len(x.funcs))
	}
	// Registered once done: runs at once; Done made after cancel is closed.
	context.AfterFunc(&x, func() { ran <- "late" })
	if got := <-ran; got != "late" {
		t.Fatalf("ran %q", got)
	}
	var y streamContext
	y.cancel()
	<-y.Done()
}

// Stopping a watch, or cancelling a child, unregisters it: a stream
// watched by many requests' round trips keeps no entry past them.
func TestStreamContextUnregisters(t *testing.T) {
	var x streamContext
	for range 100 {
		_, cancel := context.WithCancel(&x)
		stop := context.AfterFunc(&x, func() { t.Error("stopped function ran") })
		stop()
		cancel()
	}
	if len(x.funcs) != 0 {
		t.Fatalf("%d functions left registered", len(x.funcs))
	}
	x.cancel()
}

// A handler's context is done when the connection ends under it, the
// functions it registered and its children included.
func TestRequestContextDoneWhenConnectionEnds(t *testing.T) {
	started := make(chan struct{})
	fired := make(chan string, 3)
	ts := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		context.AfterFunc(ctx, func() { fired <- "AfterFunc" })
		child, cancel := context.WithTimeout(ctx, time.Hour)
		defer cancel()
		close(started)
		<-ctx.Done()
		fired <- "Done"
		<-child.Done()
		fired <- "child"
	})})
	rc := dialRaw(t, ts)
	rc.headers(1, true)
	<-started
	_ = rc.c.(io.Closer).Close()
	seen := map[string]bool{}
	for range 3 {
		seen[<-fired] = true
	}
	if len(seen) != 3 {
		t.Fatalf("fired: %v", seen)
	}
}
