package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// writePair writes a self-signed certificate for name (also valid for
// 127.0.0.1) and its key to dir, returning the paths and NotAfter.
func writePair(t *testing.T, dir, name string) (certFile, keyFile string, notAfter time.Time) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	notAfter = time.Now().Add(24 * time.Hour).Truncate(time.Second)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, notAfter
}

// writeTestFile replaces path with b, failing the test if it cannot.
func writeTestFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestReloader(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, exp1 := writePair(t, dir, "one.test")
	reg := prometheus.NewPedanticRegistry()
	c, err := New(Options{Server: "gateway", CertFile: certFile, KeyFile: keyFile, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	name := func() string { return c.Certificate().Leaf.DNSNames[0] }
	expiry := func(server string) float64 {
		return testutil.ToFloat64(c.m.expiry.WithLabelValues("gateway", server))
	}
	steps := []struct {
		what        string
		change      func()
		wantChanged bool
		wantErr     bool
		wantName    string
	}{
		{"unchanged files", func() {}, false, false, "one.test"},
		{"new pair", func() { _, _, exp1 = writePair(t, dir, "two.test") }, true, false, "two.test"},
		{"garbage cert", func() { writeTestFile(t, certFile, []byte("not a certificate")) }, false, true, "two.test"},
		{"garbage tried once", func() {}, false, false, "two.test"},
		{"key of another pair", func() {
			other := t.TempDir()
			_, k, _ := writePair(t, other, "three.test")
			_, _, _ = writePair(t, dir, "four.test")
			b, _ := os.ReadFile(k)
			writeTestFile(t, keyFile, b)
		}, false, true, "two.test"},
		{"good pair again", func() { _, _, exp1 = writePair(t, dir, "five.test") }, true, false, "five.test"},
	}
	for _, s := range steps {
		s.change()
		changed, err := c.Reload()
		if changed != s.wantChanged || (err != nil) != s.wantErr {
			t.Fatalf("%s: Reload() = %v, %v; want changed %v, error %v", s.what, changed, err, s.wantChanged, s.wantErr)
		}
		if got := name(); got != s.wantName {
			t.Fatalf("%s: serving %q, want %q", s.what, got, s.wantName)
		}
	}
	if got := expiry("five.test"); got != float64(exp1.Unix()) {
		t.Errorf("expiry gauge = %v, want %v", got, exp1.Unix())
	}
	if n := testutil.CollectAndCount(c.m.expiry); n != 1 {
		t.Errorf("expiry series = %d, want 1 (old server names deleted)", n)
	}
	if got := testutil.ToFloat64(c.m.reloads.WithLabelValues("gateway", "failure")); got != 2 {
		t.Errorf("failed reloads = %v, want 2", got)
	}
}

func TestReloaderListener(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, _ := writePair(t, dir, "one.test")
	c, err := New(Options{Server: "gateway", CertFile: certFile, KeyFile: keyFile, HandshakeTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := c.Listener(inner, c.TLSConfig(), "gateway")
	defer ln.Close()
	// A client that never speaks must not hold up the next one.
	idle, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	go func() {
		conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
		if err == nil {
			conn.Close()
		}
	}()
	conn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	st := conn.(*tls.Conn).ConnectionState()
	conn.Close()
	if !st.HandshakeComplete || st.NegotiatedProtocol != "h2" {
		t.Errorf("accepted connection: handshake complete %v, protocol %q; want true, h2", st.HandshakeComplete, st.NegotiatedProtocol)
	}
	if n := testutil.CollectAndCount(c.m.handshake); n != 1 {
		t.Errorf("handshake histogram series = %d", n)
	}
	ln.Close()
	if _, err := ln.Accept(); err == nil {
		t.Error("Accept after Close succeeded")
	}
}

func writeFile(name, content string) error { return os.WriteFile(name, []byte(content), 0o600) }

func contains(s, sub string) bool { return strings.Contains(s, sub) }
