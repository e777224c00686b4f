//go:build linux

package gateway

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fluxgate/fluxgate/gateway"
	"github.com/fluxgate/fluxgate/metricnames"
)

// capEngines are the engines gateway.max_connections is tested on: auto
// (lean), fast, net and loop, each through the Service.
var capEngines = []string{gateway.EngineAuto, gateway.EngineFast, gateway.EngineNet, gateway.EngineLoop}

// capStack serves one route to target with gateway.max_connections n on
// engine.
func capStack(t *testing.T, engine string, n int, target string) *stack {
	t.Helper()
	cfg := oneRoute(gateway.UpstreamConfig{Name: "u", Targets: []gateway.TargetConfig{{Address: target}}})
	cfg.Engine = engine
	cfg.MaxConnections = n
	s := startStack(t, cfg, nil, gateway.ServiceOptions{})
	if got := gauge(t, s.reg, metricnames.GatewayMaxConnections, nil); got != float64(n) {
		t.Fatalf("%s = %v, want %d", metricnames.GatewayMaxConnections, got, n)
	}
	return s
}

// openConns is fluxgate_gateway_client_connections.
func openConns(t *testing.T, s *stack) float64 {
	t.Helper()
	return gauge(t, s.reg, metricnames.GatewayClientConnections, nil)
}

// waitOpen waits until the gateway counts n client connections.
func waitOpen(t *testing.T, s *stack, n int) {
	t.Helper()
	if _, ok := waitFor(10*time.Second, func() bool { return openConns(t, s) == float64(n) }); !ok {
		t.Fatalf("%s = %v, want %d", metricnames.GatewayClientConnections, openConns(t, s), n)
	}
}

// dialGW opens a client connection to the gateway; nothing on it waits
// more than 10 s, and it closes with the test.
func dialGW(t *testing.T, s *stack) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", s.svc.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

// roundTrip sends a keep-alive GET on c and reads its answer.
func roundTrip(c net.Conn, br *bufio.Reader, path string) (int, error) {
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: gw\r\n\r\n", path); err != nil {
		return 0, err
	}
	return readAnswer(br)
}

func readAnswer(br *bufio.Reader) (int, error) {
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode, err
}

// closedByPeer reports whether the gateway closed c: a read ends with EOF
// or a reset, not with c's deadline.
func closedByPeer(c net.Conn) error {
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	switch {
	case err == nil:
		return errors.New("read a byte")
	case errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("still open: %w", err)
	}
	return nil
}

// serverSockets counts the gateway's sockets of client connections that
// hold a descriptor (ESTABLISHED or CLOSE_WAIT on its port), from
// /proc/net/tcp and tcp6.
func serverSockets(t *testing.T, s *stack) int {
	t.Helper()
	_, p, _ := net.SplitHostPort(s.svc.Addr().String())
	port, _ := strconv.Atoi(p)
	want := fmt.Sprintf(":%04X", port)
	n := 0
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(line)
			if len(fs) < 4 || !strings.HasSuffix(fs[1], want) {
				continue
			}
			if fs[3] == "01" || fs[3] == "08" { // ESTABLISHED, CLOSE_WAIT
				n++
			}
		}
	}
	return n
}

// backToBaseline closes cs and waits until the gateway holds no client
// connection: none counted, no socket of one open.
func backToBaseline(t *testing.T, s *stack, cs ...net.Conn) {
	t.Helper()
	for _, c := range cs {
		_ = c.Close()
	}
	waitOpen(t, s, 0)
	if _, ok := waitFor(10*time.Second, func() bool { return serverSockets(t, s) == 0 }); !ok {
		t.Fatalf("%d sockets of client connections still open", serverSockets(t, s))
	}
}

// At the cap, N idle connections (one kept alive after a request, the
// others accepted and silent) and one more: the oldest idle is closed and
// the newcomer is served; the others stay.
func TestMaxConnectionsClosesIdleLongest(t *testing.T) {
	const n = 3
	for _, engine := range capEngines {
		t.Run(engine, func(t *testing.T) {
			b := newBackend(t, "b1")
			s := capStack(t, engine, n, b.addr())
			var idle []net.Conn
			first := dialGW(t, s)
			br := bufio.NewReader(first)
			if st, err := roundTrip(first, br, "/"); err != nil || st != http.StatusOK {
				t.Fatalf("first request: %d, %v", st, err)
			}
			idle = append(idle, first)
			waitOpen(t, s, 1)
			for i := 1; i < n; i++ {
				// Apart, so that the engine marked the one before idle
				// (after its answer, or at its first read) before this
				// one is accepted, however busy the machine.
				time.Sleep(100 * time.Millisecond)
				idle = append(idle, dialGW(t, s))
				waitOpen(t, s, i+1)
			}
			late := dialGW(t, s)
			if st, err := roundTrip(late, bufio.NewReader(late), "/"); err != nil || st != http.StatusOK {
				t.Fatalf("request over the cap: %d, %v", st, err)
			}
			if err := closedByPeer(first); err != nil {
				t.Errorf("the connection idle longest: %v", err)
			}
			if got := gauge(t, s.reg, metricnames.GatewayConnectionsEvictedTotal, nil); got != 1 {
				t.Errorf("%s = %v, want 1", metricnames.GatewayConnectionsEvictedTotal, got)
			}
			if got := gauge(t, s.reg, metricnames.GatewayAcceptWaitsTotal, nil); got < 1 {
				t.Errorf("%s = %v, want ≥ 1", metricnames.GatewayAcceptWaitsTotal, got)
			}
			waitOpen(t, s, n)
			// The silent ones were not closed: each still gets an answer.
			for i, c := range idle[1:] {
				if st, err := roundTrip(c, bufio.NewReader(c), "/"); err != nil || st != http.StatusOK {
					t.Errorf("silent connection %d: %d, %v", i+1, st, err)
				}
			}
			backToBaseline(t, s, append(idle, late)...)
		})
	}
}

// holdingBackend answers each request once a token comes on release.
type holdingBackend struct {
	srv     *httptest.Server
	arrived atomic.Int64
	release chan struct{}
}

func newHoldingBackend(t *testing.T) *holdingBackend {
	h := &holdingBackend{release: make(chan struct{}, 64)}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			return
		}
		h.arrived.Add(1)
		select {
		case <-h.release:
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, "done")
	}))
	t.Cleanup(h.srv.Close)
	return h
}

// At the cap with a request in flight on every connection, one more
// client waits (no connection is closed for it, its request does not
// reach the target), and is served once a request has finished and its
// connection, kept alive and idle, is closed to make room.
func TestMaxConnectionsNeverClosesBusy(t *testing.T) {
	const n = 2
	for _, engine := range capEngines {
		t.Run(engine, func(t *testing.T) {
			hb := newHoldingBackend(t)
			s := capStack(t, engine, n, strings.TrimPrefix(hb.srv.URL, "http://"))
			busy := make([]net.Conn, n)
			brs := make([]*bufio.Reader, n)
			for i := range busy {
				busy[i] = dialGW(t, s)
				brs[i] = bufio.NewReader(busy[i])
				if _, err := fmt.Fprintf(busy[i], "GET /slow%d HTTP/1.1\r\nHost: gw\r\n\r\n", i); err != nil {
					t.Fatal(err)
				}
			}
			if _, ok := waitFor(10*time.Second, func() bool { return hb.arrived.Load() == n }); !ok {
				t.Fatalf("%d requests reached the target, want %d", hb.arrived.Load(), n)
			}
			late := dialGW(t, s)
			lateDone := make(chan error, 1)
			go func() {
				st, err := roundTrip(late, bufio.NewReader(late), "/late")
				if err == nil && st != http.StatusOK {
					err = fmt.Errorf("status %d", st)
				}
				lateDone <- err
			}()
			// Several eviction rounds (evictPoll) past the grace of a new
			// connection: nothing may give way.
			time.Sleep(500 * time.Millisecond)
			if got := hb.arrived.Load(); got != n {
				t.Fatalf("%d requests reached the target over the cap, want %d", got, n)
			}
			if got := gauge(t, s.reg, metricnames.GatewayConnectionsEvictedTotal, nil); got != 0 {
				t.Fatalf("%s = %v with every connection busy", metricnames.GatewayConnectionsEvictedTotal, got)
			}
			hb.release <- struct{}{} // one request finishes; its connection stays, idle
			answered := -1
			for answered < 0 {
				for i := range busy {
					_ = busy[i].SetReadDeadline(time.Now().Add(50 * time.Millisecond))
					if _, err := brs[i].Peek(1); err == nil {
						answered = i
						break
					}
				}
			}
			_ = busy[answered].SetReadDeadline(time.Now().Add(10 * time.Second))
			if st, err := readAnswer(brs[answered]); err != nil || st != http.StatusOK {
				t.Fatalf("answer of connection %d: %d, %v", answered, st, err)
			}
			if _, ok := waitFor(10*time.Second, func() bool { return hb.arrived.Load() == n+1 }); !ok {
				t.Fatalf("the waiting client's request did not reach the target (%d arrived)", hb.arrived.Load())
			}
			for range n { // the waiting client's and the other busy ones'
				hb.release <- struct{}{}
			}
			if err := <-lateDone; err != nil {
				t.Fatalf("the waiting client: %v", err)
			}
			if err := closedByPeer(busy[answered]); err != nil {
				t.Errorf("the connection idle after its answer: %v", err)
			}
			for i := range busy {
				if i == answered {
					continue
				}
				_ = busy[i].SetReadDeadline(time.Now().Add(10 * time.Second))
				if st, err := readAnswer(brs[i]); err != nil || st != http.StatusOK {
					t.Errorf("connection %d busy at the cap: %d, %v", i, st, err)
				}
			}
			backToBaseline(t, s, append(busy, late)...)
		})
	}
}

// A connection the lean engine hands to the fast one (a chunked body),
// or the loop engine to the lean one and on, counts once, and as idle
// after its answer: at a cap of 1 a newcomer takes its place.
func TestMaxConnectionsHandOverCountsOnce(t *testing.T) {
	for _, engine := range []string{gateway.EngineAuto, gateway.EngineLoop} {
		t.Run(engine, func(t *testing.T) {
			b := newBackend(t, "b1")
			s := capStack(t, engine, 1, b.addr())
			before := handoverCount(t, s, metricnames.HandoverBody)
			c := dialGW(t, s)
			br := bufio.NewReader(c)
			if _, err := io.WriteString(c, "POST /up HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			if st, err := readAnswer(br); err != nil || st != http.StatusOK {
				t.Fatalf("chunked request: %d, %v", st, err)
			}
			if got := handoverCount(t, s, metricnames.HandoverBody) - before; got != 1 {
				t.Fatalf("%v hand-overs (body), want 1", got)
			}
			if st, err := roundTrip(c, br, "/again"); err != nil || st != http.StatusOK {
				t.Fatalf("second request on the handed connection: %d, %v", st, err)
			}
			waitOpen(t, s, 1)
			late := dialGW(t, s)
			if st, err := roundTrip(late, bufio.NewReader(late), "/"); err != nil || st != http.StatusOK {
				t.Fatalf("request over the cap: %d, %v", st, err)
			}
			if err := closedByPeer(c); err != nil {
				t.Errorf("the handed connection, idle: %v", err)
			}
			waitOpen(t, s, 1)
			backToBaseline(t, s, c, late)
		})
	}
}

// An HTTP/2 connection (h2c with prior knowledge, on the gateway's own
// HTTP/2 server) with a stream in flight keeps its place at a cap of 1;
// once its stream is answered it is idle, and closed for the client that
// waits.
func TestMaxConnectionsHTTP2IdleOnlyWhenNoStream(t *testing.T) {
	hb := newHoldingBackend(t)
	cfg := oneRoute(gateway.UpstreamConfig{Name: "u", Targets: []gateway.TargetConfig{{Address: strings.TrimPrefix(hb.srv.URL, "http://")}}})
	cfg.H2C = true
	cfg.MaxConnections = 1
	s := startStack(t, cfg, nil, gateway.ServiceOptions{})
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: p}
	t.Cleanup(tr.CloseIdleConnections)
	late := func() net.Conn { return dialGW(t, s) }
	http2AtCap(t, s, hb, tr, "http://"+s.svc.Addr().String()+"/slow", late)
}

// The same over TLS, on both HTTP/2 servers (gateway.http2.server), the
// cap under TLS: the waiting client's handshake waits for its place too.
func TestMaxConnectionsTLS(t *testing.T) {
	for _, server := range []string{gateway.HTTP2ServerLean, gateway.HTTP2ServerNet} {
		t.Run(server, func(t *testing.T) {
			hb := newHoldingBackend(t)
			certFile, keyFile := writePair(t, t.TempDir(), "gw.test")
			cfg := oneRoute(gateway.UpstreamConfig{Name: "u", Targets: []gateway.TargetConfig{{Address: strings.TrimPrefix(hb.srv.URL, "http://")}}})
			cfg.TLS = gateway.TLSConfig{CertFile: certFile, KeyFile: keyFile}
			cfg.HTTP2.Server = server
			cfg.MaxConnections = 1
			s := startStack(t, cfg, nil, gateway.ServiceOptions{})
			tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}
			t.Cleanup(tr.CloseIdleConnections)
			late := func() net.Conn {
				c := tls.Client(dialGW(t, s), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
				t.Cleanup(func() { _ = c.Close() })
				return c
			}
			http2AtCap(t, s, hb, tr, "https://"+s.svc.Addr().String()+"/slow", late)
		})
	}
}

// http2AtCap holds a request on an HTTP/2 connection (tr, to url) at a
// cap of 1 and checks that a client dialled with late waits, without
// reaching the target, until that request is answered, and is served
// then, the HTTP/2 connection, idle, closed for it.
func http2AtCap(t *testing.T, s *stack, hb *holdingBackend, tr *http.Transport, url string, late func() net.Conn) {
	t.Helper()
	h2 := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	h2Done := make(chan error, 1)
	go func() {
		resp, err := h2.Get(url)
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.ProtoMajor != 2 || resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("HTTP/%d %d", resp.ProtoMajor, resp.StatusCode)
			}
		}
		h2Done <- err
	}()
	if _, ok := waitFor(10*time.Second, func() bool { return hb.arrived.Load() == 1 }); !ok {
		t.Fatal("the HTTP/2 request did not reach the target")
	}
	lc := late()
	lateDone := make(chan error, 1)
	go func() {
		st, err := roundTrip(lc, bufio.NewReader(lc), "/late")
		if err == nil && st != http.StatusOK {
			err = fmt.Errorf("status %d", st)
		}
		lateDone <- err
	}()
	time.Sleep(500 * time.Millisecond) // eviction rounds past the grace
	if got := hb.arrived.Load(); got != 1 {
		t.Fatalf("%d requests reached the target past a cap of 1 with a stream in flight", got)
	}
	hb.release <- struct{}{}
	if err := <-h2Done; err != nil {
		t.Fatalf("the HTTP/2 stream: %v", err)
	}
	if _, ok := waitFor(10*time.Second, func() bool { return hb.arrived.Load() == 2 }); !ok {
		t.Fatal("the waiting client's request did not reach the target once the HTTP/2 connection was idle")
	}
	hb.release <- struct{}{}
	if err := <-lateDone; err != nil {
		t.Fatalf("the waiting client: %v", err)
	}
	if got := gauge(t, s.reg, metricnames.GatewayConnectionsEvictedTotal, nil); got != 1 {
		t.Errorf("%s = %v, want 1 (the idle HTTP/2 connection)", metricnames.GatewayConnectionsEvictedTotal, got)
	}
	tr.CloseIdleConnections()
	backToBaseline(t, s, lc)
}
