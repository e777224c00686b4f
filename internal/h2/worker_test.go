package h2

import (
	"context"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// getAll GETs path n times on c, one after another, calling before
// ahead of each.
func getAll(t *testing.T, c *http.Client, url string, n int, before func(i int)) {
	t.Helper()
	for i := range n {
		before(i)
		resp, err := c.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
}

// waitIdle waits until n workers wait for a stream (a bound on a hang,
// not a speed).
func waitIdle(t *testing.T, s *Server, n int32) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); s.idleWorkers.Load() != n; {
		if time.Now().After(deadline) {
			t.Fatalf("%d workers wait, want %d", s.idleWorkers.Load(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// A connection's streams, one after another, run on the goroutine that
// served the first: its stack grown once, not once a request.
func TestStreamsReuseTheirConnectionsWorker(t *testing.T) {
	var started atomic.Int32
	s := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}), testHookWorker: func() { started.Add(1) }}
	ts := start(t, s)
	getAll(t, ts.client(t, nil), ts.url("/"), 20, func(i int) {
		if i > 0 {
			waitIdle(t, s, 1) // the worker is back, waiting
		}
	})
	if n := started.Load(); n != 1 {
		t.Fatalf("%d workers started for 20 streams in turn, want 1", n)
	}
}

// Past maxIdleWorkers waiting in the server, a worker ends after its
// stream instead of waiting: the next stream gets a new one.
func TestIdleWorkersBounded(t *testing.T) {
	var started atomic.Int32
	s := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}), testHookWorker: func() { started.Add(1) }}
	s.idleWorkers.Store(maxIdleWorkers) // as if that many waited elsewhere
	ts := start(t, s)
	getAll(t, ts.client(t, nil), ts.url("/"), 3, func(int) {})
	if n := started.Load(); n != 3 {
		t.Fatalf("%d workers started for 3 streams with the idle workers at their bound, want 3", n)
	}
	if n := s.idleWorkers.Load(); n != maxIdleWorkers {
		t.Fatalf("idle workers %d, want %d: a worker past the bound counted itself", n, maxIdleWorkers)
	}
	s.idleWorkers.Store(0)
}

// A handler that panics leaves its worker serving the connection's next
// streams (review): the panic is the stream's, answered with a reset;
// each request's context is done once its handler returned, though the
// goroutine lives on; Shutdown ends the waiting worker.
func TestWorkerOutlivesAPanickingHandler(t *testing.T) {
	var started atomic.Int32
	var calls atomic.Int32
	var prev atomic.Pointer[context.Context]
	s := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := prev.Load(); p != nil && (*p).Err() == nil {
			t.Error("the previous request's context is not done")
		}
		ctx := r.Context()
		prev.Store(&ctx)
		if calls.Add(1)%2 == 0 {
			panic("boom")
		}
		_, _ = io.WriteString(w, "ok")
	}), testHookWorker: func() { started.Add(1) }}
	ts := start(t, s)
	c := ts.client(t, nil)
	for i := range 6 {
		if i > 0 {
			waitIdle(t, s, 1)
		}
		resp, err := c.Get(ts.url("/"))
		if i%2 == 1 {
			if err == nil {
				_ = resp.Body.Close()
				t.Fatalf("request %d: the panicking handler's stream answered %d", i, resp.StatusCode)
			}
			continue
		}
		if err != nil {
			t.Fatalf("request %d after a panic: %v", i, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
	if n := started.Load(); n != 1 {
		t.Fatalf("%d workers started, want 1: a panic ended the worker", n)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := s.idleWorkers.Load(); n != 0 {
		t.Fatalf("%d workers wait after Shutdown", n)
	}
}
