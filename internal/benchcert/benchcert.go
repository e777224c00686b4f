// Package benchcert writes the self-signed certificate the load drivers
// under test/ serve TLS with (gwbench -tls, loadgen -tls): one ECDSA
// P-256 certificate for 127.0.0.1, ::1 and localhost that is its own
// root, so that the drivers verify the servers they measure (no
// InsecureSkipVerify) without a CA of their own.
package benchcert

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
	"time"
)

// Files are a certificate and its key in PEM files, as nginx
// (ssl_certificate, ssl_certificate_key) and FluxGate's tls sections read
// them, and the pool that verifies the certificate.
type Files struct {
	Cert, Key string
	Roots     *x509.CertPool
}

// ClientConfig is what a driver verifies the servers with: the
// certificate as the only root.
func (f *Files) ClientConfig() *tls.Config {
	return &tls.Config{RootCAs: f.Roots, MinVersion: tls.VersionTLS12}
}

// Write writes a self-signed certificate with common name name, valid
// from an hour before now for a day, and its key (PKCS #8) to cert.pem
// and key.pem in dir.
func Write(dir, name string, now time.Time) (*Files, error) {
	certPEM, keyPEM, roots, err := PEM(name, now)
	if err != nil {
		return nil, err
	}
	f := &Files{Cert: filepath.Join(dir, "cert.pem"), Key: filepath.Join(dir, "key.pem"), Roots: roots}
	if err := os.WriteFile(f.Cert, certPEM, 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(f.Key, keyPEM, 0o600); err != nil {
		return nil, err
	}
	return f, nil
}

// PEM returns the certificate Write writes and its key as PEM, and the
// pool that verifies the certificate.
func PEM(name string, now time.Time) (certPEM, keyPEM []byte, roots *x509.CertPool, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true, // its own root
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, nil, err
	}
	roots = x509.NewCertPool()
	roots.AddCert(cert)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), roots, nil
}
