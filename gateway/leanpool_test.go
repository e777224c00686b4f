package gateway

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

// Connections idle in a lean pool for its idle duration are closed even
// when the pool is not used again (taken most recently used first, the
// least recently used ones would otherwise stay open to the target for
// good), and the pool's count of open connections follows.
func TestLeanPoolClosesIdleConnections(t *testing.T) {
	p := &leanPool{limit: leanMaxConns, idleFor: time.Hour}
	var far []net.Conn
	for range 3 {
		c, f := net.Pipe()
		t.Cleanup(func() { _ = c.Close(); _ = f.Close() })
		far = append(far, f)
		p.mu.Lock()
		p.open++
		p.mu.Unlock()
		p.put(&leanUpConn{c: c, peek: newPeeker(c)})
	}
	// The first two have been idle long; the last is fresh.
	p.mu.Lock()
	p.idle[0].used = time.Now().Add(-2 * time.Hour)
	p.idle[1].used = time.Now().Add(-2 * time.Hour)
	p.mu.Unlock()
	p.prune() // what the pool's timer runs
	for i, f := range far {
		_ = f.SetReadDeadline(time.Now().Add(100 * time.Millisecond)) // an open one times out; a pipe closed reads EOF at once
		_, err := f.Read(make([]byte, 1))
		if closed := errors.Is(err, io.EOF); closed != (i < 2) {
			t.Errorf("connection %d: closed %v (read: %v)", i, closed, err)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.open != 1 || len(p.idle) != 1 {
		t.Errorf("open %d, idle %d; want 1 and 1", p.open, len(p.idle))
	}
}

// Whatever becomes of a request (answered, its body cut by the target or
// its length overrun, an answer the engine cannot relay, the client gone
// mid-body, a body to HEAD), every connection the lean engine took from
// its pool goes back or is closed exactly once: once the engine is done,
// the pool counts open only its idle connections.
func TestLeanPoolCountsEveryConnection(t *testing.T) {
	big := strings.Repeat("z", 1<<20)
	up := scriptedUpstream(t, func(c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			switch req.URL.Path {
			case "/short":
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
				return
			case "/long":
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA")
			case "/bad":
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok")
			case "/big":
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n"+big)
			case "/chunked":
				io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n")
			case "/toclose":
				io.WriteString(c, "HTTP/1.1 200 OK\r\n\r\nbye")
				return
			default:
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			}
		}
	})
	g, err := New(Options{Config: oneUpstream(up), ResponseHeaderTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	ls := g.NewLeanServer(nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { _ = ls.Serve(ln); close(served) }()
	addr := ln.Addr().String()
	for _, req := range []string{"GET /ok", "GET /short", "GET /long", "GET /bad", "GET /chunked", "GET /toclose", "HEAD /long", "HEAD /ok", "GET /ok"} {
		c, br := dialLean(t, addr)
		if _, err := io.WriteString(c, req+" HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, br) // to the end, whatever it is
	}
	// A client that leaves while a large body is relayed.
	c, br := dialLean(t, addr)
	_, _ = io.WriteString(c, "GET /big HTTP/1.1\r\nHost: h\r\n\r\n")
	_, _ = br.ReadString('\n')
	_ = c.Close()
	_ = ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ls.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	<-served
	g.lean.mu.Lock()
	defer g.lean.mu.Unlock()
	if len(g.lean.m) != 1 {
		t.Fatalf("%d lean pools, want 1", len(g.lean.m))
	}
	for k, p := range g.lean.m {
		p.mu.Lock()
		if p.open != len(p.idle) {
			t.Errorf("%s: %d open, %d idle", k.addr, p.open, len(p.idle))
		}
		p.mu.Unlock()
	}
}

// BenchmarkIdleReadable is the cost the lean pool adds to each reuse of a
// plain TCP connection: one non-blocking peek.
func BenchmarkIdleReadable(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			defer c.Close()
			_, _ = io.Copy(io.Discard, c)
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	p := newPeeker(c)
	b.ReportAllocs()
	for b.Loop() {
		if p.idleReadable() {
			b.Fatal("an idle connection is readable")
		}
	}
}

// With every connection to a target in use, a request waits for one to
// come back, up to the dial timeout, as the fast engine's clients wait;
// past it, 502.
func TestLeanPoolWaitsForAFreeConnection(t *testing.T) {
	for _, tc := range []struct {
		name        string
		dialTimeout time.Duration
		want        []int
	}{
		{"waits", 5 * time.Second, []int{200, 200}},
		{"gives up", 100 * time.Millisecond, []int{200, http.StatusBadGateway}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				time.Sleep(300 * time.Millisecond)
			}))
			defer up.Close()
			g := proxyTo(t, up, Options{DialTimeout: tc.dialTimeout})
			url, _ := serveLean(t, g)
			for _, p := range g.state.Load().upstreams["u"].lean {
				p.limit = 1
			}
			codes := make(chan int, 2)
			for i := range 2 {
				go func() {
					if i == 1 {
						time.Sleep(50 * time.Millisecond) // the first holds the one connection
					}
					resp, err := http.Get(url + "/")
					if err != nil {
						codes <- 0
						return
					}
					resp.Body.Close()
					codes <- resp.StatusCode
				}()
			}
			got := []int{<-codes, <-codes}
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("statuses %v, want %v", got, tc.want)
			}
		})
	}
}
