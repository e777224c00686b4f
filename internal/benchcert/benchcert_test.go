package benchcert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"testing"
	"time"
)

// The certificate verifies for 127.0.0.1, ::1 and localhost with the
// pool the drivers use, and for nothing else; the key file holds
// its ECDSA P-256 key.
func TestWriteVerifiesForLoopbackWithItsPool(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	f, err := Write(t.TempDir(), "bench", now)
	if err != nil {
		t.Fatal(err)
	}
	pemBytes, err := os.ReadFile(f.Cert)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(pemBytes)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("cert.pem holds no CERTIFICATE block: %q", pemBytes)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if pub, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Fatalf("public key %T, want ECDSA P-256", cert.PublicKey)
	}
	for _, name := range []string{"127.0.0.1", "::1", "localhost"} {
		if _, err := cert.Verify(x509.VerifyOptions{DNSName: name, Roots: f.Roots, CurrentTime: now}); err != nil {
			t.Errorf("does not verify for %s: %v", name, err)
		}
	}
	if _, err := cert.Verify(x509.VerifyOptions{DNSName: "127.0.0.2", Roots: f.Roots, CurrentTime: now}); err == nil {
		t.Error("verifies for 127.0.0.2")
	}
	if _, err := cert.Verify(x509.VerifyOptions{DNSName: "127.0.0.1", Roots: x509.NewCertPool(), CurrentTime: now}); err == nil {
		t.Error("verifies without its pool")
	}
	if _, err := cert.Verify(x509.VerifyOptions{DNSName: "127.0.0.1", Roots: f.Roots, CurrentTime: now.Add(25 * time.Hour)}); err == nil {
		t.Error("still valid after a day")
	}
	if _, err := tls.LoadX509KeyPair(f.Cert, f.Key); err != nil {
		t.Fatalf("key.pem does not match cert.pem: %v", err)
	}
}
