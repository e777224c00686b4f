package conncap

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// accepted is what one Accept returned.
type accepted struct {
	c   net.Conn
	err error
}

// serveCap listens on a free loopback port under k and accepts in the
// background; each Accept's result arrives on the channel returned.
func serveCap(t *testing.T, k *Cap) (net.Listener, <-chan accepted) {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := k.Listener(inner)
	ch := make(chan accepted, 16)
	var mu sync.Mutex
	var conns []net.Conn // guarded by mu
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if c != nil {
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
			ch <- accepted{c, err}
			if err != nil {
				return
			}
		}
	}()
	return ln, ch
}

// dial connects to ln; the connection closes with the test.
func dial(t *testing.T, ln net.Listener) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// closedByServer reports whether the server closed c (a read ends with
// EOF or a reset within 10 s rather than a timeout).
func closedByServer(c net.Conn) bool {
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return !errors.As(err, &ne) || !ne.Timeout()
}

// waitCount waits, at most 10 s, for counter c to reach n.
func waitCount(t *testing.T, c prometheus.Counter, n float64) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); testutil.ToFloat64(c) < n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("counter at %v after 10s, want %v", testutil.ToFloat64(c), n)
		}
	}
}

// A full Listener with Evict accepts a newcomer and closes, for it, the
// connection idle longest, never a busy one.
func TestListenerEvictsIdle(t *testing.T) {
	evicted := prometheus.NewCounter(prometheus.CounterOpts{Name: "evicted"})
	waits := prometheus.NewCounter(prometheus.CounterOpts{Name: "waits"})
	k := New(Options{Max: 2, Evict: true, Evicted: evicted, Waits: waits})
	k.grace = 0 // any idle connection may go
	ln, acc := serveCap(t, k)
	c1 := dial(t, ln)
	s1 := receive(t, acc, "first accept").c
	c2 := dial(t, ln)
	s2 := receive(t, acc, "second accept").c
	go func() { // as a server does: a read fails when the cap closes it
		_, _ = io.Copy(io.Discard, s2)
		_ = s2.Close()
	}()
	SlotOf(s1, nil).Busy() // older, but a request is in flight
	if k.Open() != 2 || k.Busy() != 1 {
		t.Fatalf("open %d, busy %d; want 2, 1", k.Open(), k.Busy())
	}

	dial(t, ln)
	if a := receive(t, acc, "the newcomer's accept"); a.err != nil {
		t.Fatalf("the newcomer: %v", a.err)
	}
	if !closedByServer(c2) {
		t.Fatal("the idle connection was not closed for the newcomer")
	}
	if _, err := io.WriteString(c1, "x"); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := io.ReadFull(s1, b); err != nil {
		t.Fatalf("the busy connection was cut: %v", err)
	}
	if k.Open() != 2 || testutil.ToFloat64(evicted) != 1 || testutil.ToFloat64(waits) != 1 {
		t.Fatalf("open %d, evicted %v, waits %v; want 2, 1, 1", k.Open(), testutil.ToFloat64(evicted), testutil.ToFloat64(waits))
	}
}

// A full Listener without Evict holds the newcomer until a connection
// closes, and closes none for it.
func TestListenerWaitsForClose(t *testing.T) {
	waits := prometheus.NewCounter(prometheus.CounterOpts{Name: "waits"})
	k := New(Options{Max: 1, Waits: waits})
	k.grace = 0
	ln, acc := serveCap(t, k)
	c1 := dial(t, ln)
	s1 := receive(t, acc, "first accept").c
	dial(t, ln)
	waitCount(t, waits, 1) // Accept has the newcomer and waits
	select {
	case a := <-acc:
		t.Fatalf("Accept returned %v, %v past the cap", a.c, a.err)
	default:
	}
	if _, err := io.WriteString(c1, "x"); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := io.ReadFull(s1, b); err != nil {
		t.Fatalf("the first connection was closed for the newcomer: %v", err)
	}
	_ = s1.Close()
	if a := receive(t, acc, "accept after a close"); a.err != nil {
		t.Fatalf("the newcomer: %v", a.err)
	}
	if k.Open() != 1 {
		t.Fatalf("%d open, want 1", k.Open())
	}
}

// Closing a Listener ends an Accept that waits for a slot, and closes the
// connection it held.
func TestListenerCloseEndsWait(t *testing.T) {
	waits := prometheus.NewCounter(prometheus.CounterOpts{Name: "waits"})
	k := New(Options{Max: 1, Waits: waits})
	ln, acc := serveCap(t, k)
	dial(t, ln)
	receive(t, acc, "first accept")
	c2 := dial(t, ln)
	waitCount(t, waits, 1)
	_ = ln.Close()
	if a := receive(t, acc, "accept after Close"); !errors.Is(a.err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v, want net.ErrClosed", a.err)
	}
	if !closedByServer(c2) {
		t.Fatal("the connection held by the wait is still open")
	}
	if k.Open() != 1 {
		t.Fatalf("%d open, want 1 (the first connection's)", k.Open())
	}
}

// tlsLike wraps a connection as *tls.Conn does (NetConn); ownWrapper as a
// server's own type that SlotOf learns through unwrap.
type (
	tlsLike    struct{ net.Conn }
	ownWrapper struct{ net.Conn }
)

func (c tlsLike) NetConn() net.Conn { return c.Conn }

func TestSlotOf(t *testing.T) {
	k := New(Options{Max: 1})
	k.Take()
	s := k.Add(func() {})
	a, b := net.Pipe()
	defer func() { _, _ = a.Close(), b.Close() }()
	c := NewConn(a, s)
	unwrap := func(c net.Conn) net.Conn {
		if w, ok := c.(ownWrapper); ok {
			return w.Conn
		}
		return nil
	}
	for _, tc := range []struct {
		name   string
		c      net.Conn
		unwrap func(net.Conn) net.Conn
		want   *Slot
	}{
		{"Conn", c, nil, s},
		{"TLS", tlsLike{c}, nil, s},
		{"own type", ownWrapper{c}, unwrap, s},
		{"TLS over own type", tlsLike{ownWrapper{c}}, unwrap, s},
		{"own type, no unwrap", ownWrapper{c}, nil, nil},
		{"not under a cap", a, unwrap, nil},
	} {
		if got := SlotOf(tc.c, tc.unwrap); got != tc.want {
			t.Errorf("%s: SlotOf = %p, want %p", tc.name, got, tc.want)
		}
	}
	var none *Slot // a connection without a cap: nothing happens
	none.Track(http.StateActive)
	none.Release()
}

// TrackConnState marks a connection of an http.Server busy while its
// request is served, and idle again after.
func TestTrackConnState(t *testing.T) {
	k := New(Options{Max: 4, Evict: true})
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	in, out := make(chan struct{}), make(chan struct{})
	srv := &http.Server{
		Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
			in <- struct{}{}
			<-out
		}),
		ReadHeaderTimeout: 10 * time.Second,
		ConnState:         TrackConnState,
	}
	go func() { _ = srv.Serve(k.Listener(inner)) }()
	t.Cleanup(func() { _ = srv.Close() })

	c, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	r := bufio.NewReader(c)
	for i := range 2 { // a keep-alive connection: busy, idle, busy, idle
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		receive(t, in, "the request")
		if n := k.Busy(); n != 1 {
			t.Fatalf("request %d: Busy() = %d while it is served, want 1", i, n)
		}
		out <- struct{}{}
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		for deadline := time.Now().Add(10 * time.Second); k.Busy() != 0; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("request %d: the connection is still busy 10s after its answer", i)
			}
		}
	}
	if k.Open() != 1 {
		t.Fatalf("%d open, want the one kept alive", k.Open())
	}
}
