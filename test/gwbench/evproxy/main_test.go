package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// engines runs test against both engines.
func engines(t *testing.T, test func(t *testing.T, engine string)) {
	for _, e := range []string{"gnet", "goroutines"} {
		t.Run(e, func(t *testing.T) { test(t, e) })
	}
}

// startProxy starts an upstream with h and evproxy on engine in front of
// it, both on 127.0.0.1, and returns the proxy's address.
func startProxy(t *testing.T, engine string, h http.Handler) string {
	t.Helper()
	up := httptest.NewServer(h)
	t.Cleanup(up.Close)
	return startProxyTo(t, engine, strings.TrimPrefix(up.URL, "http://"))
}

func startProxyTo(t *testing.T, engine, target string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if engine == "goroutines" {
		done := make(chan error, 1)
		go func() { done <- serveGoroutines(ln, target) }()
		t.Cleanup(func() {
			_ = ln.Close()
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
		})
		return addr
	}
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	p, err := newProxy(target)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.run(addr, 2) }()
	select {
	case <-p.booted:
	case err := <-done:
		t.Fatalf("evproxy did not start: %v", err)
	}
	t.Cleanup(func() {
		if err := p.stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
		<-done
	})
	return addr
}

// client is one keep-alive connection to the proxy.
type client struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	// A hang guard only: no assertion depends on how long anything takes.
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	return &client{t: t, conn: c, r: bufio.NewReader(c)}
}

// do sends raw and reads one response to method.
func (c *client) do(method, raw string) (*http.Response, []byte) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, raw); err != nil {
		c.t.Fatal(err)
	}
	resp, err := http.ReadResponse(c.r, &http.Request{Method: method})
	if err != nil {
		c.t.Fatalf("reading the response to %q: %v", raw[:min(len(raw), 40)], err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return resp, body
}

func TestKeepAliveRequestsShareOneUpstreamConnection(t *testing.T) {
	engines(t, func(t *testing.T, engine string) {
		var mu sync.Mutex
		var peers []string
		addr := startProxy(t, engine, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			peers = append(peers, r.RemoteAddr)
			mu.Unlock()
			w.Header().Set("X-Path", r.URL.Path)
			_, _ = io.WriteString(w, "ok\n")
		}))
		c := dial(t, addr)
		for i := range 5 {
			path := "/r" + strconv.Itoa(i)
			resp, body := c.do("GET", "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n")
			if resp.StatusCode != 200 || string(body) != "ok\n" || resp.Header.Get("X-Path") != path {
				t.Fatalf("request %d: %d %q X-Path %q", i, resp.StatusCode, body, resp.Header.Get("X-Path"))
			}
		}
		mu.Lock()
		defer mu.Unlock()
		for _, p := range peers[1:] {
			if p != peers[0] {
				t.Fatalf("the upstream saw connections %v, want one kept alive", peers)
			}
		}
	})
}

func TestRequestAndResponseBodiesAreStreamedWhole(t *testing.T) {
	engines(t, func(t *testing.T, engine string) {
		big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
		addr := startProxy(t, engine, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost {
				b, err := io.ReadAll(r.Body)
				if err != nil {
					http.Error(w, err.Error(), 500)
					return
				}
				fmt.Fprintf(w, "%d %x", len(b), sha256.Sum256(b))
				return
			}
			w.Header().Set("Content-Length", strconv.Itoa(len(big)))
			_, _ = w.Write(big)
		}))
		c := dial(t, addr)
		// The body goes in several writes, after the header.
		post := big[:300_000]
		if _, err := fmt.Fprintf(c.conn, "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", len(post)); err != nil {
			t.Fatal(err)
		}
		for rest := post; len(rest) > 0; rest = rest[min(len(rest), 70_000):] {
			if _, err := c.conn.Write(rest[:min(len(rest), 70_000)]); err != nil {
				t.Fatal(err)
			}
		}
		resp, body := c.do("POST", "")
		if want := fmt.Sprintf("%d %x", len(post), sha256.Sum256(post)); resp.StatusCode != 200 || string(body) != want {
			t.Fatalf("POST: %d %q, want %q", resp.StatusCode, body, want)
		}
		resp, body = c.do("GET", "GET /down HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp.StatusCode != 200 || !bytes.Equal(body, big) {
			t.Fatalf("GET: %d, %d bytes, equal %v", resp.StatusCode, len(body), bytes.Equal(body, big))
		}
		// HEAD: the length is the GET's, no body follows, and the
		// connection still serves the next request.
		resp, _ = c.do("HEAD", "HEAD /down HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp.StatusCode != 200 || resp.ContentLength != int64(len(big)) {
			t.Fatalf("HEAD: %d, length %d", resp.StatusCode, resp.ContentLength)
		}
		resp, body = c.do("POST", "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
		if want := fmt.Sprintf("3 %x", sha256.Sum256([]byte("abc"))); string(body) != want {
			t.Fatalf("POST after HEAD: %d %q, want %q", resp.StatusCode, body, want)
		}
	})
}

func TestHopByHopHeadersAreDroppedBothWays(t *testing.T) {
	engines(t, func(t *testing.T, engine string) {
		addr := startProxy(t, engine, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Saw", r.Header.Get("Keep-Alive")+"|"+r.Header.Get("Proxy-Connection")+"|"+r.Header.Get("X-End"))
			w.Header().Set("Keep-Alive", "timeout=5")
			_, _ = io.WriteString(w, "ok")
		}))
		c := dial(t, addr)
		resp, _ := c.do("GET", "GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\nKeep-Alive: timeout=9\r\nProxy-Connection: x\r\nX-End: kept\r\n\r\n")
		if got := resp.Header.Get("X-Saw"); got != "||kept" {
			t.Fatalf("the upstream saw Keep-Alive|Proxy-Connection|X-End = %q, want only X-End", got)
		}
		if resp.Header.Get("Keep-Alive") != "" {
			t.Fatalf("the upstream's Keep-Alive header reached the client")
		}
	})
}

func TestConnectionCloseIsHonoured(t *testing.T) {
	engines(t, func(t *testing.T, engine string) {
		addr := startProxy(t, engine, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") }))
		c := dial(t, addr)
		resp, body := c.do("GET", "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		if resp.StatusCode != 200 || string(body) != "ok" {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
		if n, err := c.r.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("after Connection: close the proxy kept the connection: read %d, %v", n, err)
		}
	})
}

func TestUnsupportedAndMalformedMessagesGetPreciseErrors(t *testing.T) {
	engines(t, func(t *testing.T, engine string) {
		addr := startProxy(t, engine, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/chunked" { // no length: net/http sends it chunked
				_, _ = io.WriteString(w, "part")
				w.(http.Flusher).Flush()
				_, _ = io.WriteString(w, "rest")
				return
			}
			_, _ = io.WriteString(w, "ok")
		}))
		for _, tc := range []struct {
			raw    string
			status int
			msg    string
		}{
			{"GET /chunked HTTP/1.1\r\nHost: x\r\n\r\n", 502, "without Content-Length"},
			{"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 501, "Transfer-Encoding is not supported"},
			{"GET /\r\n\r\n", 400, "malformed request line"},
			{"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 400, `unsupported HTTP version "HTTP/2.0"`},
			{"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400, "conflicting Content-Length"},
			{"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400, "invalid Content-Length"},
			{"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", 400, "malformed header line"},
			{"GET / HTTP/1.1\r\nX: " + strings.Repeat("a", maxHeader) + "\r\n\r\n", 431, "request header too large"},
		} {
			c := dial(t, addr)
			resp, body := c.do("GET", tc.raw)
			if resp.StatusCode != tc.status || !strings.Contains(string(body), tc.msg) {
				t.Errorf("%q: %d %q, want %d with %q", tc.raw[:min(len(tc.raw), 30)], resp.StatusCode, body, tc.status, tc.msg)
			}
		}
	})
}

func TestAnUnreachableUpstreamGets502(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	_ = ln.Close() // nothing listens there any more
	engines(t, func(t *testing.T, engine string) {
		c := dial(t, startProxyTo(t, engine, dead))
		resp, body := c.do("GET", "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp.StatusCode != 502 || !strings.Contains(string(body), "upstream unreachable") {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
	})
}
