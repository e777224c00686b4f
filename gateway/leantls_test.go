package gateway

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/fluxgate/fluxgate/controlpoint/flow"
	"github.com/fluxgate/fluxgate/metricnames"
)

// tlsTestPair is a server TLS config offering h2 and http/1.1 (httptest's
// certificate, for 127.0.0.1) and a client config that trusts it.
func tlsTestPair(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	srv.StartTLS()
	server = srv.TLS.Clone()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	srv.Close()
	server.NextProtos = []string{"h2", "http/1.1"}
	return server, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", NextProtos: []string{"http/1.1"}}
}

// handshakeListener hands out server-side *tls.Conn with the handshake
// done, as certs.Reloader's Listener does; wrap, when set, wraps each
// TCP connection under TLS.
type handshakeListener struct {
	net.Listener
	cfg  *tls.Config
	wrap func(net.Conn) net.Conn
}

func (l handshakeListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.wrap != nil {
			c = l.wrap(c)
		}
		tc := tls.Server(c, l.cfg)
		_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
		if err := tc.Handshake(); err != nil {
			_ = c.Close()
			continue
		}
		_ = tc.SetDeadline(time.Time{})
		return tc, nil
	}
}

// serveLeanTLS serves g on the lean engine on a TLS listener, HTTP/2 on
// net/http (ServeTLSWith), as Service.Start does, until the test ends. It
// returns the address, the server and a client config trusting it.
func serveLeanTLS(t *testing.T, g *Gateway, setup func(*LeanServer), wrap func(net.Conn) net.Conn) (string, *LeanServer, *tls.Config) {
	t.Helper()
	scfg, ccfg := tlsTestPair(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ls := g.NewLeanServer(nil)
	ls.ServeTLSWith(&http.Server{Handler: g, TLSConfig: scfg.Clone()}) // Serve sets HTTP/2 up in it
	if setup != nil {
		setup(ls)
	}
	done := make(chan struct{})
	go func() { _ = ls.Serve(handshakeListener{Listener: ln, cfg: scfg, wrap: wrap}); close(done) }()
	t.Cleanup(func() {
		_ = ln.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = ls.Shutdown(ctx)
		<-done
	})
	return ln.Addr().String(), ls, ccfg
}

// dialTLS opens an HTTP/1.1 TLS connection to addr.
func dialTLS(t *testing.T, addr string, cfg *tls.Config) (*tls.Conn, *bufio.Reader) {
	t.Helper()
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}

// stallConn is a server's TCP connection to a client that can stop
// reading (stall): its writes then block until their deadline passes
// (a timeout) or the connection is closed, as a write to a socket whose
// buffers are full does. It counts how stalled writes ended.
type stallConn struct {
	net.Conn
	stalled  atomic.Bool
	blocked  chan struct{} // a stalled write started
	closed   chan struct{}
	once     sync.Once
	mu       sync.Mutex
	deadline time.Time // the write deadline; guarded by mu
	timedOut atomic.Int32
	cut      atomic.Int32 // stalled writes ended by Close
}

func newStallConn(c net.Conn) *stallConn {
	return &stallConn{Conn: c, blocked: make(chan struct{}, 16), closed: make(chan struct{})}
}

func (c *stallConn) Write(p []byte) (int, error) {
	if !c.stalled.Load() {
		return c.Conn.Write(p)
	}
	select {
	case c.blocked <- struct{}{}:
	default:
	}
	c.mu.Lock()
	d := c.deadline
	c.mu.Unlock()
	var expired <-chan time.Time
	if !d.IsZero() {
		tm := time.NewTimer(time.Until(d))
		defer tm.Stop()
		expired = tm.C
	}
	select {
	case <-expired:
		c.timedOut.Add(1)
		return 0, os.ErrDeadlineExceeded
	case <-c.closed:
		c.cut.Add(1)
		return 0, net.ErrClosed
	}
}

func (c *stallConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	c.mu.Unlock()
	return c.Conn.SetDeadline(t)
}

func (c *stallConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	c.mu.Unlock()
	return c.Conn.SetWriteDeadline(t)
}

func (c *stallConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// stallConns wraps every connection in a stallConn and passes it on.
func stallConns() (func(net.Conn) net.Conn, <-chan *stallConn) {
	ch := make(chan *stallConn, 8)
	return func(c net.Conn) net.Conn {
		sc := newStallConn(c)
		ch <- sc
		return sc
	}, ch
}

// Over TLS the lean engine and the fast engine it hands requests to (an
// HTTP/1.0 one here) give a control point the scheme https, as the
// net/http engine does for a request that came over TLS (r.TLS set), so
// that a policy selecting url.scheme https keeps matching.
func TestFlowLabelsSchemeOverTLS(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer up.Close()
	rec := &labelRecorder{}
	g := proxyTo(t, up, Options{Checker: rec})
	addr, _, ccfg := serveLeanTLS(t, g, nil, nil)
	netSrv := httptest.NewUnstartedServer(g)
	netSrv.StartTLS()
	defer netSrv.Close()
	for _, tc := range []struct{ name, addr, proto string }{
		{"net", netSrv.Listener.Addr().String(), "HTTP/1.1"},
		{"lean", addr, "HTTP/1.1"},
		{"lean, HTTP/1.0 handed to fast", addr, "HTTP/1.0"},
	} {
		rec.mu.Lock()
		rec.labels = nil
		rec.mu.Unlock()
		c, br := dialTLS(t, tc.addr, ccfg) // httptest's servers share one certificate
		resp, _ := exchangeOn(t, c, br, "GET /items?id=7 "+tc.proto+"\r\nHost: gw.test\r\n\r\n")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: status %d", tc.name, resp.StatusCode)
		}
		rec.mu.Lock()
		got := rec.labels
		rec.mu.Unlock()
		if len(got) != 1 {
			t.Fatalf("%s: %d checks, want 1", tc.name, len(got))
		}
		for _, k := range []string{flow.LabelURLScheme, flow.LabelHTTPScheme} {
			if got[0][k] != "https" {
				t.Errorf("%s over TLS: label %s = %q, want https", tc.name, k, got[0][k])
			}
		}
	}
}

// A TLS client that stops reading mid-answer is cut when the write
// timeout passes: its connection closes at once. A tls.Conn whose write
// failed is broken for good, so its Close would only spend up to 5 s
// more (tls.Conn.Close's deadline) writing a close_notify to a client
// that does not read, holding the connection and Shutdown meanwhile.
func TestLeanTLSWriteTimeoutClosesAtOnce(t *testing.T) {
	big := make([]byte, 1<<20)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			_, _ = w.Write(big)
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	defer up.Close()
	g := proxyTo(t, up, Options{})
	wrap, conns := stallConns()
	addr, _, ccfg := serveLeanTLS(t, g, func(ls *LeanServer) { ls.writeTimeout = 200 * time.Millisecond }, wrap)
	c, br := dialTLS(t, addr, ccfg)
	if resp, body := exchangeOn(t, c, br, "GET / HTTP/1.1\r\nHost: h\r\n\r\n"); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	sc := <-conns
	sc.stalled.Store(true) // the client reads no more
	if _, err := io.WriteString(c, "GET /big HTTP/1.1\r\nHost: h\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-sc.closed:
	case <-time.After(20 * time.Second): // a guard: the bug costs 5 s
		t.Fatal("the connection of a client that stopped reading is still open")
	}
	if n := sc.timedOut.Load(); n != 1 {
		t.Errorf("%d writes to the stalled client ran to their deadline, want 1 (the answer's; none for a close_notify)", n)
	}
}

// Shutdown keeps to its context over TLS: an idle client that does not
// read holds no lock and no other connection up while the close_notify
// to it waits, and when the context ends its connection is cut, rather
// than Shutdown waiting out tls.Conn.Close's 5 s write deadline.
func TestLeanTLSShutdownCutsStalledClose(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }))
	defer up.Close()
	g := proxyTo(t, up, Options{})
	wrap, conns := stallConns()
	addr, ls, ccfg := serveLeanTLS(t, g, nil, wrap)
	c, br := dialTLS(t, addr, ccfg)
	if resp, body := exchangeOn(t, c, br, "GET / HTTP/1.1\r\nHost: h\r\n\r\n"); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	sc := <-conns
	sc.stalled.Store(true) // idle now, and the client reads no more
	if err := shutdownPastStall(t, ls, sc); err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("Shutdown: %v", err)
	}
}

// shutdownPastStall shuts ls down, ending the context once a write to
// sc, a client that reads no more, blocks; it checks that Shutdown cut
// sc rather than wait for that write's deadline, and returns
// Shutdown's error.
func shutdownPastStall(t *testing.T, ls *LeanServer, sc *stallConn) error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- ls.Shutdown(ctx) }()
	var err error
	select {
	case <-sc.blocked: // the write waits on the client: give up on it
		cancel()
		select {
		case err = <-done:
		case <-time.After(20 * time.Second):
			t.Fatal("Shutdown did not return")
		}
	case err = <-done:
	}
	if n := sc.timedOut.Load(); n != 0 {
		t.Errorf("Shutdown waited for a write to a client that does not read to time out (%d), err %v; want it cut when ctx ended", n, err)
	}
	select {
	case <-sc.closed:
	default:
		t.Error("the stalled client's connection is open after Shutdown returned")
	}
	return err
}

// What the lean engine hands to the fast engine over TLS is served there
// whole, bytes already read included, and told https: a pipelined
// HTTP/1.0 request behind one the lean engine serves, a chunked and a
// large body, Expect: 100-continue, an Upgrade (bytes both ways after
// 101), and a head cut short by the client (400).
func TestLeanTLSHandOvers(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") == "echo" {
			echoUpgrade(w, "echo "+r.Header.Get("X-Forwarded-Proto")+": ")
			return
		}
		n, _ := io.Copy(io.Discard, r.Body)
		_, _ = fmt.Fprintf(w, "%s %s %s %d", r.Method, r.URL.Path, r.Header.Get("X-Forwarded-Proto"), n)
	}))
	defer up.Close()
	g := proxyTo(t, up, Options{})
	addr, _, ccfg := serveLeanTLS(t, g, nil, nil)
	large := strings.Repeat("x", 100000)

	t.Run("pipelined", func(t *testing.T) {
		c, br := dialTLS(t, addr, ccfg)
		if _, err := io.WriteString(c, "GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.0\r\nHost: h\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"GET /a https 0", "GET /b https 0"} {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("%s: %v", want, err)
			}
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || string(b) != want {
				t.Errorf("got %d %q, want 200 %q", resp.StatusCode, b, want)
			}
		}
	})
	for _, tc := range []struct{ name, req, want string }{
		{"chunked", "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "POST /c https 5"},
		{"large", "POST /l HTTP/1.1\r\nHost: h\r\nContent-Length: 100000\r\n\r\n" + large, "POST /l https 100000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, br := dialTLS(t, addr, ccfg)
			resp, body := exchangeOn(t, c, br, tc.req)
			if resp.StatusCode != 200 || body != tc.want {
				t.Errorf("got %d %q, want 200 %q", resp.StatusCode, body, tc.want)
			}
			// The connection goes on, on the fast engine.
			if resp, body := exchangeOn(t, c, br, "GET /next HTTP/1.1\r\nHost: h\r\n\r\n"); resp.StatusCode != 200 || body != "GET /next https 0" {
				t.Errorf("next: %d %q", resp.StatusCode, body)
			}
		})
	}
	t.Run("expect-continue", func(t *testing.T) {
		c, br := dialTLS(t, addr, ccfg)
		if _, err := io.WriteString(c, "POST /e HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != http.StatusContinue {
			t.Fatalf("interim answer: %v %v, want 100", resp, err)
		}
		resp, body := exchangeOn(t, c, br, "hello")
		if resp.StatusCode != 200 || body != "POST /e https 5" {
			t.Errorf("got %d %q", resp.StatusCode, body)
		}
	})
	t.Run("upgrade", func(t *testing.T) {
		c, br := dialTLS(t, addr, ccfg)
		if _, err := io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("%v %v, want 101", resp, err)
		}
		if _, err := io.WriteString(c, "hello\n"); err != nil {
			t.Fatal(err)
		}
		if line, err := br.ReadString('\n'); err != nil || line != "echo https: hello\n" {
			t.Errorf("read %q, %v", line, err)
		}
	})
	t.Run("cut-short", func(t *testing.T) {
		c, br := dialTLS(t, addr, ccfg)
		if _, err := io.WriteString(c, "GET /x HTTP/1.1\r\nHost:"); err != nil {
			t.Fatal(err)
		}
		if err := c.CloseWrite(); err != nil { // close_notify: the client's end
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%v %v, want 400", resp, err)
		}
	})
	for reason, min := range map[string]float64{metricnames.HandoverRequest: 3, metricnames.HandoverBody: 2} {
		if n := testutil.ToFloat64(g.metrics.handovers.WithLabelValues(reason)); n < min {
			t.Errorf("%s{reason=%q} = %v, want >= %v", metricnames.GatewayHandoversTotal, reason, n, min)
		}
	}
}

// The same for a connection handed to net/http as HTTP/2: when the
// context ends, Shutdown returns with it closed, though its client does
// not read.
func TestLeanTLSShutdownCutsStalledH2(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }))
	defer up.Close()
	g := proxyTo(t, up, Options{})
	wrap, conns := stallConns()
	addr, ls, ccfg := serveLeanTLS(t, g, nil, wrap)
	cfg := ccfg.Clone()
	cfg.NextProtos = nil
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("https://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Fatalf("answered over %s, want HTTP/2", resp.Proto)
	}
	sc := <-conns
	sc.stalled.Store(true)
	_ = shutdownPastStall(t, ls, sc) // its error is ctx's or none
}

// tlsEngineCases are the engineRequests TestEnginesAgreeOverTLS sends:
// those where TLS could matter (reads that end a record early or late,
// hand-overs with bytes already read, bodies across records, a client
// or target that leaves). All of engineRequests passed on 2026-12-05, in
// 66 s, most of it spent waiting out net/http's half-close.
var tlsEngineCases = []string{
	"get", "post", "head", "pipelined", "close", "http10 after lean", "xff chain",
	"large body", "body at the bound", "short body", "partial head", "upgrade",
	"target gone", "post target gone", "head with body",
}

// TestEnginesAgreeOverTLS: over TLS, the requests of tlsEngineCases come
// back from the lean engine (with what it hands to the fast engine) as
// from the net/http engine, which served TLS listeners before. Where they
// differ over plain TCP too, TestEnginesAgree judges the case; here only
// a difference TLS brings fails.
func TestEnginesAgreeOverTLS(t *testing.T) {
	g := diffGateway(t)
	scfg, ccfg := tlsTestPair(t)
	leanTLS := listenTB(t, func(ln net.Listener) func() {
		ls := g.NewLeanServer(nil)
		ls.ServeTLSWith(&http.Server{Handler: g, TLSConfig: scfg.Clone()}) // Serve sets HTTP/2 up in it
		done := make(chan struct{})
		go func() { _ = ls.Serve(handshakeListener{Listener: ln, cfg: scfg}); close(done) }()
		return func() {
			_ = ln.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = ls.Shutdown(ctx)
			<-done
		}
	})
	netTLS := listenTB(t, func(ln net.Listener) func() {
		srv := &http.Server{Handler: g, ReadHeaderTimeout: 5 * time.Second, TLSConfig: scfg.Clone()}
		go func() { _ = srv.Serve(handshakeListener{Listener: ln, cfg: scfg}) }()
		return func() { _ = srv.Close() }
	})
	_, leanPlain, netPlain := diffGateways(t)
	dialTLSTo := func(addr string) func() (net.Conn, error) {
		return func() (net.Conn, error) { return tls.Dial("tcp", addr, ccfg) }
	}
	for _, tc := range engineRequests {
		if !slices.Contains(tlsEngineCases, tc.name) {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			raw := []byte(tc.raw)
			methods := requestMethods(raw)
			l := exchangeRawOn(t, dialTLSTo(leanTLS), raw, methods, false)
			// net/http cancels a request whose client closed its side
			// (exchangeRaw): ask it again with the close late before
			// taking a difference for one.
			if sameAnswers(l, exchangeRawOn(t, dialTLSTo(netTLS), raw, methods, false)) {
				return
			}
			n := exchangeRawOn(t, dialTLSTo(netTLS), raw, methods, true)
			if sameAnswers(l, n) {
				return
			}
			lp := exchangeRaw(t, leanPlain, raw, methods, false)
			np := exchangeRaw(t, netPlain, raw, methods, true)
			if !sameAnswers(lp, np) {
				t.Logf("request %.200q: lean and net differ over TLS as over TCP:\nlean: %s\nnet:  %s", raw, showAnswers(l), showAnswers(n))
				return
			}
			t.Errorf("request %.200q: over TLS\nlean: %s\nnet:  %s\n(over TCP both: %s)", raw, showAnswers(l), showAnswers(n), showAnswers(lp))
		})
	}
}
