package gateway

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fluxgate/fluxgate/metricnames"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// The lean engine serves plain requests itself, keep-alive and
// pipelined, and hands a connection whose request it does not read to the
// fast engine, which answers it as if it had read it from the start.
func TestLeanServesPlainRequestsAndHandsOverTheRest(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Xff", r.Header.Get("X-Forwarded-For"))
		w.Header().Set("X-Hop", r.Header.Get("X-Hop"))
		io.WriteString(w, r.Method+" "+r.URL.RequestURI()+" "+string(body))
	}))
	defer up.Close()
	g := proxyTo(t, up, Options{})
	url, ls := serveLean(t, g)
	addr := strings.TrimPrefix(url, "http://")

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	// Two requests in one write (pipelined), then one more.
	_, _ = io.WriteString(c, "GET /a?x=1 HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n"+
		"POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello")
	br := bufio.NewReader(c)
	want := []string{"GET /a?x=1 ", "POST /b hello"}
	for i, w := range want {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if string(b) != w {
			t.Errorf("response %d: body %q, want %q", i, b, w)
		}
		if i == 0 {
			if got := resp.Header.Get("X-Xff"); got != "10.0.0.1, 127.0.0.1" {
				t.Errorf("X-Forwarded-For at the target: %q", got)
			}
			if got := resp.Header.Get("X-Hop"); got != "" {
				t.Errorf("a field the client's Connection listed reached the target: %q", got)
			}
		}
	}
	if n := handovers(ls); n != 0 {
		t.Fatalf("%d connections handed over for plain requests", n)
	}
	// HTTP/1.0 is not the lean engine's: the connection goes over, and
	// the answer is the same.
	_, _ = io.WriteString(c, "GET /c HTTP/1.0\r\nHost: h\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if string(b) != "GET /c " {
		t.Errorf("handed-over request: body %q", b)
	}
	if n := handovers(ls); n != 1 {
		t.Errorf("handed over %d connections, want 1", n)
	}
}

// scriptedUpstream serves each connection with serve, on a loopback port,
// until the test ends. It returns the address.
func scriptedUpstream(t *testing.T, serve func(c net.Conn, br *bufio.Reader)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
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
				serve(c, bufio.NewReader(c))
			}()
		}
	}()
	return ln.Addr().String()
}

// leanTo serves a gateway to addr on the lean engine and returns its
// address and server.
func leanTo(t *testing.T, addr string) (string, *LeanServer) {
	t.Helper()
	g, err := New(Options{Config: oneUpstream(addr), ResponseHeaderTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	url, ls := serveLean(t, g)
	return strings.TrimPrefix(url, "http://"), ls
}

// gatewayTo serves a gateway to addr on engine ("fast" or "lean") and
// returns its address.
func gatewayTo(t *testing.T, engine, addr string) string {
	t.Helper()
	if engine == "lean" {
		a, _ := leanTo(t, addr)
		return a
	}
	if engine == "loop" {
		g, err := New(Options{Config: oneUpstream(addr), ResponseHeaderTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(g.Close)
		return serveLoopAddr(t, g)
	}
	g, err := New(Options{Config: oneUpstream(addr), ResponseHeaderTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	return strings.TrimPrefix(serveFast(t, g), "http://")
}

// exchangeOn sends req on c and reads one response.
func exchangeOn(t *testing.T, c net.Conn, br *bufio.Reader, req string) (*http.Response, string) {
	t.Helper()
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("body: %v", err)
	}
	return resp, string(b)
}

func dialLean(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}

// What targets answer that is not a plain response with a length: the
// lean engine drops 1xx heads, frames a body that ends with the
// connection as chunked (the client's connection stays open), and
// answers 502 to a response it cannot read.
func TestLeanRelaysUnusualResponses(t *testing.T) {
	up := scriptedUpstream(t, func(c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			switch req.URL.Path {
			case "/early":
				io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			case "/toclose":
				io.WriteString(c, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end")
				return
			case "/garbage":
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n")
				return
			case "/chunked":
				io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n")
			}
		}
	})
	addr, ls := leanTo(t, up)
	c, br := dialLean(t, addr)
	for _, tc := range []struct {
		path, body string
		status     int
	}{
		{"/early", "ok", 200},
		{"/toclose", "until the end", 200},
		{"/chunked", "abcde", 200},
		{"/garbage", `{"error":"upstream_unavailable","upstream":"u"}` + "\n", 502},
		{"/early", "ok", 200}, // the client's connection still serves
	} {
		resp, body := exchangeOn(t, c, br, "GET "+tc.path+" HTTP/1.1\r\nHost: h\r\n\r\n")
		if resp.StatusCode != tc.status || body != tc.body {
			t.Errorf("%s: %d %q, want %d %q", tc.path, resp.StatusCode, body, tc.status, tc.body)
		}
		if tc.path == "/chunked" && resp.Trailer.Get("X-T") != "1" {
			t.Errorf("%s: trailer %q", tc.path, resp.Trailer.Get("X-T"))
		}
		if resp.Close {
			t.Errorf("%s: the client's connection is to close", tc.path)
		}
	}
	if n := handovers(ls); n != 0 {
		t.Errorf("%d connections handed over", n)
	}
}

// A target that closed a kept-alive connection while it sat in the pool
// (its idle timeout) costs nothing: the pool sees the end and dials
// anew. One that closes it on the next request, unanswered (the close
// still on its way when the request went out), costs a GET nothing
// either: it is sent again on a new connection. A POST is not sent
// twice: it fails with 502.
func TestLeanStaleConnection(t *testing.T) {
	var conns, posts atomic.Int32
	closeIdle := atomic.Bool{}
	closeIdle.Store(true)
	up := scriptedUpstream(t, func(c net.Conn, br *bufio.Reader) {
		conns.Add(1)
		for i := 0; ; i++ {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if req.Method == http.MethodPost {
				posts.Add(1)
			}
			if i > 0 {
				return // read, then closed unanswered
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			if closeIdle.Load() {
				return // keep-alive promised, then closed while idle
			}
		}
	})
	addr, _ := leanTo(t, up)
	c, br := dialLean(t, addr)
	for i := range 3 {
		resp, body := exchangeOn(t, c, br, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
		if resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("GET %d: %d %q", i, resp.StatusCode, body)
		}
		time.Sleep(20 * time.Millisecond) // let the target's close arrive
	}
	if n := conns.Load(); n != 3 {
		t.Errorf("the target saw %d connections, want 3 (one a request)", n)
	}
	closeIdle.Store(false)
	// A new connection (the last one is closed) answers; on it, the next
	// GET is closed unanswered and sent again on a new one, which then
	// closes the POST unanswered.
	for i := range 2 {
		resp, body := exchangeOn(t, c, br, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
		if resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("GET %d: %d %q", i, resp.StatusCode, body)
		}
	}
	resp, _ := exchangeOn(t, c, br, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nx")
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("POST on a connection closed under it: %d, want 502", resp.StatusCode)
	}
	if n := posts.Load(); n != 1 {
		t.Errorf("the target read the POST %d times, want 1", n)
	}
	if n := conns.Load(); n != 5 {
		t.Errorf("the target saw %d connections, want 5", n)
	}
}

// handovers is how many connections ls handed to the fast engine.
func handovers(ls *LeanServer) int {
	n := 0.0
	for _, r := range []string{metricnames.HandoverRequest, metricnames.HandoverBody, metricnames.HandoverRoute} {
		n += testutil.ToFloat64(ls.g.metrics.handovers.WithLabelValues(r))
	}
	return int(n)
}

// Each kind of request the lean engine leaves to the fast engine is
// counted under its reason, and answered all the same.
func TestLeanHandoverReasons(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "%d", n)
	}))
	defer up.Close()
	g := proxyTo(t, up, Options{})
	url, ls := serveLean(t, g)
	addr := strings.TrimPrefix(url, "http://")
	big := strings.Repeat("x", leanMaxBody+1)
	for _, tc := range []struct {
		reason, req, body string
	}{
		{metricnames.HandoverRequest, "GET / HTTP/1.0\r\nHost: h\r\n\r\n", "0"},
		{metricnames.HandoverBody, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", "3"},
		{metricnames.HandoverBody, fmt.Sprintf("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n%s", len(big), big), fmt.Sprint(len(big))},
		{"", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc", "3"},
	} {
		before := testutil.ToFloat64(g.metrics.handovers.WithLabelValues(tc.reason))
		total := handovers(ls)
		c, br := dialLean(t, addr)
		resp, body := exchangeOn(t, c, br, tc.req)
		if resp.StatusCode != 200 || body != tc.body {
			t.Errorf("%q: %d %q, want 200 %q", tc.reason, resp.StatusCode, body, tc.body)
		}
		switch {
		case tc.reason == "" && handovers(ls) != total:
			t.Errorf("a plain POST was handed over")
		case tc.reason != "" && testutil.ToFloat64(g.metrics.handovers.WithLabelValues(tc.reason)) != before+1:
			t.Errorf("%q: not counted", tc.reason)
		}
	}
}

// The wait for a response head stays bounded on a reused connection, over
// TLS too, where looking at the idle connection's TLS buffer touches its
// read deadline: the first request is answered, the second, on the same
// pooled connection, gets 504 after ResponseHeaderTimeout.
func TestLeanHeadTimeoutOnReusedConnection(t *testing.T) {
	for _, tlsOn := range []bool{false, true} {
		release := make(chan struct{})
		var n atomic.Int32
		up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if n.Add(1) == 1 {
				return
			}
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}))
		opts := Options{ResponseHeaderTimeout: 300 * time.Millisecond}
		startTarget(up, tlsOn, &opts)
		g, err := New(opts)
		if err != nil {
			t.Fatal(err)
		}
		url, _ := serveLean(t, g)
		c, br := dialLean(t, strings.TrimPrefix(url, "http://"))
		for i, want := range []int{200, http.StatusGatewayTimeout} {
			resp, _ := exchangeOn(t, c, br, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
			if resp.StatusCode != want {
				t.Errorf("tls=%v: request %d: %d, want %d", tlsOn, i, resp.StatusCode, want)
			}
		}
		close(release)
		g.Close()
		up.Close()
	}
}

// What a target sends on a kept-alive connection after its answer ended
// (a second answer to one request, as buggy servers send on a timeout)
// is never the answer to the next request on it, which may be another
// client's, whichever engine took the request (the fast engine serves
// what the lean one hands over): neither pool reuses a connection with
// bytes waiting, nor one the target has closed.
func TestUnsolicitedBytesAreNoOnesAnswer(t *testing.T) {
	for _, engine := range []string{"fast", "lean"} {
		t.Run(engine, func(t *testing.T) {
			sent := make(chan struct{}, 1)
			up := scriptedUpstream(t, func(c net.Conn, br *bufio.Reader) {
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					if req.URL.Path == "/twice" {
						io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
						time.Sleep(50 * time.Millisecond) // the gateway has read the first answer
						io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nleaked!")
						sent <- struct{}{}
						continue
					}
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nmine")
				}
			})
			g, err := New(Options{Config: oneUpstream(up), ResponseHeaderTimeout: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(g.Close)
			url := serveBoth(t, g)[engine]
			addr := strings.TrimPrefix(url, "http://")
			c, br := dialLean(t, addr)
			if _, body := exchangeOn(t, c, br, "GET /twice HTTP/1.1\r\nHost: h\r\n\r\n"); body != "ok" {
				t.Fatalf("first answer %q", body)
			}
			<-sent
			time.Sleep(20 * time.Millisecond) // let the extra bytes reach the gateway's socket
			c2, br2 := dialLean(t, addr)
			if _, body := exchangeOn(t, c2, br2, "GET /other HTTP/1.1\r\nHost: h\r\n\r\n"); body != "mine" {
				t.Errorf("another client's request got %q, want \"mine\"", body)
			}
		})
	}
}

// A client that stops reading its answer is cut off after the write
// timeout, and the target's connection it held is closed: it cannot
// hold it for good.
func TestLeanWriteTimeout(t *testing.T) {
	big := strings.Repeat("x", 16<<20) // past what the sockets' buffers hold
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, big)
	}))
	defer up.Close()
	g := proxyTo(t, up, Options{})
	url, _ := serveLeanWith(t, g, func(ls *LeanServer) { ls.writeTimeout = 200 * time.Millisecond })
	c, _ := dialLean(t, strings.TrimPrefix(url, "http://"))
	defer c.Close() // before up.Close, which waits for its handler
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4 << 10)
	}
	_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	// The client reads nothing; the gateway must give up on it and close
	// its target connection: the pool's open count falls back to 0.
	target := strings.TrimPrefix(up.URL, "http://")
	pool := g.state.Load().upstreams["u"].lean[target]
	served := g.metrics.requests.WithLabelValues("r", target, "GET", "200")
	deadline := time.Now().Add(10 * time.Second) // a hang guard, not a speed bound
	for {
		pool.mu.Lock()
		open := pool.open
		pool.mu.Unlock()
		if open == 0 && testutil.ToFloat64(served) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the target connection is still held (%d open)", open)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The fast engine gives a client that stops reading the same write
// timeout: here a connection the lean engine handed over (HTTP/1.0)
// whose client reads nothing of a large answer is cut off, and the
// target's connection it held is closed (the target's write fails).
func TestFastEngineWriteTimeout(t *testing.T) {
	big := strings.Repeat("x", 16<<20) // past what the sockets' buffers hold
	targetDone := make(chan error, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.WriteString(w, big)
		targetDone <- err
	}))
	defer up.Close()
	g := proxyTo(t, up, Options{})
	url, _ := serveLeanWith(t, g, func(ls *LeanServer) { ls.writeTimeout = 200 * time.Millisecond })
	c, _ := dialLean(t, strings.TrimPrefix(url, "http://"))
	defer c.Close()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4 << 10)
	}
	_, _ = io.WriteString(c, "GET / HTTP/1.0\r\nHost: h\r\n\r\n") // handed to the fast engine
	select {
	case err := <-targetDone:
		if err == nil {
			t.Fatal("the target wrote its whole answer to a client that reads nothing")
		}
	case <-time.After(10 * time.Second): // a hang guard, not a speed bound
		t.Fatal("the target's connection is still held by a client that reads nothing")
	}
}
