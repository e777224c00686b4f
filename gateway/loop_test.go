//go:build linux

package gateway

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fluxgate/fluxgate/controlpoint"
	"github.com/fluxgate/fluxgate/controlpoint/flow"
	"github.com/fluxgate/fluxgate/metricnames"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func init() { engines = append(engines, "loop") }

// serveLoopAddr serves g on the loop engine (two loops) on a loopback
// port until the test ends and returns its address.
func serveLoopAddr(t testing.TB, g *Gateway) string {
	t.Helper()
	addr, _ := serveLoopWith(t, g, nil)
	return addr
}

// startLoop serves g on loops event loops, on a listener of its own
// closed at the test's end; the test shuts the server down itself, and
// served tells what Serve returned.
func startLoop(t *testing.T, g *Gateway, loops int) (s *LoopServer, addr string, served <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	s, err = g.NewLoopServer(nil, loops)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	waitServing(t, s)
	return s, ln.Addr().String(), done
}

// acceptedOnFourClients sends 25 requests on each of four connections to
// addr at once (with extra header lines, "" for none) and checks that
// each is admitted (X-FluxGate-Decision: accepted) and answered by a
// pathTarget.
func acceptedOnFourClients(t *testing.T, addr, extra string) {
	t.Helper()
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			c, br := dialLean(t, addr)
			for j := range 25 {
				if _, err := fmt.Fprintf(c, "GET /c%d/%d HTTP/1.1\r\nHost: h\r\n%s\r\n", i, j, extra); err != nil {
					t.Error(err)
					return
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Error(err)
					return
				}
				b, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != 200 || string(b) != fmt.Sprintf("GET /c%d/%d", i, j) || resp.Header.Get("X-FluxGate-Decision") != "accepted" {
					t.Errorf("conn %d request %d: %d %q %v", i, j, resp.StatusCode, b, resp.Header)
					return
				}
			}
		})
	}
	wg.Wait()
}

// serveLoopWith is serveLoopAddr with the server set up by setup first;
// it returns the server too.
func serveLoopWith(t testing.TB, g *Gateway, setup func(*LoopServer)) (string, *LoopServer) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := g.NewLoopServer(nil, 2)
	if err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(s)
	}
	done := make(chan struct{})
	go func() { _ = s.Serve(ln); close(done) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
		_ = ln.Close()
		<-done
	})
	waitServing(t, s)
	return ln.Addr().String(), s
}

// waitServing waits until s accepts (Serve registered the listener).
func waitServing(t testing.TB, s *LoopServer) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		ok := s.accept != nil || s.tlsLn != nil
		s.mu.Unlock()
		if ok {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("the loop server did not start accepting")
}

// loopTo serves a gateway to addr on the loop engine, with opts, and
// returns its address and server.
func loopTo(t *testing.T, opts Options, setup func(*LoopServer)) (string, *LoopServer) {
	t.Helper()
	return serveLoopWith(t, loopGateway(t, opts), setup)
}

// loopGateway is a gateway with opts (a response header timeout of 5 s
// unless set), closed at the test's end.
func loopGateway(t *testing.T, opts Options) *Gateway {
	t.Helper()
	if opts.ResponseHeaderTimeout == 0 {
		opts.ResponseHeaderTimeout = 5 * time.Second
	}
	g, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	return g
}

// pathTarget answers each request with its path, counting the
// connections it accepted.
func pathTarget(t *testing.T) (addr string, conns *atomic.Int64) {
	conns = new(atomic.Int64)
	addr = scriptedUpstream(t, func(c net.Conn, br *bufio.Reader) {
		conns.Add(1)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, req.Body)
			body := req.Method + " " + req.URL.Path
			if _, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body); err != nil {
				return
			}
		}
	})
	return addr, conns
}

// Many requests on one kept-alive client connection go over one pooled
// connection to the target.
func TestLoopKeepAlive(t *testing.T) {
	up, conns := pathTarget(t)
	addr, _ := loopTo(t, Options{Config: oneUpstream(up)}, nil)
	c, br := dialLean(t, addr)
	for i := range 200 {
		resp, body := exchangeOn(t, c, br, fmt.Sprintf("GET /r%d HTTP/1.1\r\nHost: h\r\n\r\n", i))
		if resp.StatusCode != 200 || body != fmt.Sprintf("GET /r%d", i) {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("the target saw %d connections, want 1", n)
	}
}

// Pipelined requests are answered in order.
func TestLoopPipelined(t *testing.T) {
	up, _ := pathTarget(t)
	addr, _ := loopTo(t, Options{Config: oneUpstream(up)}, nil)
	c, br := dialLean(t, addr)
	var raw strings.Builder
	for i := range 50 {
		if i%3 == 1 {
			fmt.Fprintf(&raw, "POST /p%d HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nab", i)
			continue
		}
		fmt.Fprintf(&raw, "GET /p%d HTTP/1.1\r\nHost: h\r\n\r\n", i)
	}
	if _, err := io.WriteString(c, raw.String()); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		want := fmt.Sprintf("GET /p%d", i)
		if i%3 == 1 {
			want = fmt.Sprintf("POST /p%d", i)
		}
		if string(b) != want {
			t.Fatalf("answer %d is %q, want %q", i, b, want)
		}
	}
}

// bigTarget answers with size bytes, chunked (chunked true) or delimited
// by its close.
func bigTarget(t *testing.T, size int, chunked bool) string {
	return scriptedUpstream(t, func(c net.Conn, br *bufio.Reader) {
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		piece := []byte(strings.Repeat("z", 8<<10))
		bw := bufio.NewWriterSize(c, 64<<10)
		if chunked {
			fmt.Fprint(bw, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
			for sent := 0; sent < size; sent += len(piece) {
				fmt.Fprintf(bw, "%x\r\n%s\r\n", len(piece), piece)
			}
			fmt.Fprint(bw, "0\r\n\r\n")
		} else {
			fmt.Fprint(bw, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
			for sent := 0; sent < size; sent += len(piece) {
				_, _ = bw.Write(piece)
			}
		}
		_ = bw.Flush()
	})
}

// A 1 MiB chunked answer and a 1 MiB answer delimited by the target's
// close reach a client that reads slowly whole, and the gateway holds no
// more of them than a read of the target (headerBuffer) and its framing
// at any time: while the client does not read, the target is not read.
func TestLoopBackPressure(t *testing.T) {
	const size = 1 << 20
	for _, chunked := range []bool{true, false} {
		t.Run(fmt.Sprintf("chunked=%v", chunked), func(t *testing.T) {
			addr, s := loopTo(t, Options{Config: oneUpstream(bigTarget(t, size, chunked))}, func(s *LoopServer) {
				s.sndBuf = 16 << 10 // or the kernel holds the whole answer
			})
			nc, err := net.DialTCP("tcp", nil, mustTCPAddr(t, addr))
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			_ = nc.SetReadBuffer(16 << 10) // a small window: the gateway's writes stop short
			_ = nc.SetDeadline(time.Now().Add(30 * time.Second))
			if _, err := io.WriteString(nc, "GET /big HTTP/1.1\r\nHost: h\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			time.Sleep(200 * time.Millisecond) // the gateway fills the socket and waits
			br := bufio.NewReaderSize(&slowReader{r: nc}, 1024)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			n, err := io.Copy(io.Discard, resp.Body)
			if err != nil || n != size {
				t.Fatalf("got %d bytes, %v; want %d", n, err, size)
			}
			s.mu.Lock()
			q := s.maxQueued
			s.mu.Unlock()
			if q == 0 || q > headerBuffer+64 {
				t.Fatalf("the gateway held up to %d bytes for the client; want some, at most %d", q, headerBuffer+64)
			}
		})
	}
}

// slowReader reads at most 1 KiB at a time, now and then pausing.
type slowReader struct {
	r net.Conn
	n int
}

func (s *slowReader) Read(p []byte) (int, error) {
	s.n++
	if s.n%64 == 0 {
		time.Sleep(time.Millisecond)
	}
	return s.r.Read(p[:min(len(p), 1024)])
}

func mustTCPAddr(t *testing.T, addr string) *net.TCPAddr {
	a, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// A pooled connection the target closed is not used again: the next
// request gets a new one and no error.
func TestLoopIdleUpstreamClosedByTarget(t *testing.T) {
	var conns atomic.Int64
	up := scriptedUpstream(t, func(c net.Conn, br *bufio.Reader) {
		conns.Add(1)
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		time.Sleep(50 * time.Millisecond) // then closes: an idle keep-alive timeout
	})
	addr, _ := loopTo(t, Options{Config: oneUpstream(up)}, nil)
	c, br := dialLean(t, addr)
	for i := range 3 {
		resp, body := exchangeOn(t, c, br, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
		if resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
		time.Sleep(300 * time.Millisecond)
	}
	if n := conns.Load(); n != 3 {
		t.Fatalf("the target saw %d connections, want 3", n)
	}
}

// A target that accepts and never answers: 504 after
// ResponseHeaderTimeout.
func TestLoopResponseHeaderTimeout(t *testing.T) {
	up := scriptedUpstream(t, func(c net.Conn, br *bufio.Reader) {
		_, _ = io.Copy(io.Discard, br)
	})
	addr, _ := loopTo(t, Options{Config: oneUpstream(up), ResponseHeaderTimeout: 200 * time.Millisecond}, nil)
	c, br := dialLean(t, addr)
	resp, body := exchangeOn(t, c, br, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	if resp.StatusCode != http.StatusGatewayTimeout || !strings.Contains(body, "upstream_timeout") {
		t.Fatalf("got %d %q, want 504 upstream_timeout", resp.StatusCode, body)
	}
	// The connection carries the next request.
	resp, _ = exchangeOn(t, c, br, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("second request: %d", resp.StatusCode)
	}
}

// A dead target (nothing listens): a GET moves on to the other target, a
// POST with a body is not sent again (502).
func TestLoopRetriesOnAnotherTarget(t *testing.T) {
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	_ = dead.Close()
	live, _ := pathTarget(t)
	cfg := Config{
		Upstreams: []UpstreamConfig{{Name: "u", Targets: []TargetConfig{{Address: deadAddr}, {Address: live}}}},
		Routes:    []RouteConfig{{ID: "r", Upstream: "u"}},
	}
	addr, _ := loopTo(t, Options{Config: cfg}, nil)
	posts502, gets := 0, 0
	for i := range 4 {
		c, br := dialLean(t, addr)
		resp, body := exchangeOn(t, c, br, "GET /g HTTP/1.1\r\nHost: h\r\n\r\n")
		if resp.StatusCode != 200 || body != "GET /g" {
			t.Fatalf("GET %d: %d %q", i, resp.StatusCode, body)
		}
		gets++
		resp, _ = exchangeOn(t, c, br, "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nx")
		switch resp.StatusCode {
		case 200:
		case http.StatusBadGateway:
			posts502++
		default:
			t.Fatalf("POST %d: %d", i, resp.StatusCode)
		}
	}
	// The refused target is ejected after its first refusal: at most one
	// POST can have gone there, and it must have got 502, not a retry.
	if gets != 4 || posts502 > 1 {
		t.Fatalf("gets %d, POSTs answered 502: %d", gets, posts502)
	}
}

// The POST that meets the dead target first gets 502: not retried.
func TestLoopDoesNotRetryAPost(t *testing.T) {
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	_ = dead.Close()
	live, conns := pathTarget(t)
	cfg := Config{
		Upstreams: []UpstreamConfig{{Name: "u", Targets: []TargetConfig{{Address: live}, {Address: deadAddr}}}},
		Routes:    []RouteConfig{{ID: "r", Upstream: "u"}},
	}
	addr, _ := loopTo(t, Options{Config: cfg}, nil)
	c, br := dialLean(t, addr)
	resp, body := exchangeOn(t, c, br, "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nx")
	// Round robin starts with the second target, the dead one.
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "upstream_unavailable") {
		t.Fatalf("POST: %d %q, want 502", resp.StatusCode, body)
	}
	if conns.Load() != 0 {
		t.Fatal("the POST was sent to the other target")
	}
}

// What the loop hands to the lean engine (a chunked body, an Upgrade) is
// served right, and the connection goes on there.
func TestLoopHandsOver(t *testing.T) {
	addr, _ := loopTo(t, Options{Config: oneUpstream(echoTarget(t))}, nil)
	c, br := dialLean(t, addr)
	resp, body := exchangeOn(t, c, br, "GET /first HTTP/1.1\r\nHost: h\r\n\r\n")
	if resp.StatusCode != 200 || !strings.Contains(body, "/first") {
		t.Fatalf("first: %d %q", resp.StatusCode, body)
	}
	resp, body = exchangeOn(t, c, br, "POST /chunked HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
	if resp.StatusCode != 200 || !strings.Contains(body, "abc") {
		t.Fatalf("chunked: %d %q", resp.StatusCode, body)
	}
	resp, body = exchangeOn(t, c, br, "GET /after HTTP/1.1\r\nHost: h\r\n\r\n")
	if resp.StatusCode != 200 || !strings.Contains(body, "/after") {
		t.Fatalf("after: %d %q", resp.StatusCode, body)
	}
	c2, br2 := dialLean(t, addr)
	resp, _ = exchangeOn(t, c2, br2, "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	if resp.StatusCode == 0 {
		t.Fatal("no answer to an Upgrade")
	}
}

// The head, idle and body timeouts, shortened.
func TestLoopClientTimeouts(t *testing.T) {
	up, _ := pathTarget(t)
	addr, _ := loopTo(t, Options{Config: oneUpstream(up), BodyReadTimeout: 200 * time.Millisecond}, func(s *LoopServer) {
		s.idleTimeout = 200 * time.Millisecond
		s.lean.headTimeout = 200 * time.Millisecond
	})
	closedWithin := func(c net.Conn, br *bufio.Reader, d time.Duration) bool {
		_ = c.SetReadDeadline(time.Now().Add(d))
		_, err := br.ReadByte()
		return err == io.EOF || err != nil && !isTimeout(err)
	}
	// Idle: nothing sent.
	c, br := dialLean(t, addr)
	if !closedWithin(c, br, 3*time.Second) {
		t.Fatal("an idle connection stayed open past the idle timeout")
	}
	// Head: half a head.
	c, br = dialLean(t, addr)
	_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost")
	if !closedWithin(c, br, 3*time.Second) {
		t.Fatal("a connection with half a head stayed open past the head timeout")
	}
	// Body: half a body is answered 408.
	c, br = dialLean(t, addr)
	_, _ = io.WriteString(c, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusRequestTimeout || !resp.Close {
		t.Fatalf("half a body: %d close=%v, want 408 and close", resp.StatusCode, resp.Close)
	}
}

// heldTarget answers "done" to a request once release is closed, after it
// said on arrived that the request came.
func heldTarget(t *testing.T) (addr string, arrived <-chan struct{}, release chan struct{}) {
	release = make(chan struct{})
	came := make(chan struct{}, 1)
	addr = scriptedUpstream(t, func(c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		came <- struct{}{}
		<-release
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone")
	})
	return addr, came, release
}

// Shutdown with a request in flight: the request is answered, then the
// connection closes; an idle connection closes at once.
func TestLoopShutdownFinishesRequests(t *testing.T) {
	up, arrived, release := heldTarget(t)
	g, err := New(Options{Config: oneUpstream(up), ResponseHeaderTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	s, addr, served := startLoop(t, g, 2)
	idle, idleBR := dialLean(t, addr)
	busy, busyBR := dialLean(t, addr)
	if _, err := io.WriteString(busy, "GET / HTTP/1.1\r\nHost: h\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	<-arrived
	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		stopped <- s.Shutdown(ctx)
	}()
	if _, err := idleBR.ReadByte(); err == nil {
		t.Fatal("the idle connection got bytes")
	}
	_ = idle
	close(release)
	resp, err := http.ReadResponse(busyBR, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(b) != "done" || !resp.Close {
		t.Fatalf("in flight: %d %q close=%v", resp.StatusCode, b, resp.Close)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
}

// blockingChecker is a Checker whose checks may wait (it says so): the
// first waits until release is closed; the others pass at once.
type blockingChecker struct {
	checks  atomic.Int64
	release chan struct{}
}

func (b *blockingChecker) MayWait(string) bool { return true }

func (b *blockingChecker) Check(_ context.Context, req *flow.Request, d *flow.Decision) error {
	d.Reset(req.ControlPoint)
	if b.checks.Add(1) == 1 {
		<-b.release
	}
	return nil
}

// A check that may wait runs off the loop: while it waits, the loop (one
// here) serves another connection; then the first request is answered.
func TestLoopAdmitsOffTheLoop(t *testing.T) {
	up, _ := pathTarget(t)
	ck := &blockingChecker{release: make(chan struct{})}
	g, err := New(Options{Config: oneUpstream(up), Checker: ck, ResponseHeaderTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s, err := g.NewLoopServer(nil, 1)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	waitServing(t, s)
	first, firstBR := dialLean(t, ln.Addr().String())
	if _, err := io.WriteString(first, "GET /first HTTP/1.1\r\nHost: h\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	for ck.checks.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	second, secondBR := dialLean(t, ln.Addr().String())
	_ = second.SetDeadline(time.Now().Add(3 * time.Second))
	resp, body := exchangeOn(t, second, secondBR, "GET /second HTTP/1.1\r\nHost: h\r\n\r\n")
	if resp.StatusCode != 200 || body != "GET /second" {
		t.Fatalf("second: %d %q", resp.StatusCode, body)
	}
	close(ck.release)
	resp, err = http.ReadResponse(firstBR, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(b) != "GET /first" || resp.Header.Get("X-FluxGate-Decision") == "" {
		t.Fatalf("first: %d %q %v", resp.StatusCode, b, resp.Header)
	}
}

// The loop engine's plain path, under a local rate limiter (decided on
// the loop), allocates next to nothing a request, as the lean engine's
// (TestLeanRequestAllocations): the one copy of the head for the flow
// labels. Counted over the whole process, the test's client included.
func TestLoopRequestAllocations(t *testing.T) {
	e := allocEngine(t, allocPolicy)
	if e.MayWait("ingress") {
		t.Fatal("a local rate limiter may wait, says the engine")
	}
	objects := engineAllocations(t, e, nil, func(g *Gateway) string { return serveLoopAddr(t, g) })
	want := 1.5
	if raceEnabled {
		want = 3 // the pools drop a share
	}
	if objects > want {
		t.Errorf("the loop engine allocates %.2f objects a request, want at most %.1f", objects, want)
	}
}

// A panic in request code on the loop (a bug) answers 500, closes the
// connection and gives the breaker's permit back; the loop serves on.
func TestLoopPanicReleasesBreakerPermit(t *testing.T) {
	panicReleasesBreakerPermit(t, func(g *Gateway) string { return serveLoopAddr(t, g) })
}

// A reload (Update) applies from the next request on a connection the
// loop serves, as the lean engine sees it.
func TestLoopReload(t *testing.T) {
	a, _ := pathTarget(t)
	b := scriptedUpstream(t, func(c net.Conn, br *bufio.Reader) {
		for {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb"); err != nil {
				return
			}
		}
	})
	g, err := New(Options{Config: oneUpstream(a), ResponseHeaderTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	addr := serveLoopAddr(t, g)
	c, br := dialLean(t, addr)
	if _, body := exchangeOn(t, c, br, "GET /x HTTP/1.1\r\nHost: h\r\n\r\n"); body != "GET /x" {
		t.Fatalf("before: %q", body)
	}
	if err := g.Update(oneUpstream(b)); err != nil {
		t.Fatal(err)
	}
	if _, body := exchangeOn(t, c, br, "GET /x HTTP/1.1\r\nHost: h\r\n\r\n"); body != "b" {
		t.Fatalf("after the reload: %q, want the new target's", body)
	}
}

// A target named by a host name is dialled aside (a lookup may wait) and
// served the same.
func TestLoopHostNameTarget(t *testing.T) {
	up, _ := pathTarget(t)
	_, port, _ := net.SplitHostPort(up)
	addr, _ := loopTo(t, Options{Config: oneUpstream(net.JoinHostPort("localhost", port))}, nil)
	c, br := dialLean(t, addr)
	for i := range 3 {
		resp, body := exchangeOn(t, c, br, "GET /n HTTP/1.1\r\nHost: h\r\n\r\n")
		if resp.StatusCode != 200 || body != "GET /n" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
}

// loadSchedulerAtIngress queues flows at the gateway's control point; its
// multiplier is high enough that all are admitted.
const loadSchedulerAtIngress = `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: protect, namespace: default}
spec:
  circuit:
    components:
      - flow_control:
          load_scheduler:
            selectors: [{control_point: ingress}]
            in_ports: {load_multiplier: {constant_signal: {value: 10}}}
            parameters:
              default_workload_parameters: {priority: 0, queue_timeout: 1s}
`

// Under a load scheduler (its checks may wait) the loop engine checks off
// the loop, and the requests are admitted and answered with the decision.
func TestLoopLoadSchedulerAdmits(t *testing.T) {
	e := allocEngine(t, loadSchedulerAtIngress)
	if !e.MayWait("ingress") {
		t.Fatal("a load scheduler may not wait, says the engine")
	}
	up, _ := pathTarget(t)
	cfg := oneUpstream(up)
	cfg.Routes[0].ControlPoint = "ingress"
	addr, _ := loopTo(t, Options{Config: cfg, Checker: controlpoint.NewLocalChecker(e)}, nil)
	acceptedOnFourClients(t, addr, "")
}

// With its connections to a target all in use, a loop's request waits
// for one to come back (and is then served on it), or, past the dial
// timeout, is answered 502 as the lean pool's errLeanPoolFull is.
func TestLoopPoolBound(t *testing.T) {
	release := make(chan struct{})
	var conns atomic.Int64
	up := scriptedUpstream(t, func(c net.Conn, br *bufio.Reader) {
		conns.Add(1)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if req.URL.Path == "/slow" {
				<-release
			}
			if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
				return
			}
		}
	})
	g, err := New(Options{Config: oneUpstream(up), ResponseHeaderTimeout: 5 * time.Second, DialTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s, err := g.NewLoopServer(nil, 1)
	if err != nil {
		t.Fatal(err)
	}
	s.loops[0].limit = 1
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	waitServing(t, s)
	slow, slowBR := dialLean(t, ln.Addr().String())
	if _, err := io.WriteString(slow, "GET /slow HTTP/1.1\r\nHost: h\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	for conns.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	// Past the dial timeout: 502.
	c, br := dialLean(t, ln.Addr().String())
	resp, body := exchangeOn(t, c, br, "GET /fast HTTP/1.1\r\nHost: h\r\n\r\n")
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "upstream_unavailable") {
		t.Fatalf("a request past the wait: %d %q, want 502", resp.StatusCode, body)
	}
	// Within it: served once the slow request's connection comes back.
	if _, err := io.WriteString(c, "GET /fast HTTP/1.1\r\nHost: h\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	close(release)
	for _, rd := range []*bufio.Reader{slowBR, br} {
		resp, err := http.ReadResponse(rd, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(b) != "ok" {
			t.Fatalf("%d %q", resp.StatusCode, b)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("the target saw %d connections, want 1 (the bound)", n)
	}
}

// A request that Shutdown's grace cuts before any answer is counted as
// unanswered (status 0), not with the status of the connection's request
// before it.
func TestLoopShutdownCountsACutRequestUnanswered(t *testing.T) {
	n := 0
	up := scriptedUpstream(t, func(c net.Conn, br *bufio.Reader) {
		for {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			if n++; n > 1 {
				_, _ = io.Copy(io.Discard, br) // never answers the second
				return
			}
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	g, err := New(Options{Config: oneUpstream(up), ResponseHeaderTimeout: 10 * time.Second, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	s, addr, served := startLoop(t, g, 1)
	c, br := dialLean(t, addr)
	if _, err := io.WriteString(c, "GET /one HTTP/1.1\r\nHost: h\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.ReadAll(resp.Body)
	if _, err := io.WriteString(c, "GET /two HTTP/1.1\r\nHost: h\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	inflight := g.metrics.inFlight.WithLabelValues("r", http.MethodGet)
	for deadline := time.Now().Add(5 * time.Second); testutil.ToFloat64(inflight) != 1; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the second request never went out")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want its grace to end", err)
	}
	<-served
	counted := func(status string) float64 {
		return testutil.ToFloat64(g.metrics.requests.WithLabelValues("r", up, http.MethodGet, status))
	}
	if got200, got0 := counted("200"), counted("0"); got200 != 1 || got0 != 1 {
		t.Errorf("requests counted: %v with 200, %v with 0; want 1 and 1", got200, got0)
	}
}

// A target connection that went idle before the loop's last wait, and that
// wait did not report, is reused without a peek; one that the target
// wrote to while it was idle is closed on the event, and the next request
// goes out on a new connection and gets its own answer.
func TestLoopReusesQuietConnectionsWithoutPeeking(t *testing.T) {
	var conns atomic.Int64
	stray := make(chan struct{}, 1)
	target := scriptedUpstream(t, func(c net.Conn, br *bufio.Reader) {
		conns.Add(1)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ngood"); err != nil {
				return
			}
			if req.URL.Path == "/stray" {
				// Bytes that answer nothing, well after the answer: the
				// loop learns of them from its wait.
				time.Sleep(20 * time.Millisecond)
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil")
				stray <- struct{}{}
			}
		}
	})
	g, err := New(Options{Config: oneUpstream(target), ResponseHeaderTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	addr, s := serveLoopWith(t, g, nil)
	c, br := dialLean(t, addr)
	get := func(path string) string {
		t.Helper()
		if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: h\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	for i := range 20 {
		if got := get("/"); got != "good" {
			t.Fatalf("request %d: %q", i, got)
		}
		time.Sleep(2 * time.Millisecond) // the loop waits again meanwhile
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("20 requests one after another took %d target connections, want 1", n)
	}
	if n := s.peeks.Load(); n != 0 {
		t.Errorf("%d peeks for connections idle across a wait, want none", n)
	}
	if got := get("/stray"); got != "good" {
		t.Fatalf("/stray: %q", got)
	}
	<-stray
	time.Sleep(50 * time.Millisecond) // the loop's wait reports the stray bytes
	if got := get("/after"); got != "good" {
		t.Errorf("after stray bytes on the idle connection: %q, want the target's answer to it", got)
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("%d target connections, want 2 (the one with stray bytes closed)", n)
	}
}

// A route to a group with upstream TLS goes from the loop to the lean
// engine, which serves it itself: counted once as upstream_tls, and the
// connection's next request stays on lean (not counted again).
func TestLoopCountsUpstreamTLSHandOver(t *testing.T) {
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "over tls "+r.URL.Path)
	}))
	t.Cleanup(up.Close)
	opts := Options{Registerer: prometheus.NewRegistry()}
	startTarget(up, true, &opts)
	addr, s := loopTo(t, opts, nil)
	counted := func() float64 {
		return testutil.ToFloat64(s.g.metrics.handovers.WithLabelValues(metricnames.HandoverUpstreamTLS))
	}
	c, br := dialLean(t, addr)
	for _, path := range []string{"/one", "/two"} {
		resp, body := exchangeOn(t, c, br, "GET "+path+" HTTP/1.1\r\nHost: h\r\n\r\n")
		if resp.StatusCode != 200 || body != "over tls "+path {
			t.Fatalf("%s: %d %q", path, resp.StatusCode, body)
		}
	}
	if n := counted(); n != 1 {
		t.Errorf("upstream_tls hand-overs: %v, want 1", n)
	}
}

// A connection waiting for its next request holds no read buffer: it gave
// it back to its loop, and its next request, on that buffer or another,
// is served as before — connections taking turns never read each other's
// bytes.
func TestLoopIdleConnectionsHoldNoReadBuffer(t *testing.T) {
	up, _ := pathTarget(t)
	addr, s := loopTo(t, Options{Config: oneUpstream(up)}, nil)
	const clients, rounds = 20, 30
	type client struct {
		c  net.Conn
		br *bufio.Reader
	}
	cs := make([]client, clients)
	for i := range cs {
		cs[i].c, cs[i].br = dialLean(t, addr)
	}
	var wg sync.WaitGroup
	for i := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				// Heads of different lengths, some past the buffer's
				// first size: a grown buffer is not given back.
				pad := strings.Repeat("x", (i*r*37)%6000)
				req := fmt.Sprintf("GET /c%d/r%d HTTP/1.1\r\nHost: h\r\nX-Pad: %s\r\n\r\n", i, r, pad)
				if r%4 == 3 {
					req = fmt.Sprintf("POST /c%d/r%d HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc", i, r)
				}
				if _, err := io.WriteString(cs[i].c, req); err != nil {
					t.Error(err)
					return
				}
				resp, err := http.ReadResponse(cs[i].br, nil)
				if err != nil {
					t.Errorf("client %d round %d: %v", i, r, err)
					return
				}
				b, _ := io.ReadAll(resp.Body)
				want := fmt.Sprintf("GET /c%d/r%d", i, r)
				if r%4 == 3 {
					want = fmt.Sprintf("POST /c%d/r%d", i, r)
				}
				if string(b) != want {
					t.Errorf("client %d round %d got %q, want %q", i, r, b, want)
					return
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	// One more small request, alone: its buffer, of the first size, goes
	// back to the loop when it is answered (the others' last buffers may
	// have grown, or been taken by one that grew it, and be dropped).
	if _, err := io.WriteString(cs[0].c, "GET /c0/last HTTP/1.1\r\nHost: h\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if resp, err := http.ReadResponse(cs[0].br, nil); err != nil {
		t.Fatal(err)
	} else {
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
	var mu sync.Mutex
	idle, holding, spare := 0, 0, 0
	waitUntil(t, "every client connection to wait idle", func() bool {
		idle, holding, spare = 0, 0, 0
		s.onLoops(func(st *loopState) {
			mu.Lock()
			defer mu.Unlock()
			for c := range st.conns {
				if c.idle() {
					idle++
					if c.lc.buf != nil {
						holding++
					}
				}
			}
			spare += len(st.bufs)
			for _, b := range st.bufs {
				if len(b) != leanBufStart {
					t.Errorf("a spare buffer of %d bytes, want %d", len(b), leanBufStart)
				}
			}
		})
		return idle == clients
	})
	if holding != 0 {
		t.Errorf("%d of %d idle connections hold a read buffer", holding, idle)
	}
	if spare == 0 || spare > clients {
		t.Errorf("%d spare read buffers on the loops, want 1 to %d", spare, clients)
	}
}
