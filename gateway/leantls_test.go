package gateway

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/fluxgate/fluxgate/controlpoint/flow"
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
	ls.ServeTLSWith(&http.Server{Handler: g, TLSConfig: scfg})
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
