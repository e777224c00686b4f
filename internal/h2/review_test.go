package h2

import (
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// A handler that reads a long body in pieces while the client keeps the
// stream's window full never empties the body's buffer: the bytes already
// read must not stay in it, or it grows with everything the stream ever
// carried instead of being bounded by the receive window.
func TestBodyBufferBoundedByTheWindow(t *testing.T) {
	const (
		window = 65535
		piece  = 40000 // past half the window: each read gives back a WINDOW_UPDATE
		rounds = 30    // 1.2 MB through a 64 KiB window
	)
	maxCap := make(chan int, 1)
	ts := start(t, &Server{StreamWindow: window, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := r.Body.(*body)
		most := 0
		buf := make([]byte, piece)
		for range rounds {
			// Read once the whole window is in: the buffer never empties.
			b.mu.Lock()
			for len(b.buf)-b.off < window && b.err == nil {
				b.cond.Wait()
			}
			b.mu.Unlock()
			if _, err := io.ReadFull(r.Body, buf); err != nil {
				t.Errorf("read: %v", err)
				break
			}
			b.mu.Lock()
			most = max(most, cap(b.buf))
			b.mu.Unlock()
		}
		maxCap <- most
	})})
	rc := dialRaw(t, ts)
	rc.headers(1, false, ":method", "POST")
	chunk := make([]byte, maxReadFrameSize)
	send := func(n int) {
		for n > 0 {
			k := min(n, len(chunk))
			if err := rc.fr.WriteData(1, false, chunk[:k]); err != nil {
				t.Fatal(err)
			}
			n -= k
		}
	}
	send(window)
	done := false
	for !done {
		// Send what each stream WINDOW_UPDATE gives back, until the
		// handler answers.
		f := rc.until(func(f http2.Frame) bool {
			switch f := f.(type) {
			case *http2.WindowUpdateFrame:
				return f.StreamID == 1
			case *http2.MetaHeadersFrame, *http2.RSTStreamFrame:
				return f.Header().StreamID == 1
			}
			return false
		})
		switch f := f.(type) {
		case *http2.WindowUpdateFrame:
			send(int(f.Increment))
		default:
			done = true
		}
	}
	most := <-maxCap
	if most > 2*window+maxReadFrameSize {
		t.Errorf("the body's buffer reached %d bytes with a %d-byte window", most, window)
	}
	t.Logf("the body's buffer reached %d bytes with a %d-byte window", most, window)
}

// Request heads net/http's HTTP/2 server refuses, or that RFC 9113 calls
// malformed, are reset rather than handed to the handler: the gateway
// would otherwise route or check one request and send the target
// another (":path" http://other/x reaches it as /x; mailto:x as "x").
func TestMalformedRequestHeadsReset(t *testing.T) {
	ts := start(t, &Server{Handler: http.HandlerFunc(echo)})
	for _, tc := range []struct {
		name   string
		fields []string
		body   string // sent as DATA with END_STREAM when set
		want   string // RST_STREAM code, or :status
	}{
		{"absolute-form :path", []string{":path", "http://other.example/admin"}, "", "PROTOCOL_ERROR"},
		{"opaque :path", []string{":path", "mailto:x"}, "", "PROTOCOL_ERROR"},
		{":path without a slash", []string{":path", "admin"}, "", "PROTOCOL_ERROR"},
		{"* for GET", []string{":path", "*"}, "", "PROTOCOL_ERROR"},
		{"* for OPTIONS", []string{":method", "OPTIONS", ":path", "*"}, "", "200"},
		{":scheme ftp", []string{":scheme", "ftp"}, "", "PROTOCOL_ERROR"},
		{"userinfo in :authority", []string{":authority", "user@127.0.0.1"}, "", "PROTOCOL_ERROR"},
		{"space in :authority", []string{":authority", "127.0.0.1 /x"}, "", "PROTOCOL_ERROR"},
		{"bad byte in host", []string{":authority", "-", "host", "127.0.0.1\"x"}, "", "PROTOCOL_ERROR"},
		{"userinfo in host", []string{":authority", "-", "host", "user@127.0.0.1"}, "", "PROTOCOL_ERROR"},
		{"signed content-length", []string{":method", "POST", "content-length", "+3"}, "abc", "PROTOCOL_ERROR"},
		{"negative zero content-length", []string{":method", "POST", "content-length", "-0"}, "", "PROTOCOL_ERROR"},
		{"plain content-length", []string{":method", "POST", "content-length", "3"}, "abc", "200"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := dialRaw(t, ts)
			rc.headers(1, tc.body == "", tc.fields...)
			if tc.body != "" {
				if err := rc.fr.WriteData(1, true, []byte(tc.body)); err != nil {
					t.Fatal(err)
				}
			}
			if tc.want[0] >= '0' && tc.want[0] <= '9' {
				if s := rc.status(1); s != tc.want {
					t.Fatalf("status %s, want %s", s, tc.want)
				}
				return
			}
			if code := rc.rst(1); code.String() != tc.want {
				t.Fatalf("RST_STREAM %v, want %s", code, tc.want)
			}
		})
	}
}

// onlyConn is the server's one connection.
func onlyConn(t *testing.T, s *Server) *conn {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.conns) != 1 {
		t.Fatalf("%d connections, want 1", len(s.conns))
	}
	for c := range s.conns {
		return c
	}
	return nil
}

// waitFor polls cond every millisecond until it holds (10 s at most).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 10000 {
		if cond() {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("%s: not within 10 s", what)
}

// A response that took its share of the connection's send window and
// finds its stream reset before it could write gives the share back: the
// client never gets those bytes, so never returns them, and a connection
// whose streams are cancelled while it is busy would otherwise run out
// of window and stall all its streams.
func TestResetStreamGivesBackTheConnectionWindow(t *testing.T) {
	const big = 32 << 20 // past what loopback's socket buffers hold
	bTook := make(chan struct{})
	ts := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/a" {
			_, _ = w.Write(make([]byte, big)) // blocks on the client, holding the write lock
			return
		}
		close(bTook)
		_, _ = io.WriteString(w, "hello") // takes 5 bytes of window, then waits for the lock
	})})
	rc := dialRaw(t, ts)
	const maxWindow = 1<<31 - 1
	if err := rc.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: maxWindow}); err != nil {
		t.Fatal(err)
	}
	if err := rc.fr.WriteWindowUpdate(0, maxWindow-65535); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "connection", func() bool { ts.srv.mu.Lock(); defer ts.srv.mu.Unlock(); return len(ts.srv.conns) == 1 })
	c := onlyConn(t, ts.srv)
	window := func() int64 { c.mu.Lock(); defer c.mu.Unlock(); return c.sendWindow }
	waitFor(t, "window raised", func() bool { return window() == maxWindow })
	rc.headers(1, true, ":path", "/a")
	waitFor(t, "A took its window", func() bool { return window() == maxWindow-big })
	rc.headers(3, true, ":path", "/b")
	<-bTook
	waitFor(t, "B took its window", func() bool { return window() == maxWindow-big-5 })
	if err := rc.fr.WriteRSTStream(3, http2.ErrCodeCancel); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "B reset", func() bool { return c.lookup(3) == nil })
	// Now read: A's write goes on, B's finds its stream gone.
	received := int64(0)
	rc.until(func(f http2.Frame) bool {
		if d, ok := f.(*http2.DataFrame); ok {
			received += int64(len(d.Data()))
			return d.StreamID == 1 && d.StreamEnded()
		}
		return false
	})
	waitFor(t, "both handlers done", func() bool { c.mu.Lock(); defer c.mu.Unlock(); return c.running == 0 })
	if got, want := window(), maxWindow-received; got != want {
		t.Errorf("connection send window %d after %d bytes sent, want %d (%d lost)", got, received, want, want-got)
	}
}

// A graceful GOAWAY (Shutdown, idle timeout) that goes out while the
// reader is opening a stream names as last a stream that will be served:
// the client retries the streams past it elsewhere, and takes those up to
// it as processed, so one of them left unanswered is a request lost.
func TestGoAwayRacingANewStream(t *testing.T) {
	var once sync.Once
	ts := start(t, &Server{Handler: http.HandlerFunc(echo), testHookOpen: func(c *conn) {
		once.Do(func() {
			c.goAwayGraceful()
			c.bg.Wait() // the write side is closed
		})
	}})
	rc := dialRaw(t, ts)
	rc.headers(1, true)
	answered, last := false, int64(-1)
	rc.until(func(f http2.Frame) bool {
		switch f := f.(type) {
		case *http2.GoAwayFrame:
			last = int64(f.LastStreamID)
		case *http2.DataFrame:
			answered = answered || f.StreamID == 1 && f.StreamEnded()
		case *http2.MetaHeadersFrame:
			answered = answered || f.StreamID == 1 && f.StreamEnded()
		}
		return false // to the connection's end
	})
	switch {
	case last < 0:
		t.Fatal("no GOAWAY")
	case last >= 1 && !answered:
		t.Errorf("GOAWAY's last stream is %d, and stream 1 ended unanswered", last)
	case last == 0 && answered:
		t.Errorf("stream 1 answered past GOAWAY's last stream 0")
	}
}

// Request.Trailer belongs to the handler's goroutine: the trailers the
// client sends appear in it when the body's Read returns io.EOF, as
// net/http's server does, never while the handler may be reading it.
// ReverseProxy clones it (iterating the map) before it reads the body, so
// a write from the connection's reader at that moment is a data race, and
// the runtime's "concurrent map iteration and map write" kills the process.
func TestTrailersAppearAtTheBodysEnd(t *testing.T) {
	type seen struct{ before, after string }
	got := make(chan seen, 1)
	ts := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := r.Body.(*body)
		b.mu.Lock()
		for !b.recvClosed { // the trailers are in
			b.cond.Wait()
		}
		b.mu.Unlock()
		var s seen
		s.before = r.Trailer.Get("X-T")
		_, _ = io.ReadAll(r.Body)
		s.after = r.Trailer.Get("X-T")
		got <- s
	})})
	rc := dialRaw(t, ts)
	rc.headers(1, false, ":method", "POST", "trailer", "x-t")
	if err := rc.fr.WriteData(1, false, []byte("abc")); err != nil {
		t.Fatal(err)
	}
	if err := rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: rc.block(":method", "-", ":scheme", "-", ":authority", "-", ":path", "-", "x-t", "v"), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	s := <-got
	if s.before != "" || s.after != "v" {
		t.Errorf("X-T trailer %q before the body's end, %q after; want \"\" and \"v\"", s.before, s.after)
	}
}
