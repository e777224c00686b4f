//go:build linux

package loophttp

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fluxgate/fluxgate/certs"
	"github.com/fluxgate/fluxgate/certs/certstest"
	"github.com/fluxgate/fluxgate/internal/conncap"
	"github.com/fluxgate/fluxgate/internal/eventloop"
	"github.com/fluxgate/fluxgate/internal/looptls"
	"github.com/fluxgate/fluxgate/internal/looptls/looptlstest"
)

// startServerTLS is startServer over TLS: the listener is the agent's
// (certs' handshakes on goroutines over looptls.Wrap, under the cap's
// listener when Options.Cap is set), served by ServeTLS, which offers h2
// and http/1.1; the clients verify the server's certificate.
func startServerTLS(t *testing.T, mod func(*Options)) *testServer {
	return startOn(t, true, mod)
}

// listenTLS builds the TLS listener over ln and the clients' config, and
// makes fallback serve HTTP/2 to the connections that agree on it.
func (ts *testServer) listenTLS(t *testing.T, ln net.Listener, k *conncap.Cap, fallback *http.Server) net.Listener {
	t.Helper()
	dir := t.TempDir()
	ca := certstest.NewCA(t, "loophttp CA")
	certFile, keyFile := ca.Server(t, "loophttp.test").Write(t, filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
	r, err := certs.New(certs.Options{Server: "test", CertFile: certFile, KeyFile: keyFile, HandshakeTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	if k != nil {
		ln = k.Listener(ln)
	}
	ts.tls = &tls.Config{RootCAs: ca.Pool(), ServerName: "loophttp.test", MinVersion: tls.VersionTLS12}
	cfg := r.ServerConfig(tls.NoClientCert, tls.VersionTLS12, "h2", "http/1.1")
	fallback.TLSConfig = cfg
	return r.WrappedListener(ln, cfg, "http", looptls.Wrap)
}

// Requests pipelined in one write past a TLS record's size, and past the
// loop's read of the socket (the tls.Conn then holds records the socket
// no longer tells of), are all answered, in order, on the loops.
func TestTLSPipelinedPastRecords(t *testing.T) {
	ts := startServerTLS(t, nil)
	var raw strings.Builder
	const n = 600 // ~60 KiB of requests: several records, more than one read's
	for i := range n {
		fmt.Fprintf(&raw, "GET /check?n=%d HTTP/1.1\r\nHost: x\r\nX-Pad: %s\r\n\r\n", i, strings.Repeat("p", 40))
	}
	before := ts.onLoop.Load()
	for i, a := range ts.roundTrip(t, raw.String(), n) {
		if a.header.Get("X-Query") != fmt.Sprintf("n=%d", i) || a.header.Get("X-TLS") != "true" {
			t.Fatalf("answer %d: %s", i, a)
		}
	}
	if got := ts.onLoop.Load() - before; got != n {
		t.Errorf("%d of %d requests answered on the loops", got, n)
	}
	// A request sent after a waiting one, in the same record: read aside
	// and answered after it.
	got := ts.roundTrip(t, "GET /wait HTTP/1.1\r\nHost: x\r\n\r\nGET /check?n=after HTTP/1.1\r\nHost: x\r\n\r\n", 2)
	if got[0].header.Get("X-Waited") != "yes" || got[1].header.Get("X-Query") != "n=after" {
		t.Errorf("after a waiting request: %s, %s", got[0], got[1])
	}
}

// A client that agrees on h2 by ALPN is served by Fallback's HTTP/2,
// with its TLS state; the loops serve HTTP/1.1 clients beside it.
func TestTLSHTTP2GoesToFallback(t *testing.T) {
	ts := startServerTLS(t, nil)
	tr := &http.Transport{TLSClientConfig: ts.tls.Clone(), ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	before := ts.onLoop.Load()
	for _, path := range []string{"/check", "/other"} {
		resp, err := client.Get("https://" + ts.addr + path)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.ProtoMajor != 2 || resp.StatusCode != 200 || resp.Header.Get("X-TLS") != "true" {
			t.Errorf("%s over h2: HTTP/%d %d, X-TLS %q", path, resp.ProtoMajor, resp.StatusCode, resp.Header.Get("X-TLS"))
		}
	}
	if got := ts.onLoop.Load() - before; got != 1 { // the /check, by the mux on net/http
		t.Errorf("handler calls %d, want 1", got)
	}
	if a := ts.roundTrip(t, "GET /check HTTP/1.1\r\nHost: x\r\n\r\n", 1)[0]; a.header.Get("X-TLS") != "true" {
		t.Errorf("HTTP/1.1 beside it: %s", a)
	}
}

// A second ServeTLS fails and closes its listener, the first serving on;
// Shutdown ends ServeTLS: a client in its handshake is closed, ServeTLS
// returns, and one called after it returns at once, its listener closed.
func TestShutdownEndsServeTLS(t *testing.T) {
	ts := startServerTLS(t, nil)
	second, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := ts.s.ServeTLS(second); !errors.Is(err, eventloop.ErrServing) {
		t.Errorf("a second ServeTLS: %v, want ErrServing", err)
	}
	if _, err := second.Accept(); err == nil {
		t.Error("a second ServeTLS left its listener open")
	}
	if a := ts.roundTrip(t, "GET /check HTTP/1.1\r\nHost: x\r\n\r\n", 1)[0]; a.header.Get("X-TLS") != "true" {
		t.Errorf("the first ServeTLS after a second: %s", a)
	}
	silent, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ts.s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-ts.served:
		ts.served <- err // for the cleanup's check
	case <-time.After(5 * time.Second):
		t.Fatal("ServeTLS still running 5 s after Shutdown")
	}
	_ = silent.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := bufio.NewReader(silent).ReadByte(); err == nil || isTimeout(err) {
		t.Errorf("a client in its handshake after Shutdown: read %v, want the connection closed", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := ts.s.ServeTLS(ln); !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("ServeTLS after Shutdown: %v, want http.ErrServerClosed", err)
	}
	if _, err := ln.Accept(); err == nil {
		t.Error("ServeTLS after Shutdown left its listener open")
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// A client that connects and sends nothing is closed after HeaderTimeout
// (the first request's head, from the connection's start), plain and over
// TLS alike, not after the far longer IdleTimeout.
func TestSilentClientHeaderTimeout(t *testing.T) {
	for _, sv := range servings {
		t.Run(sv.name, func(t *testing.T) {
			ts := sv.start(t, func(o *Options) {
				o.HeaderTimeout = 100 * time.Millisecond
				o.IdleTimeout = time.Minute
			})
			c, err := ts.dial()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
			if _, err := io.ReadAll(c); isTimeout(err) {
				t.Error("a silent client still open after 20 s (HeaderTimeout 100ms)")
			}
		})
	}
}

// A TLS 1.3 client that reads nothing and sends KeyUpdates (each asks the
// server for one of its own) is cut: the replies wait as answers do (the
// loop stops reading it, and WriteTimeout runs), and looptls fails a read
// once more than outKeep bytes of them wait.
func TestTLSKeyUpdatesOfAClientNotReading(t *testing.T) {
	ts := startServerTLS(t, func(o *Options) { o.WriteTimeout = 200 * time.Millisecond })
	cfg := ts.tls.Clone()
	cfg.NextProtos = []string{"http/1.1"}
	nc, r, err := looptlstest.Dial(context.Background(), ts.addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// A request's head that never ends, a byte a record: it stays on the
	// loop, which reads on.
	if _, err := nc.Write(r.Data([]byte("GET /check HTTP/1.1\r\nHost: x\r\nX-Pad: "))); err != nil {
		t.Fatal(err)
	}
	switch err := looptlstest.Flood(nc, r, []byte("a")); {
	case err == nil:
		t.Fatal("a client that reads nothing sent 600,000 KeyUpdates and is still served")
	case errors.Is(err, os.ErrDeadlineExceeded):
		t.Fatal("the server stopped reading a client that reads nothing, and did not cut it within 10 s")
	}
}
