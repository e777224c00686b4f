package gateway

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection, closed when the
// test ends.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { _ = client.Close(); _ = server.Close() })
	return client, server
}

// A pooled lean connection keeps the response-head deadline of its last
// request (it is lifted only before a body is read), so the deadline has
// often passed by the time the connection is taken again. The look at
// the idle connection must not take that for something to read: the
// connection was discarded, and every connection idle longer than
// ResponseHeaderTimeout redialled.
func TestIdleReadableIgnoresAPassedReadDeadline(t *testing.T) {
	c, s := tcpPair(t)
	if err := c.SetReadDeadline(time.Unix(1, 0)); err != nil {
		t.Fatal(err)
	}
	p := newPeeker(c)
	if p.idleReadable() {
		t.Fatal("an idle connection whose read deadline passed is taken as readable")
	}
	// It still sees what the target sends.
	if _, err := io.WriteString(s, "x"); err != nil {
		t.Fatal(err)
	}
	for i := 0; !p.idleReadable(); i++ {
		if i == 500 {
			t.Fatal("a byte the target sent is never seen")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// answerEach answers every request head read from c with an empty 200
// until c ends.
func answerEach(c net.Conn) {
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		_ = req.Body.Close()
		if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"); err != nil {
			return
		}
	}
}

// A response-head deadline set less than leanDeadlineSlack ago is kept
// for the next request on the connection, which is only sound while it
// has not passed: with a ResponseHeaderTimeout shorter than the slack, a
// request on a connection reused 300 ms after the last (timeout 200 ms)
// was written to the target and then failed at once as timed out.
func TestLeanUpConnRearmsAPassedDeadline(t *testing.T) {
	c, s := tcpPair(t)
	go answerEach(s)
	const timeout = 200 * time.Millisecond
	now := time.Now()
	// As the last request left it 300 ms ago: armed, deadline passed.
	armedAt := now.Add(-300 * time.Millisecond)
	if err := c.SetReadDeadline(armedAt.Add(timeout)); err != nil {
		t.Fatal(err)
	}
	up := &leanUpConn{c: c, buf: make([]byte, leanBufStart), peek: newPeeker(c), armed: true, armedAt: armedAt}
	if _, err := up.exchange([]byte("GET / HTTP/1.1\r\nHost: h\r\n\r\n"), now, timeout, nil); err != nil {
		t.Fatalf("request on the reused connection: %v", err)
	}
	if up.resp.Status != 200 {
		t.Fatalf("status %d", up.resp.Status)
	}
}

// The wait for a response head starts when the request goes out, as on
// the fast engine, not when the gateway began to look for a connection
// to send it on: a request that waited for one of a full pool (or for a
// dial and TLS handshake) longer than ResponseHeaderTimeout got 504 at
// once, its request sent to the target all the same.
func TestLeanHeadTimeoutStartsWhenTheRequestGoesOut(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			w.Header().Set("Content-Length", "2")
			w.WriteHeader(200)
			w.(http.Flusher).Flush()
			time.Sleep(1500 * time.Millisecond) // longer than the head timeout
			_, _ = io.WriteString(w, "ok")
		}
	}))
	defer up.Close()
	g := proxyTo(t, up, Options{ResponseHeaderTimeout: time.Second, DialTimeout: 10 * time.Second})
	url, _ := serveLean(t, g)
	for _, p := range g.state.Load().upstreams["u"].lean {
		p.limit = 1
	}
	c, br := dialLean(t, strings.TrimPrefix(url, "http://"))
	if _, err := io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: h\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	slow, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The one connection streams /slow's body; /fast waits for it.
	status := make(chan int, 1)
	go func() {
		resp, err := http.Get(url + "/fast")
		if err != nil {
			status <- 0
			return
		}
		resp.Body.Close()
		status <- resp.StatusCode
	}()
	if b, err := io.ReadAll(slow.Body); err != nil || string(b) != "ok" {
		t.Fatalf("/slow: %q, %v", b, err)
	}
	if got := <-status; got != 200 {
		t.Errorf("/fast after waiting for the connection: %d, want 200", got)
	}
}

// Every connection that closes or comes back reaches a request waiting
// for one of a full pool, however many wait: the pool's one wake-up went
// to the first waiter, which took the connection that came back, and the
// second slept on, though a connection had closed, until it failed with
// errLeanPoolFull at the dial timeout. (The first waiter must take the
// returned connection before it looks again, which it mostly but not
// always does on two cores: the rounds make the miss near certain.)
func TestLeanPoolWakesEveryWaiter(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer up.Close()
	g := proxyTo(t, up, Options{DialTimeout: 5 * time.Second})
	var p *leanPool
	for _, lp := range g.state.Load().upstreams["u"].lean {
		p = lp
	}
	p.limit = 2
	for round := range 5 {
		a, _, _, err := p.get(time.Now())
		if err != nil {
			t.Fatal(err)
		}
		b, _, _, err := p.get(time.Now())
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan error, 2)
		waiters := make(chan *leanUpConn, 2)
		for range 2 {
			go func() {
				c, _, _, err := p.get(time.Now())
				got <- err
				waiters <- c
			}()
		}
		time.Sleep(100 * time.Millisecond) // both wait (were they late, they would find a connection: no miss)
		p.discard(a)
		p.put(b)
		for range 2 {
			if err := <-got; err != nil {
				t.Fatalf("round %d: a waiter got %v with a connection free", round, err)
			}
		}
		for range 2 {
			p.discard(<-waiters)
		}
	}
}

// A pooled connection the target closed after its answer (as targets do
// with idle keep-alive connections) is seen before a request is written
// on it (upstreamConn.peek), so nothing of the request went out: the fast
// engine sends it again on a new connection whatever its method, when it
// has no body to send again. A POST without a body got 502; the lean
// engine, whose pool skips such a connection, answered it.
func TestFastResendsABodilessRequestOffAClosedConnection(t *testing.T) {
	up := scriptedUpstream(t, func(c net.Conn, br *bufio.Reader) {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nmine")
		// and closes the connection, saying nothing of it
	})
	g, err := New(Options{Config: oneUpstream(up), ResponseHeaderTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	url := serveBoth(t, g)["fast"]
	c, br := dialLean(t, strings.TrimPrefix(url, "http://"))
	for i, req := range []string{
		"GET / HTTP/1.1\r\nHost: h\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
		"PATCH / HTTP/1.1\r\nHost: h\r\n\r\n",
	} {
		if i > 0 {
			time.Sleep(50 * time.Millisecond) // the target's close reaches the gateway
		}
		if resp, body := exchangeOn(t, c, br, req); resp.StatusCode != 200 || body != "mine" {
			t.Errorf("%q: %d %q", req, resp.StatusCode, body)
		}
	}
}
