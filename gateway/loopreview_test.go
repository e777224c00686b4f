//go:build linux

package gateway

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Tests of the loop engine written to break it (issue 20, item 5); each
// holds it to what the lean engine does, and most run both engines.

// padHead is head (a status line and fields, each ending in CRLF) with
// an X-Pad field that makes it, the blank line and body size bytes long.
func padHead(head, body string, size int) string {
	const field, end = "X-Pad: ", "\r\n\r\n"
	n := size - len(head) - len(field) - len(end) - len(body)
	return head + field + strings.Repeat("p", n) + end + body
}

// A target that sends bytes after its answer, the answer ending exactly
// where a read of leanBufStart bytes ends: the bytes after it are still
// in the socket when the answer has been relayed, and the loop has not
// been told of them yet when a pipelined request wants a connection at
// once. The connection must not carry that request: its "answer" would
// be the bytes already there (a response desync; another client's, on a
// loop serving many).
func TestLoopDoesNotReuseAConnectionWithBytesAfterTheAnswer(t *testing.T) {
	answers := map[string]string{
		"/204": padHead("HTTP/1.1 204 No Content\r\n", "", leanBufStart),
		"/200": padHead("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n", "ok", leanBufStart),
	}
	const evil = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil"
	target := scriptedUpstream(t, func(c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if a, ok := answers[req.URL.Path]; ok {
				// One write: the answer and the bytes after it come
				// together. The connection stays open; what comes on
				// it has no other answer.
				_, _ = c.Write([]byte(a + evil))
				_, _ = io.Copy(io.Discard, br)
				return
			}
			if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ngood"); err != nil {
				return
			}
		}
	})
	for _, engine := range []string{"lean", "loop"} {
		g, err := New(Options{Config: oneUpstream(target), ResponseHeaderTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(g.Close)
		addr := serveEngine(t, g, engine)
		for _, path := range []string{"/204", "/200"} {
			raw := "GET " + path + " HTTP/1.1\r\nHost: h\r\n\r\nGET /after HTTP/1.1\r\nHost: h\r\n\r\n"
			got := exchangeRaw(t, addr, []byte(raw), nil, false)
			if len(got) != 2 || got[1].Status != http.StatusOK || got[1].Body != "good" {
				t.Errorf("%s, GET %s then GET /after: %s; want the second answered by the target (good)", engine, path, showAnswers(got))
			}
		}
	}
}

// A target that answers a request before it has read all of it (a 413
// or a 401 to an upload, say) leaves the request's end unsent by the
// loop: the connection must not carry another request, whose bytes the
// target would read as the end of the first one's body.
func TestLoopDoesNotReuseAConnectionWithTheRequestUnsent(t *testing.T) {
	const size = leanMaxBody
	bad := make(chan string, 4)
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			// Small windows: the gateway cannot write the whole request
			// while the target does not read it.
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 4096)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				br := bufio.NewReaderSize(c, 512)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					if req.Method != http.MethodPost {
						body := req.Method + " " + req.URL.Path
						if _, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body); err != nil {
							return
						}
						continue
					}
					// Answer at once, read the body only a moment later:
					// the gateway has relayed the answer by then.
					if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nearly"); err != nil {
						return
					}
					time.Sleep(300 * time.Millisecond)
					b := make([]byte, 4096)
					for {
						n, err := req.Body.Read(b)
						if s := strings.Trim(string(b[:n]), "x"); s != "" {
							bad <- s // reported before the connection closes
							return
						}
						if err == io.EOF {
							break
						}
						if err != nil {
							return // the gateway closed the connection: fine
						}
					}
				}
			}()
		}
	}()
	for _, engine := range []string{"lean", "loop"} {
		g, err := New(Options{Config: oneUpstream(ln.Addr().String()), ResponseHeaderTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(g.Close)
		var addr string
		if engine == "loop" {
			// The loop's socket holds little of the request too.
			addr, _ = serveLoopWith(t, g, func(s *LoopServer) { s.upSndBuf = 4096 })
		} else {
			addr = serveEngine(t, g, engine)
		}
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second)) // bounds a stuck exchange; not an assertion
		br := bufio.NewReader(c)
		ask := func(req string) string {
			if _, err := io.WriteString(c, req); err != nil {
				t.Fatalf("%s: %v", engine, err)
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("%s: %v", engine, err)
			}
			b, _ := io.ReadAll(resp.Body)
			return fmt.Sprintf("%d %s", resp.StatusCode, b)
		}
		if got := ask(fmt.Sprintf("POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n%s", size, strings.Repeat("x", size))); got != "200 early" {
			t.Errorf("%s: the upload's answer is %q, want the target's (200 early)", engine, got)
		}
		if got := ask("GET /after HTTP/1.1\r\nHost: h\r\n\r\n"); got != "200 GET /after" {
			t.Errorf("%s: GET /after answered %q", engine, got)
		}
		select {
		case s := <-bad:
			t.Errorf("%s: the target read %q in the first request's body", engine, s)
		default:
		}
		_ = c.Close()
	}
}

// smallClient dials addr with a small receive buffer (set before the
// connection is made, so that its window is small from the start).
func smallClient(t *testing.T, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 4096)
		}); err != nil {
			return err
		}
		return serr
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second)) // bounds a stuck exchange; not an assertion
	return c
}

// A target that closes its connection after its answer, which it has
// sent whole, while the client has not yet taken the answer's end: the
// loop has nothing more to read there. It closes the connection at once
// (the target is told), rather than be told of the end again and again
// until the client reads (level-triggered: the loop spun meanwhile).
// The client then gets the whole answer.
func TestLoopClosesATargetConnectionEndedWhileTheAnswerGoesOut(t *testing.T) {
	const size = 30 << 10
	body := strings.Repeat("b", size)
	gone := make(chan struct{})
	target := scriptedUpstream(t, func(c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		// No Connection: close: the end comes unannounced.
		if _, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", size, body); err != nil {
			return
		}
		_ = c.(*net.TCPConn).CloseWrite()
		_, _ = io.Copy(io.Discard, c) // until the gateway closes
		close(gone)
	})
	addr, _ := loopTo(t, Options{Config: oneUpstream(target)}, func(s *LoopServer) { s.sndBuf = 4096 })
	c := smallClient(t, addr)
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: h\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-gone:
	case <-time.After(5 * time.Second): // a bound, not a measure: the close comes at once or never
		t.Error("the gateway kept the target's ended connection while the client did not read")
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil || string(b) != body {
		t.Fatalf("got %d bytes of the answer, %v; want %d", len(b), err, size)
	}
}

// openFDs lists the process's open descriptors with what they are.
func openFDs(t *testing.T) map[string]string {
	t.Helper()
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, e := range es {
		l, _ := os.Readlink("/proc/self/fd/" + e.Name())
		m[e.Name()] = l
	}
	return m
}

// fdsBack waits up to 5 s for the process to hold the descriptors it held
// before (a descriptor closed meanwhile does not count): a test's targets
// close their side of the gateway's connections a moment after the
// gateway closes its own. It returns those still open, not before.
func fdsBack(t *testing.T, before map[string]string) []string {
	t.Helper()
	var extra []string
	for range 250 {
		extra = extra[:0]
		for fd, what := range openFDs(t) {
			if before[fd] != what && what != "" { // "": the listing's own, closed by now
				extra = append(extra, fd+" ("+what+")")
			}
		}
		if len(extra) == 0 {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return extra
}

// Every way a loop connection ends — answered and closed, handed over to
// the lean engine, a target gone, a client gone mid-answer, a client
// that ends its side mid-request, a pipelined run, on several clients at
// once — closes or gives away each descriptor once: after Shutdown the
// process holds the descriptors it held before.
func TestLoopClosesEveryDescriptor(t *testing.T) {
	g := diffGateway(t)
	before := openFDs(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := g.NewLoopServer(nil, 2)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = s.Serve(ln); close(done) }()
	waitServing(t, s)
	addr := ln.Addr().String()
	// The corpus on 4 clients at once: the two loops share targets,
	// breakers and the lean engine.
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, tc := range engineRequests {
				exchangeRaw(t, addr, []byte(tc.raw), requestMethods([]byte(tc.raw)), false)
			}
		}()
	}
	wg.Wait()
	// A client gone while its answer goes out, one that resets, one that
	// ends its side mid-head and mid-body.
	for _, raw := range []string{
		"GET /raw/toclose HTTP/1.1\r\nHost: h\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc",
		"GET / HTTP/1.1\r\nHost: h\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\n\r\n",
	} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.WriteString(c, raw)
		_ = c.(*net.TCPConn).SetLinger(0) // a reset
		_ = c.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	_ = ln.Close()
	<-done
	g.Close() // the pools the handed-over connections used are the gateway's
	if extra := fdsBack(t, before); len(extra) > 0 {
		t.Errorf("descriptors open after Shutdown, not before: %v\n%s", extra, socketsOf(t, extra))
	}
}

// socketsOf names the TCP connections among descriptors ("17 (socket:[123])").
func socketsOf(t *testing.T, fds []string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return ""
	}
	var out strings.Builder
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 10 {
			continue
		}
		for _, fd := range fds {
			if strings.Contains(fd, "socket:["+f[9]+"]") {
				fmt.Fprintf(&out, "%s: local %s remote %s state %s\n", fd, f[1], f[2], f[3])
			}
		}
	}
	return out.String()
}

// A client that pipelines many requests and reads none of the answers
// for a while: the gateway answers one request at a time and holds at
// most what one answer's write left (the client's socket is small), not
// the answers of the requests it read; it reads no more requests
// meanwhile. The client then gets every answer, in order.
func TestLoopPipelinedWithoutReading(t *testing.T) {
	const n = 3000
	up, _ := pathTarget(t)
	addr, s := loopTo(t, Options{Config: oneUpstream(up)}, func(s *LoopServer) { s.sndBuf = 4096 })
	c := smallClient(t, addr)
	var raw strings.Builder
	for i := range n {
		fmt.Fprintf(&raw, "GET /p%d HTTP/1.1\r\nHost: h\r\n\r\n", i)
	}
	wrote := make(chan error, 1)
	go func() {
		_, err := io.WriteString(c, raw.String())
		wrote <- err
	}()
	time.Sleep(300 * time.Millisecond) // the gateway answers until the client's socket is full
	s.mu.Lock()
	q := s.maxQueued
	s.mu.Unlock()
	if q == 0 || q > 128 {
		t.Errorf("the gateway held up to %d bytes for the client; want some (the socket filled), at most one answer's (under 128)", q)
	}
	br := bufio.NewReader(c)
	for i := range n {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if want := fmt.Sprintf("GET /p%d", i); string(b) != want {
			t.Fatalf("answer %d is %q, want %q", i, b, want)
		}
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
}
