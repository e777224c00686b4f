//go:build linux

package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/fluxgate/fluxgate/internal/testbin"
	"github.com/fluxgate/fluxgate/metricnames"
)

// h2cClient is net/http's HTTP/2 client with prior knowledge over plain
// TCP: one connection, its streams multiplexed.
func h2cClient(t *testing.T) *http.Client {
	tr := &http.Transport{Protocols: new(http.Protocols), HTTP2: &http.HTTP2Config{}}
	tr.Protocols.SetUnencryptedHTTP2(true)
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

// streamEchoTarget answers with what it got: method, path, a field, the cookie,
// the body's length and digest; /big/N answers N bytes, chunked.
func streamEchoTarget(t *testing.T) *httptest.Server {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n, ok := strings.CutPrefix(r.URL.Path, "/big/"); ok {
			size, _ := strconv.Atoi(n)
			piece := []byte(strings.Repeat("z", 4096))
			for sent := 0; sent < size; sent += len(piece) {
				_, _ = w.Write(piece[:min(len(piece), size-sent)])
				w.(http.Flusher).Flush() // chunked
			}
			return
		}
		b, _ := io.ReadAll(r.Body)
		sum := sha256.Sum256(b)
		w.Header().Set("X-Got", fmt.Sprintf("%s %s user=%s cookie=%s len=%d cl=%d", r.Method, r.URL.RequestURI(), r.Header.Get("X-User"), r.Header.Get("Cookie"), len(b), r.ContentLength))
		_, _ = io.WriteString(w, hex.EncodeToString(sum[:]))
	}))
	t.Cleanup(up.Close)
	return up
}

// loopH2To serves a gateway to up on the loop engine with HTTP/2 on the
// loops, and returns its http:// address and server.
func loopH2To(t *testing.T, up *httptest.Server, opts Options) (string, *LoopServer) {
	t.Helper()
	g := proxyTo(t, up, opts)
	addr, s := serveLoopWith(t, g, func(s *LoopServer) { s.h2 = g.NewHTTP2Server(nil) })
	return "http://" + addr, s
}

// TestLoopH2Serves: HTTP/2 clients with prior knowledge are served on the
// loops — many streams at once on one connection, bodies of known and
// unknown length both ways, past the windows, HEAD, cookies — with no
// hand-over (the loop server here has no HTTP/2 server to hand to).
func TestLoopH2Serves(t *testing.T) {
	up := streamEchoTarget(t)
	base, s := loopH2To(t, up, Options{Registerer: prometheus.NewRegistry()})
	client := h2cClient(t)
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := range 30 {
		wg.Go(func() {
			size := i * 23 << 10 // up to 650 KiB
			body := strings.Repeat("b", size)
			var rd io.Reader = strings.NewReader(body)
			if i%2 == 1 {
				rd = io.NopCloser(rd) // no length: the gateway gathers the body
			}
			req, _ := http.NewRequest(http.MethodPost, base+"/p/"+strconv.Itoa(i)+"?q=1", rd)
			req.Header.Set("X-User", "u"+strconv.Itoa(i))
			req.AddCookie(&http.Cookie{Name: "a", Value: "1"})
			req.AddCookie(&http.Cookie{Name: "b", Value: "2"})
			resp, err := client.Do(req)
			if err != nil {
				errs <- err
				return
			}
			got, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			sum := sha256.Sum256([]byte(body))
			cl := size
			if i%2 == 1 {
				cl = -1 // no length: it goes chunked, as it comes, through the lean engine
			}
			want := fmt.Sprintf("POST /p/%d?q=1 user=u%d cookie=a=1; b=2 len=%d cl=%d", i, i, size, cl)
			if resp.ProtoMajor != 2 || resp.StatusCode != 200 || string(got) != hex.EncodeToString(sum[:]) || resp.Header.Get("X-Got") != want {
				errs <- fmt.Errorf("stream %d: %s %d %q X-Got %q, want %q", i, resp.Proto, resp.StatusCode, got, resp.Header.Get("X-Got"), want)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	resp, err := client.Get(base + "/big/1048576")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != 200 || len(got) != 1<<20 || strings.Trim(string(got), "z") != "" {
		t.Errorf("1 MiB chunked answer: %d, %d bytes", resp.StatusCode, len(got))
	}
	head, err := client.Head(base + "/h")
	if err != nil || head.StatusCode != 200 || head.ContentLength != 64 {
		t.Errorf("HEAD: %v %v", head, err)
	}
	for _, r := range []string{metricnames.HandoverH2C, metricnames.HandoverRequest} {
		if n := testutil.ToFloat64(s.g.metrics.handovers.WithLabelValues(r)); n != 0 {
			t.Errorf("handovers{reason=%s} = %v, want 0", r, n)
		}
	}
	// Bodies of unknown length (the odd streams) and past leanMaxBody
	// (69 KiB and up: the even streams from 4) go to the lean engine,
	// each on its own; the others are served on the loop.
	if n := testutil.ToFloat64(s.g.metrics.handovers.WithLabelValues(metricnames.HandoverHTTP2Stream)); n != 28 {
		t.Errorf("handovers{reason=h2_stream} = %v, want 28", n)
	}
}

// A stream the loop would hand on (a route to upstream TLS) goes to the
// lean engine on its own, counted; the connection goes on serving.
func TestLoopH2HandsStreamsOn(t *testing.T) {
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "tls") }))
	t.Cleanup(up.Close)
	opts := Options{Registerer: prometheus.NewRegistry()}
	startTarget(up, true, &opts)
	g, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	addr, _ := serveLoopWith(t, g, func(s *LoopServer) { s.h2 = g.NewHTTP2Server(nil) })
	client := h2cClient(t)
	for range 2 {
		resp, err := client.Get("http://" + addr + "/x")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "tls" {
			t.Fatalf("%d %q, want 200 tls", resp.StatusCode, b)
		}
	}
	if n := testutil.ToFloat64(g.metrics.handovers.WithLabelValues(metricnames.HandoverHTTP2Stream)); n != 2 {
		t.Errorf("handovers{reason=h2_stream} = %v, want 2", n)
	}
}

// A client that resets a stream while the target answers: the target's
// connection is cut (it sees its client gone), and the connection serves
// the next stream.
func TestLoopH2ClientReset(t *testing.T) {
	gone := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			select {
			case <-r.Context().Done():
				close(gone)
			case <-time.After(10 * time.Second):
			}
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(up.Close)
	base, _ := loopH2To(t, up, Options{Registerer: prometheus.NewRegistry()})
	client := h2cClient(t)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/slow", nil)
	go func() { time.Sleep(100 * time.Millisecond); cancel() }()
	if _, err := client.Do(req); err == nil {
		t.Fatal("the reset request was answered")
	}
	select {
	case <-gone:
	case <-time.After(5 * time.Second):
		t.Fatal("the target's connection was not cut after the client reset its stream")
	}
	resp, err := client.Get(base + "/next")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if string(b) != "ok" {
		t.Errorf("next stream: %d %q", resp.StatusCode, b)
	}
}

// Shutdown lets a stream in flight finish, and closes the connection.
func TestLoopH2Shutdown(t *testing.T) {
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		_, _ = io.WriteString(w, "done")
	}))
	t.Cleanup(up.Close)
	g := proxyTo(t, up, Options{Registerer: prometheus.NewRegistry()})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	s, err := g.NewLoopServer(nil, 1)
	if err != nil {
		t.Fatal(err)
	}
	s.h2 = g.NewHTTP2Server(nil)
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	waitServing(t, s)
	addr := ln.Addr().String()
	client := h2cClient(t)
	answered := make(chan string, 1)
	go func() {
		resp, err := client.Get("http://" + addr + "/inflight")
		if err != nil {
			answered <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		answered <- string(b)
	}()
	waitUntil(t, "the stream to open", func() bool {
		var n atomic.Int64 // counted on the loops at once
		s.onLoops(func(st *loopState) { n.Add(int64(len(st.h2s))) })
		return n.Load() == 1
	})
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- s.Shutdown(ctx)
	}()
	time.Sleep(100 * time.Millisecond)
	close(release)
	if got := <-answered; got != "done" {
		t.Errorf("the stream in flight got %q, want done", got)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
}

// TestLoopH2Spec runs every h2spec case (RFC 7540 and HPACK, strict ones
// included) against the loop engine's HTTP/2 with prior knowledge, its
// streams proxied to a target. All pass but one, which does not apply to a
// listener that serves HTTP/1.1 too: 3.5 #2 sends "INVALID CONNECTION
// PREFACE" and wants the connection closed; the gateway reads an HTTP/1.1
// request there and answers it (400), as its lean engine does with h2c.
func TestLoopH2Spec(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "hello")
	}))
	t.Cleanup(up.Close)
	base, _ := loopH2To(t, up, Options{Registerer: prometheus.NewRegistry()})
	failed, failures, out := testbin.H2spec(t, strings.TrimPrefix(base, "http://"), false)
	if failed != 1 || !bytes.Contains(failures, []byte("3.5. HTTP/2 Connection Preface")) || !bytes.Contains(failures, []byte("× 2: Sends invalid connection preface")) {
		t.Fatalf("h2spec: %d failed, want only 3.5 #2 (an invalid preface, read as HTTP/1.1)\n%s", failed, out)
	}
}

// h2AllocRequests are the requests TestLoopH2RequestAllocations counts.
const h2AllocRequests = 2000

// TestLoopH2RequestAllocations counts the objects a stream allocates in
// the process, client included (a raw framer reusing its frames), one
// stream at a time on one connection: the loop's HTTP/2 must not give
// back what the loop engine saved.
func TestLoopH2RequestAllocations(t *testing.T) {
	g, err := New(Options{Config: oneUpstream(rawTarget(t))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	addr, _ := serveLoopWith(t, g, func(s *LoopServer) { s.h2 = g.NewHTTP2Server(nil) })
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, bufio.NewReader(c))
	fr.SetReuseFrames()
	_ = fr.WriteSettings()
	_ = fr.WriteWindowUpdate(0, 1<<30)
	var hbuf bytes.Buffer
	enc := hpack.NewEncoder(&hbuf)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "shop.example.com"}, {":path", "/items?id=7"},
		{"user-agent", "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0"}, {"accept", "*/*"}, {"x-user", "alice"}} {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	block := append([]byte(nil), hbuf.Bytes()...) // the same block each time: indexed after the first
	hbuf.Reset()
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "shop.example.com"}, {":path", "/items?id=7"},
		{"user-agent", "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0"}, {"accept", "*/*"}, {"x-user", "alice"}} {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	again := append([]byte(nil), hbuf.Bytes()...)
	id := uint32(1)
	one := func() {
		b := again
		if id == 1 {
			b = block
		}
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: b, EndStream: true, EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				t.Fatal(err)
			}
			if f.Header().StreamID == id && f.Header().Flags.Has(http2.FlagDataEndStream) {
				break
			}
			if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
				_ = fr.WriteSettingsAck()
			}
		}
		id += 2
	}
	for range 200 {
		one()
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range h2AllocRequests {
		one()
	}
	runtime.ReadMemStats(&after)
	objects := float64(after.Mallocs-before.Mallocs) / h2AllocRequests
	t.Logf("%.2f objects, %.0f bytes a request", objects, float64(after.TotalAlloc-before.TotalAlloc)/h2AllocRequests)
	// 8 on 2026-12-06 (31 before the loops kept their streams'
	// loopConns): the Session's stream, request and fields, the
	// header strings of the answer, the Framer's HEADERS frame.
	want := 12.0
	if raceEnabled {
		want *= 2
	}
	if objects > want {
		t.Errorf("a stream allocates %.2f objects, want at most %.0f", objects, want)
	}
}

// Streams one after another reuse the loop's pooled connection to the
// target: a stream's own end (its HTTP/1.1 request says Connection:
// close to the loop) does not reach the target.
func TestLoopH2ReusesTargetConnections(t *testing.T) {
	target, conns := pathTarget(t)
	g, err := New(Options{Config: oneUpstream(target), Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	addr, _ := serveLoopWith(t, g, func(s *LoopServer) { s.h2 = g.NewHTTP2Server(nil) })
	client := h2cClient(t)
	for i := range 20 {
		resp, err := client.Get("http://" + addr + "/r/" + strconv.Itoa(i))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if string(b) != "GET /r/"+strconv.Itoa(i) {
			t.Fatalf("stream %d: %q", i, b)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("the target accepted %d connections for 20 streams in turn, want 1", n)
	}
}

// A connection that sends part of the HTTP/2 preface and stops is closed
// once the head timeout passes, as a partial HTTP/1.1 head is.
func TestLoopH2PartialPrefaceTimesOut(t *testing.T) {
	up := streamEchoTarget(t)
	g := proxyTo(t, up, Options{Registerer: prometheus.NewRegistry()})
	addr, _ := serveLoopWith(t, g, func(s *LoopServer) {
		s.h2 = g.NewHTTP2Server(nil)
		s.lean.headTimeout = 100 * time.Millisecond
	})
	closedAfterHalfPreface(t, addr)
}

// A loop keeps the loopConns of finished streams for its next ones: each
// stream starts clean of the last one's request, answer and framing.
func TestLoopH2RecycledStreamsStartClean(t *testing.T) {
	up := streamEchoTarget(t)
	base, _ := loopH2To(t, up, Options{Registerer: prometheus.NewRegistry()})
	client := h2cClient(t)
	do := func(method, path, user, body string) (*http.Response, string) {
		t.Helper()
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, _ := http.NewRequest(method, base+path, rd)
		if user != "" {
			req.Header.Set("X-User", user)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		return resp, string(b)
	}
	sum := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	for round := range 3 {
		if resp, b := do(http.MethodPost, "/a", "u1", "0123456789"); resp.Header.Get("X-Got") != "POST /a user=u1 cookie= len=10 cl=10" || b != sum("0123456789") {
			t.Fatalf("round %d POST: %q %q", round, resp.Header.Get("X-Got"), b)
		}
		if resp, b := do(http.MethodHead, "/h", "", ""); resp.StatusCode != 200 || b != "" {
			t.Fatalf("round %d HEAD: %d %q", round, resp.StatusCode, b)
		}
		if resp, b := do(http.MethodGet, "/b", "", ""); resp.Header.Get("X-Got") != "GET /b user= cookie= len=0 cl=0" || b != sum("") {
			t.Fatalf("round %d GET after HEAD: %q %q", round, resp.Header.Get("X-Got"), b)
		}
		if resp, b := do(http.MethodGet, "/big/70000", "", ""); resp.StatusCode != 200 || len(b) != 70000 {
			t.Fatalf("round %d chunked: %d, %d bytes", round, resp.StatusCode, len(b))
		}
	}
}

// With gateway.http2.server loop over TLS, clients that choose h2 by ALPN
// are served on the loops too: streams at once with bodies both ways,
// X-Forwarded-Proto https, nothing on the lean engine.
func TestLoopH2OverTLS(t *testing.T) {
	ls := loopTLSTo(t, Options{Config: oneUpstream(echoTarget(t))}, func(s *LoopServer) { s.h2 = s.g.NewHTTP2Server(nil) })
	cfg := ls.client.Clone()
	cfg.NextProtos = nil
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Go(func() {
			body := strings.Repeat("t", i*7<<10) // up to 133 KiB: past 64 KiB, the lean engine serves it, over the loop's TLS
			resp, err := client.Post(fmt.Sprintf("https://%s/h2/%d", ls.addr, i), "text/plain", strings.NewReader(body))
			if err != nil {
				errs <- err
				return
			}
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			e := echoed(t, string(b))
			if resp.ProtoMajor != 2 || resp.StatusCode != 200 || e.Header.Get("X-Forwarded-Proto") != "https" || e.Body != body {
				errs <- fmt.Errorf("stream %d: %s %d, %d bytes echoed of %d, proto %q", i, resp.Proto, resp.StatusCode, len(e.Body), len(body), e.Header.Get("X-Forwarded-Proto"))
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := loopConns(ls.s); n != 1 {
		t.Errorf("%d connections on the loops, want the HTTP/2 one", n)
	}
	if n := leanConns(ls.s); n != 0 {
		t.Errorf("%d connections on the lean engine, want 0 (streams handed on go as connections of their own, and end)", n)
	}
}

// h2spec against the loops' HTTP/2 over TLS: every case.
func TestLoopH2SpecOverTLS(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "hello")
	}))
	t.Cleanup(up.Close)
	g := proxyTo(t, up, Options{Registerer: prometheus.NewRegistry()})
	ls := serveLoopTLS(t, g, func(s *LoopServer) { s.h2 = g.NewHTTP2Server(nil) })
	if failed, _, out := testbin.H2spec(t, ls.addr, true); failed != 0 {
		t.Fatalf("h2spec: %d failed\n%s", failed, out)
	}
}

// loopH2Addr serves g over TLS on the loop engine with HTTP/2 on the
// loops and returns its address and a client configuration that trusts
// it (TestHTTP2ServersAgree's third server).
func loopH2Addr(t *testing.T, g *Gateway) (string, *tls.Config) {
	ls := serveLoopTLS(t, g, func(s *LoopServer) { s.h2 = g.NewHTTP2Server(nil) })
	return ls.addr, ls.client
}

// An idle HTTP/2 connection on a loop holds no read buffer: it reads into
// its loop's and keeps only a frame not yet whole (42 KiB of heap an idle
// connection, client side included, before; 26 KiB after, by hand).
func TestLoopH2IdleConnectionsHoldNoReadBuffer(t *testing.T) {
	up := streamEchoTarget(t)
	g := proxyTo(t, up, Options{Registerer: prometheus.NewRegistry()})
	addr, s := serveLoopWith(t, g, func(s *LoopServer) { s.h2 = g.NewHTTP2Server(nil) })
	for i := range 20 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		fr := http2.NewFramer(c, c)
		_, _ = io.WriteString(c, http2.ClientPreface)
		_ = fr.WriteSettings()
		if i%2 == 1 { // half of them end on a frame cut short: its start waits in the connection's buffer
			_, _ = c.Write([]byte{0, 0, 8, byte(http2.FramePing), 0, 0, 0, 0, 0, 1, 2})
		}
		if _, err := fr.ReadFrame(); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, "the connections on the loops", func() bool { return loopConns(s) == 20 })
	var held, partial atomic.Int64 // counted on both loops at once
	waitUntil(t, "their reads done", func() bool {
		held.Store(0)
		partial.Store(0)
		s.onLoops(func(st *loopState) {
			for h := range st.h2s {
				switch {
				case len(h.in) > 0:
					partial.Add(1)
				case h.in != nil:
					held.Add(1)
				}
			}
		})
		return partial.Load() == 10
	})
	if n := held.Load(); n != 0 {
		t.Errorf("%d idle connections hold an empty read buffer, want 0", n)
	}
}
