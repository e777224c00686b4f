//go:build linux

package gateway

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/fluxgate/fluxgate/certs"
	"github.com/fluxgate/fluxgate/certs/certstest"
	"github.com/fluxgate/fluxgate/internal/looptls"
	"github.com/fluxgate/fluxgate/internal/looptls/looptlstest"
	"github.com/fluxgate/fluxgate/internal/testbin"
)

// writeTLSPair writes a pair for 127.0.0.1 named name, from a CA of its
// own, into dir (tls.crt, tls.key; the CA's certificate in ca.crt) and
// returns a pool trusting it.
func writeTLSPair(t *testing.T, dir, name string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	ca := certstest.NewCA(t, name+" CA")
	ca.WriteCert(t, filepath.Join(dir, "ca.crt"))
	certFile, keyFile = ca.Server(t, name).Write(t, filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
	return certFile, keyFile, ca.Pool()
}

// loopTLSServer is a loop server on a TLS listener built as Service.Start
// builds it: the cap's listener, certs' handshakes on looptls.Wrap, HTTP/2
// to the gateway's own server.
type loopTLSServer struct {
	addr     string
	s        *LoopServer
	r        *certs.Reloader
	reg      *prometheus.Registry
	dir      string
	client   *tls.Config // HTTP/1.1, trusting the first pair
	certFile string
}

func serveLoopTLS(t *testing.T, g *Gateway, setup func(*LoopServer)) *loopTLSServer {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile, pool := writeTLSPair(t, dir, "first.test")
	reg := prometheus.NewRegistry()
	r, err := certs.New(certs.Options{Server: "gateway", CertFile: certFile, KeyFile: keyFile, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	tc := r.TLSConfig()
	tc.NextProtos = []string{ALPNHTTP2, ALPNHTTP1}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tln := r.WrappedListener(g.conns.Listener(ln), tc, "gateway", looptls.Wrap)
	s, err := g.NewLoopServer(nil, 2)
	if err != nil {
		t.Fatal(err)
	}
	s.ServeTLSWith(&http.Server{Handler: g, TLSConfig: tc})
	s.ServeHTTP2With(g.NewHTTP2Server(nil))
	if setup != nil {
		setup(s)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(tln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
		_ = tln.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		r.Close()
	})
	waitServing(t, s)
	return &loopTLSServer{addr: ln.Addr().String(), s: s, r: r, reg: reg, dir: dir, certFile: certFile,
		client: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", NextProtos: []string{ALPNHTTP1}}}
}

// loopTLSTo serves a gateway to opts' targets on the loop engine over TLS.
func loopTLSTo(t *testing.T, opts Options, setup func(*LoopServer)) *loopTLSServer {
	t.Helper()
	return serveLoopTLS(t, loopGateway(t, opts), setup)
}

// loopConns is the number of connections on s's loops.
func loopConns(s *LoopServer) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

// leanConns is the number of connections s's lean engine serves.
func leanConns(s *LoopServer) int {
	s.lean.mu.Lock()
	defer s.lean.mu.Unlock()
	return len(s.lean.conns)
}

// echoed decodes echoTarget's answer.
func echoed(t *testing.T, body string) requestEcho {
	t.Helper()
	var e requestEcho
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("not an echo: %v: %q", err, body)
	}
	return e
}

// GETs and POSTs with bodies (one over a record, one over the lean
// engine's read buffer) on one kept-alive TLS connection are served on
// the loop, forwarded with X-Forwarded-Proto https; the handshake is
// measured.
func TestLoopTLSServesOnTheLoop(t *testing.T) {
	ls := loopTLSTo(t, Options{Config: oneUpstream(echoTarget(t))}, nil)
	c, br := dialTLS(t, ls.addr, ls.client)
	for i := range 40 {
		var req, wantBody string
		switch i % 3 {
		case 0:
			req = fmt.Sprintf("GET /get/%d HTTP/1.1\r\nHost: h\r\n\r\n", i)
		case 1:
			wantBody = strings.Repeat("b", 20<<10+i) // over a TLS record
			req = fmt.Sprintf("POST /post/%d HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n%s", i, len(wantBody), wantBody)
		default:
			wantBody = strings.Repeat("s", 100)
			req = fmt.Sprintf("POST /small/%d HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n%s", i, len(wantBody), wantBody)
		}
		resp, body := exchangeOn(t, c, br, req)
		e := echoed(t, body)
		if resp.StatusCode != 200 || e.Body != wantBody || e.Header.Get("X-Forwarded-Proto") != "https" || !strings.HasSuffix(e.Target, fmt.Sprint("/", i)) {
			t.Fatalf("request %d: %d, target %q, proto %q, body of %d bytes (want %d)", i, resp.StatusCode, e.Target, e.Header.Get("X-Forwarded-Proto"), len(e.Body), len(wantBody))
		}
		if n, m := loopConns(ls.s), leanConns(ls.s); n != 1 || m != 0 {
			t.Fatalf("request %d: %d connections on the loops, %d on lean; want 1 and 0", i, n, m)
		}
	}
	if n := testutil.CollectAndCount(ls.reg, "fluxgate_tls_handshake_duration_seconds"); n != 1 {
		t.Errorf("handshake histogram series: %d, want 1", n)
	}
	if got := histogramSamples(t, ls.reg, "fluxgate_tls_handshake_duration_seconds"); got != 1 {
		t.Errorf("handshakes measured: %d, want 1", got)
	}
}

// histogramSamples is the sample count of the one histogram named name.
func histogramSamples(t *testing.T, reg *prometheus.Registry, name string) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	t.Fatalf("no histogram %s", name)
	return 0
}

// Requests pipelined in one write, their plaintext past the loop's read
// buffer, are all answered in order: what the tls.Conn holds past a full
// buffer is read without waiting for the socket.
func TestLoopTLSPipelined(t *testing.T) {
	addr, _ := pathTarget(t)
	ls := loopTLSTo(t, Options{Config: oneUpstream(addr)}, nil)
	c, br := dialTLS(t, ls.addr, ls.client)
	const n = 30
	var sb strings.Builder
	pad := strings.Repeat("p", 2000) // 30 × 2 KB: several records, buffers
	for i := range n {
		fmt.Fprintf(&sb, "GET /p/%d HTTP/1.1\r\nHost: h\r\nX-Pad: %s\r\n\r\n", i, pad)
	}
	if _, err := io.WriteString(c, sb.String()); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if want := fmt.Sprintf("GET /p/%d", i); resp.StatusCode != 200 || string(b) != want {
			t.Fatalf("answer %d: %d %q, want 200 %q", i, resp.StatusCode, b, want)
		}
	}
}

// A 1 MiB answer reaches a client that reads slowly whole, the loop
// holding at most a read of the target and its records' overhead for it;
// a client that stops reading is dropped after the write timeout.
func TestLoopTLSSlowReader(t *testing.T) {
	const size = 1 << 20
	ls := loopTLSTo(t, Options{Config: oneUpstream(bigTarget(t, size, true))}, func(s *LoopServer) {
		s.sndBuf = 16 << 10
		s.lean.writeTimeout = 300 * time.Millisecond
	})
	dial := func() (*tls.Conn, *net.TCPConn) {
		nc, err := net.DialTCP("tcp", nil, mustTCPAddr(t, ls.addr))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = nc.Close() })
		_ = nc.SetReadBuffer(16 << 10)
		_ = nc.SetDeadline(time.Now().Add(30 * time.Second))
		tc := tls.Client(nc, ls.client)
		if _, err := io.WriteString(tc, "GET /big HTTP/1.1\r\nHost: h\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		return tc, nc
	}
	tc, nc := dial()
	time.Sleep(100 * time.Millisecond) // the gateway fills the socket and waits
	resp, err := http.ReadResponse(bufio.NewReaderSize(&slowReader{r: tc}, 1024), nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.Copy(io.Discard, resp.Body)
	if err != nil || got != size {
		t.Fatalf("got %d bytes, %v; want %d", got, err, size)
	}
	ls.s.mu.Lock()
	q := ls.s.maxQueued
	ls.s.mu.Unlock()
	if limit := headerBuffer + 4<<10; q == 0 || q > limit {
		t.Fatalf("the gateway held up to %d bytes for the client; want some, at most %d", q, limit)
	}
	_ = nc.Close()
	waitUntil(t, "the slow reader's connection closed", func() bool { return loopConns(ls.s) == 0 })

	_, stalled := dial() // does not read at all
	waitUntil(t, "the write timeout drops a client that does not read", func() bool { return loopConns(ls.s) == 0 && ls.s.g.conns.Open() == 0 })
	_ = stalled.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, stalled); err != nil && !errors.Is(err, net.ErrClosed) && !isReset(err) {
		t.Fatalf("the dropped client reads %v, want its end", err)
	}
}

// A chunked body mid-connection goes, with the connection's TLS, to the
// lean engine (and on to the fast one), which answers it and the
// requests after it with X-Forwarded-Proto https.
func TestLoopTLSHandsOverMidConnection(t *testing.T) {
	ls := loopTLSTo(t, Options{Config: oneUpstream(echoTarget(t))}, nil)
	c, br := dialTLS(t, ls.addr, ls.client)
	resp, body := exchangeOn(t, c, br, "GET /first HTTP/1.1\r\nHost: h\r\n\r\n")
	if e := echoed(t, body); resp.StatusCode != 200 || e.Target != "/first" || e.Header.Get("X-Forwarded-Proto") != "https" {
		t.Fatalf("first: %d %+v", resp.StatusCode, e)
	}
	if n := loopConns(ls.s); n != 1 {
		t.Fatalf("%d connections on the loops, want 1", n)
	}
	resp, body = exchangeOn(t, c, br, "POST /chunked HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n")
	if e := echoed(t, body); resp.StatusCode != 200 || e.Body != "abcdefg" || e.Header.Get("X-Forwarded-Proto") != "https" {
		t.Fatalf("chunked: %d %+v", resp.StatusCode, e)
	}
	if n := loopConns(ls.s); n != 0 { // lean took it, and handed it on to the fast engine
		t.Fatalf("after the hand-over: %d connections on the loops, want 0", n)
	}
	for i := range 3 {
		resp, body = exchangeOn(t, c, br, fmt.Sprintf("POST /after/%d HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello", i))
		if e := echoed(t, body); resp.StatusCode != 200 || e.Body != "hello" || e.Header.Get("X-Forwarded-Proto") != "https" {
			t.Fatalf("after %d: %d %+v", i, resp.StatusCode, e)
		}
	}
	if n := ls.s.g.conns.Open(); n != 1 {
		t.Fatalf("%d slots taken, want 1 (the connection's, moved)", n)
	}
	_ = c.Close()
	waitUntil(t, "the handed-over connection's slot given back", func() bool { return ls.s.g.conns.Open() == 0 })
}

// A client that negotiates h2 is served by the HTTP/2 server, never on a
// loop; an HTTP/1.1 one next to it on the loop.
func TestLoopTLSHTTP2ByALPN(t *testing.T) {
	ls := loopTLSTo(t, Options{Config: oneUpstream(echoTarget(t))}, nil)
	cfg := ls.client.Clone()
	cfg.NextProtos = nil
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	for i := range 3 {
		resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get(fmt.Sprintf("https://%s/h2/%d", ls.addr, i))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if e := echoed(t, string(b)); resp.ProtoMajor != 2 || resp.StatusCode != 200 || e.Header.Get("X-Forwarded-Proto") != "https" {
			t.Fatalf("h2 request %d: %s %d %+v", i, resp.Proto, resp.StatusCode, e)
		}
		if n := loopConns(ls.s); n != 0 {
			t.Fatalf("%d connections on the loops, want 0", n)
		}
	}
	c, br := dialTLS(t, ls.addr, ls.client)
	if resp, _ := exchangeOn(t, c, br, "GET /h1 HTTP/1.1\r\nHost: h\r\n\r\n"); resp.StatusCode != 200 || resp.ProtoMajor != 1 {
		t.Fatalf("h1: %s %d", resp.Proto, resp.StatusCode)
	}
	if n := loopConns(ls.s); n != 1 {
		t.Fatalf("%d connections on the loops, want 1", n)
	}
}

// A client that closes mid-head, mid-body or right after its request
// costs nothing lasting: its connection and slot go, and the next client
// is served.
func TestLoopTLSClientClosesMidRequest(t *testing.T) {
	ls := loopTLSTo(t, Options{Config: oneUpstream(echoTarget(t))}, nil)
	for _, partial := range []string{
		"GET /half HTTP/1.1\r\nHo",
		"POST /body HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\nonly some",
		"GET /whole HTTP/1.1\r\nHost: h\r\n\r\n",
	} {
		c, _ := dialTLS(t, ls.addr, ls.client)
		if _, err := io.WriteString(c, partial); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, "the connection on a loop", func() bool { return loopConns(ls.s)+leanConns(ls.s) == 1 })
		_ = c.Close()
		waitUntil(t, fmt.Sprintf("after %q, the connection and its slot gone", partial), func() bool {
			return loopConns(ls.s) == 0 && leanConns(ls.s) == 0 && ls.s.g.conns.Open() == 0
		})
	}
	c, br := dialTLS(t, ls.addr, ls.client)
	if resp, _ := exchangeOn(t, c, br, "GET /next HTTP/1.1\r\nHost: h\r\n\r\n"); resp.StatusCode != 200 {
		t.Fatalf("next: %d", resp.StatusCode)
	}
}

// A certificate reloaded applies to the connections made after; one made
// before goes on, on its loop.
func TestLoopTLSCertificateReload(t *testing.T) {
	ls := loopTLSTo(t, Options{Config: oneUpstream(echoTarget(t))}, nil)
	old, br := dialTLS(t, ls.addr, ls.client)
	if resp, _ := exchangeOn(t, old, br, "GET /before HTTP/1.1\r\nHost: h\r\n\r\n"); resp.StatusCode != 200 {
		t.Fatalf("before: %d", resp.StatusCode)
	}
	_, _, pool := writeTLSPair(t, ls.dir, "second-pair.test")
	if changed, err := ls.r.Reload(); err != nil || !changed {
		t.Fatalf("Reload: %v, %v", changed, err)
	}
	cfg := ls.client.Clone()
	cfg.RootCAs = pool
	c, br2 := dialTLS(t, ls.addr, cfg)
	if cn := c.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != "second-pair.test" {
		t.Fatalf("a new connection got %q, want the reloaded second-pair.test", cn)
	}
	if resp, _ := exchangeOn(t, c, br2, "GET /new HTTP/1.1\r\nHost: h\r\n\r\n"); resp.StatusCode != 200 {
		t.Fatalf("new: %d", resp.StatusCode)
	}
	if cn := old.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != "first.test" {
		t.Fatalf("the old connection has %q", cn)
	}
	if resp, _ := exchangeOn(t, old, br, "GET /after HTTP/1.1\r\nHost: h\r\n\r\n"); resp.StatusCode != 200 {
		t.Fatalf("old connection after the reload: %d", resp.StatusCode)
	}
	if n := loopConns(ls.s); n != 2 {
		t.Fatalf("%d connections on the loops, want 2", n)
	}
}

// Shutdown lets a request in flight over TLS finish, closes an idle TLS
// connection with close_notify (its client reads a clean end), and
// returns once both are gone.
func TestLoopTLSShutdownFinishesRequests(t *testing.T) {
	up, arrived, release := heldTarget(t)
	g, err := New(Options{Config: oneUpstream(up), ResponseHeaderTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	ls := serveLoopTLS(t, g, nil)
	busy, bbr := dialTLS(t, ls.addr, ls.client)
	if _, err := io.WriteString(busy, "GET /slow HTTP/1.1\r\nHost: h\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	<-arrived
	idle, _ := dialTLS(t, ls.addr, ls.client)
	if err := idle.Handshake(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "both connections on the loops", func() bool { return loopConns(ls.s) == 2 })
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- ls.s.Shutdown(ctx)
	}()
	// The idle one ends with close_notify: a clean io.EOF.
	if n, err := idle.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("the idle connection read %d, %v; want io.EOF", n, err)
	}
	close(release)
	resp, err := http.ReadResponse(bbr, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(b) != "done" {
		t.Fatalf("in flight: %d %q", resp.StatusCode, b)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if n := g.conns.Open(); n != 0 {
		t.Fatalf("%d slots still taken", n)
	}
}

// Many clients at once, each with kept-alive requests, all served (and
// under -race, the moves from the handshakes' goroutines to the loops).
func TestLoopTLSManyClients(t *testing.T) {
	addr, _ := pathTarget(t)
	ls := loopTLSTo(t, Options{Config: oneUpstream(addr)}, nil)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			c, err := tls.Dial("tcp", ls.addr, ls.client)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			br := bufio.NewReader(c)
			for j := range 20 {
				if _, err := fmt.Fprintf(c, "GET /c%d/%d HTTP/1.1\r\nHost: h\r\n\r\n", i, j); err != nil {
					t.Error(err)
					return
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Error(err)
					return
				}
				b, _ := io.ReadAll(resp.Body)
				if want := fmt.Sprintf("GET /c%d/%d", i, j); string(b) != want {
					t.Errorf("got %q, want %q", b, want)
					return
				}
			}
		})
	}
	wg.Wait()
}

// Idle TLS connections, fresh from their handshake or between requests,
// hold no read buffer and no ciphertext buffer of their own.
func TestLoopTLSIdleConnectionsHoldNoBuffers(t *testing.T) {
	up, _ := pathTarget(t)
	ls := loopTLSTo(t, Options{Config: oneUpstream(up)}, nil)
	const clients = 6
	type client struct {
		c  *tls.Conn
		br *bufio.Reader
	}
	cs := make([]client, clients)
	for i := range cs {
		cs[i].c, cs[i].br = dialTLS(t, ls.addr, ls.client)
		if err := cs[i].c.Handshake(); err != nil {
			t.Fatal(err)
		}
	}
	holding := func() (idle, bufs int) {
		var mu sync.Mutex
		ls.s.onLoops(func(st *loopState) {
			mu.Lock()
			defer mu.Unlock()
			for c := range st.conns {
				if c.idle() {
					idle++
				}
				if c.lc.buf != nil || c.tls.Holds() {
					bufs++
				}
			}
		})
		return idle, bufs
	}
	for round := range 2 {
		waitUntil(t, "every connection idle on a loop", func() bool { idle, _ := holding(); return idle == clients })
		if _, bufs := holding(); bufs != 0 {
			t.Fatalf("round %d: %d of %d idle connections hold a buffer", round, bufs, clients)
		}
		for i := range cs {
			pad := strings.Repeat("x", i*1500) // some past the first read buffer
			if resp, body := exchangeOn(t, cs[i].c, cs[i].br, fmt.Sprintf("GET /c%d HTTP/1.1\r\nHost: h\r\nX-Pad: %s\r\n\r\n", i, pad)); resp.StatusCode != 200 || body != fmt.Sprintf("GET /c%d", i) {
				t.Fatalf("client %d: %d %q", i, resp.StatusCode, body)
			}
		}
	}
}

// A TLS 1.3 KeyUpdate from a real client (openssl s_client, asking for
// the server's own) is answered at once from the loop, its reply written
// after the read that took it, and the requests before and after it are
// served.
func TestLoopTLSKeyUpdate(t *testing.T) {
	openssl := testbin.Find(t, "openssl", "Debian package openssl")
	up, _ := pathTarget(t)
	ls := loopTLSTo(t, Options{Config: oneUpstream(up)}, nil)
	cmd := exec.Command(openssl, "s_client", "-connect", ls.addr, "-tls1_3", "-alpn", "http/1.1", "-CAfile", filepath.Join(ls.dir, "ca.crt"), "-msg")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	chunks := make(chan string, 256)
	go func() {
		defer close(chunks)
		b := make([]byte, 4096)
		for {
			n, err := out.Read(b)
			if n > 0 {
				chunks <- string(b[:n])
			}
			if err != nil {
				return
			}
		}
	}()
	var seen string // the output not yet matched
	await := func(what, want string) {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			if i := strings.Index(seen, want); i >= 0 {
				seen = seen[i+len(want):]
				return
			}
			select {
			case c, ok := <-chunks:
				if !ok {
					t.Fatalf("%s: openssl s_client ended first", what)
				}
				seen += c
			case <-timeout:
				t.Fatalf("%s: not from openssl s_client within 10s; it wrote:\n%s", what, seen)
			}
		}
	}
	await("the handshake verified", "Verify return code: 0")
	if _, err := io.WriteString(stdin, "GET /one HTTP/1.1\r\nHost: h\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	await("the first answer", "GET /one")
	if _, err := io.WriteString(stdin, "K\n"); err != nil { // s_client's command: KeyUpdate, update requested
		t.Fatal(err)
	}
	await("the server's KeyUpdate", "<<< TLS 1.3, Handshake [length 0005], KeyUpdate")
	if _, err := io.WriteString(stdin, "GET /two HTTP/1.1\r\nHost: h\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	await("the answer after the KeyUpdate", "GET /two")
	if n := loopConns(ls.s); n != 1 {
		t.Fatalf("%d connections on the loops, want 1", n)
	}
}

// 280 TLS clients at once, opening and closing every way (answered,
// pipelined, gone after the handshake, gone mid-handshake, gone
// mid-head, reset after the request, handed over to lean with a chunked
// body): once all are gone no slot is taken and the loops hold none of
// them, and after Shutdown the process holds the descriptors it held
// before: the descriptors duplicated for the loops and back for the lean
// engine are all closed.
func TestLoopTLSManyConnectionsAtOnce(t *testing.T) {
	g, err := New(Options{Config: oneUpstream(echoTarget(t)), ResponseHeaderTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	ls := serveLoopTLS(t, g, nil)
	before := openFDs(t)
	const n = 280
	var wg sync.WaitGroup
	var answered atomic.Int64
	for i := range n {
		wg.Go(func() {
			nc, err := net.Dial("tcp", ls.addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer nc.Close()
			_ = nc.SetDeadline(time.Now().Add(20 * time.Second))
			if i%7 == 3 { // gone mid-handshake
				_, _ = nc.Write([]byte{0x16, 0x03, 0x01})
				return
			}
			c := tls.Client(nc, ls.client)
			if err := c.Handshake(); err != nil {
				t.Errorf("client %d: %v", i, err)
				return
			}
			var req string
			switch i % 7 {
			case 0:
				req = "GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
			case 1:
				req = "GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n"
			case 2:
				return
			case 4:
				_, _ = io.WriteString(c, "GET /a HTTP/1.1\r\nHo")
				return
			case 5:
				_, _ = io.WriteString(c, "GET /a HTTP/1.1\r\nHost: h\r\n\r\n")
				_ = nc.(*net.TCPConn).SetLinger(0)
				return
			case 6:
				req = "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
			}
			if _, err := io.WriteString(c, req); err != nil {
				t.Error(err)
				return
			}
			br := bufio.NewReader(c)
			for range strings.Count(req, "HTTP/1.1\r\n") {
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Errorf("client %d: %v", i, err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				if resp.StatusCode == 200 {
					answered.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if want := int64(n / 7 * 4); answered.Load() != want {
		t.Errorf("%d answers, want %d", answered.Load(), want)
	}
	waitUntil(t, "every connection and its slot to go", func() bool {
		return loopConns(ls.s) == 0 && leanConns(ls.s) == 0 && g.conns.Open() == 0
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ls.s.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	g.Close()
	if extra := fdsBack(t, before); len(extra) > 0 {
		t.Errorf("%d descriptors open after Shutdown, not before: %v", len(extra), extra[:min(len(extra), 20)])
	}
}

// Over TLS the loop engine answers every request of engineRequests as
// the lean engine does (the loop hands the lean engine what it does not
// serve itself, with the connection's TLS): a difference fails.
func TestLoopAgreesWithLeanOverTLS(t *testing.T) {
	g := diffGateway(t)
	loop := serveLoopTLS(t, g, nil)
	leanAddr, _, leanClient := serveLeanTLS(t, g, nil, nil)
	dial := func(addr string, cfg *tls.Config) func() (net.Conn, error) {
		return func() (net.Conn, error) { return tls.Dial("tcp", addr, cfg) }
	}
	for _, tc := range engineRequests {
		t.Run(tc.name, func(t *testing.T) {
			raw := []byte(tc.raw)
			methods := requestMethods(raw)
			o := exchangeRawOn(t, dial(loop.addr, loop.client), raw, methods, false)
			l := exchangeRawOn(t, dial(leanAddr, leanClient), raw, methods, false)
			if !sameAnswers(o, l) {
				t.Errorf("request %.200q over TLS:\nloop: %s\nlean: %s", raw, showAnswers(o), showAnswers(l))
			}
		})
	}
}

// heldConn passes its first write (the ClientHello) and holds the rest
// until release: a client's Finished and its first request then reach
// the server in one segment, read by the handshake along with it.
type heldConn struct {
	net.Conn
	writes int
	held   []byte
}

func (c *heldConn) Write(p []byte) (int, error) {
	c.writes++
	if c.writes == 1 {
		return c.Conn.Write(p)
	}
	c.held = append(c.held, p...)
	return len(p), nil
}

func (c *heldConn) release() error {
	_, err := c.Conn.Write(c.held)
	return err
}

// A request that came with the client's Finished is in the tls.Conn when
// the connection moves to its loop, where the socket has nothing to
// read: the loop serves it at once.
func TestLoopTLSRequestWithTheFinished(t *testing.T) {
	up, _ := pathTarget(t)
	ls := loopTLSTo(t, Options{Config: oneUpstream(up)}, nil)
	nc, err := net.Dial("tcp", ls.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	hc := &heldConn{Conn: nc}
	c := tls.Client(hc, ls.client)
	if err := c.Handshake(); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, "GET /early HTTP/1.1\r\nHost: h\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if err := hc.release(); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(b) != "GET /early" {
		t.Fatalf("got %d %q", resp.StatusCode, b)
	}
}

// A TLS 1.3 client that reads nothing and sends KeyUpdates (each asks the
// gateway for one of its own) is cut once the replies waiting pass
// looptls's bound, where before they grew with what it sent.
func TestLoopTLSKeyUpdatesOfAClientNotReading(t *testing.T) {
	ls := loopTLSTo(t, Options{Config: oneUpstream(echoTarget(t))}, nil)
	nc, r, err := looptlstest.Dial(context.Background(), ls.addr, ls.client)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// A request's head that never ends, a byte a record: it stays on the
	// loop, which reads on.
	if _, err := nc.Write(r.Data([]byte("GET / HTTP/1.1\r\nHost: x\r\nX-Pad: "))); err != nil {
		t.Fatal(err)
	}
	switch err := looptlstest.Flood(nc, r, []byte("a")); {
	case err == nil:
		t.Fatal("a client that reads nothing sent 600,000 KeyUpdates and is still served")
	case errors.Is(err, os.ErrDeadlineExceeded):
		t.Fatal("the server stopped reading a client that reads nothing, and did not cut it within 10 s")
	}
}
