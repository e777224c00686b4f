package h2

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testCert is a self-signed certificate for 127.0.0.1, made once.
var testCert = sync.OnceValues(func() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "h2 test"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
})

// testServer is a Server on a TLS listener on a free loopback port.
type testServer struct {
	srv   *Server
	addr  string
	roots *x509.CertPool
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	errs  []error // guarded by mu: ServeConn's errors

	accepted atomic.Int32 // connections accepted
}

// start serves s over TLS (ALPN h2) until the test ends; then it shuts s
// down and checks that every connection ended.
func start(t *testing.T, s *Server) *testServer {
	t.Helper()
	cert, err := testCert()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{srv: s, addr: raw.Addr().String(), roots: x509.NewCertPool(), ln: raw}
	ts.roots.AddCert(cert.Leaf)
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS12}
	ts.wg.Add(1)
	go func() {
		defer ts.wg.Done()
		for {
			c, err := raw.Accept()
			if err != nil {
				return
			}
			ts.accepted.Add(1)
			ts.wg.Add(1)
			go func() {
				defer ts.wg.Done()
				tc := tls.Server(c, cfg)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				err := tc.HandshakeContext(ctx)
				cancel()
				if err != nil {
					_ = c.Close()
					return
				}
				if err := s.ServeConn(tc); err != nil && !errors.Is(err, http.ErrServerClosed) {
					ts.mu.Lock()
					ts.errs = append(ts.errs, err)
					ts.mu.Unlock()
				}
			}()
		}
	}()
	t.Cleanup(func() {
		_ = raw.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		ts.wg.Wait()
		ts.mu.Lock()
		defer ts.mu.Unlock()
		for _, err := range ts.errs {
			t.Errorf("ServeConn: %v", err)
		}
	})
	return ts
}

// client is net/http's HTTP/2 client over TLS, one connection multiplexed.
func (ts *testServer) client(t *testing.T, tune func(*http.HTTP2Config)) *http.Client {
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: ts.roots, MinVersion: tls.VersionTLS12},
		Protocols:       new(http.Protocols),
		HTTP2:           &http.HTTP2Config{},
	}
	tr.Protocols.SetHTTP2(true)
	if tune != nil {
		tune(tr.HTTP2)
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

// url is the server's https URL for path.
func (ts *testServer) url(path string) string { return "https://" + ts.addr + path }

// rawConn is a TLS connection to ts that chose h2, for raw frames.
func (ts *testServer) rawConn(t *testing.T) *tls.Conn {
	t.Helper()
	c, err := tls.Dial("tcp", ts.addr, &tls.Config{RootCAs: ts.roots, NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}
