package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// tlsLabel names what -tls measures, in the printed tables.
const tlsLabel = "TLS (ECDSA P-256, TLS 1.3, keep-alive)"

// tlsFiles is a certificate and its key in PEM files, as nginx
// (ssl_certificate, ssl_certificate_key) and gateway.tls read them, and
// the pool that verifies the certificate, for gwbench's own clients.
type tlsFiles struct {
	cert, key string
	roots     *x509.CertPool
}

// clientConfig is what gwbench's clients verify the servers with: the
// generated certificate as the only root, no InsecureSkipVerify.
func (f *tlsFiles) clientConfig() *tls.Config {
	return &tls.Config{RootCAs: f.roots, MinVersion: tls.VersionTLS12}
}

// selfSigned writes a self-signed ECDSA P-256 certificate for 127.0.0.1,
// ::1 and localhost, valid from an hour before now for a day, and its key
// (PKCS #8) to cert.pem and key.pem in dir.
func selfSigned(dir string, now time.Time) (*tlsFiles, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "gwbench"},
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
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	f := &tlsFiles{cert: filepath.Join(dir, "cert.pem"), key: filepath.Join(dir, "key.pem"), roots: x509.NewCertPool()}
	f.roots.AddCert(cert)
	if err := os.WriteFile(f.cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(f.key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return nil, err
	}
	return f, nil
}

// errNotTLS13 is returned for a server that negotiated less than TLS 1.3
// with gwbench's client: the tables would then misname what they show.
var errNotTLS13 = errors.New("did not negotiate TLS 1.3")

func checkTLS13(url string, st *tls.ConnectionState) error {
	if st == nil {
		return fmt.Errorf("%s: no TLS", url)
	}
	if st.Version != tls.VersionTLS13 {
		return fmt.Errorf("%s %w (got %s)", url, errNotTLS13, tls.VersionName(st.Version))
	}
	return nil
}
