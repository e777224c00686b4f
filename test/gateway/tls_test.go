package gateway

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fluxgate/fluxgate/gateway"
)

// writePair writes a self-signed certificate for name and 127.0.0.1 and
// its key into dir as tls.crt and tls.key, replacing any there. It serves
// as a server or a client certificate.
func writePair(t *testing.T, dir, name string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
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
	// Replace each file by rename, as cert managers do.
	for path, block := range map[string]*pem.Block{
		certFile: {Type: "CERTIFICATE", Bytes: der},
		keyFile:  {Type: "EC PRIVATE KEY", Bytes: kder},
	} {
		if err := os.WriteFile(path+".tmp", pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			t.Fatal(err)
		}
	}
	return certFile, keyFile
}

// servedName opens a new TLS connection to the gateway, proxies one
// request through it and returns the server name of the certificate it
// was served with, the protocol and the backend that answered.
func servedName(t *testing.T, url string, h2 bool) (name, proto, backend string) {
	t.Helper()
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, // certificates change under the test; checked by name
		DisableKeepAlives: true,
		ForceAttemptHTTP2: h2,
	}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d", url, resp.StatusCode)
	}
	return resp.TLS.PeerCertificates[0].DNSNames[0], resp.Proto, resp.Header.Get("X-Backend")
}

func TestTLSTerminationAndReload(t *testing.T) {
	b := newBackend(t, "b1")
	dir := t.TempDir()
	certFile, keyFile := writePair(t, dir, "one.test")
	cfg := oneRoute(gateway.UpstreamConfig{Name: "u", Targets: targets(b)})
	cfg.TLS = gateway.TLSConfig{CertFile: certFile, KeyFile: keyFile}
	s := startStack(t, cfg, nil, gateway.ServiceOptions{})
	url := "https://" + s.svc.Addr().String() + "/x"

	for _, h2 := range []bool{false, true} {
		name, proto, be := servedName(t, url, h2)
		wantProto := map[bool]string{false: "HTTP/1.1", true: "HTTP/2.0"}[h2]
		if name != "one.test" || proto != wantProto || be != "b1" {
			t.Fatalf("h2=%v: served %q over %s by %q; want one.test over %s by b1", h2, name, proto, be, wantProto)
		}
	}
	if n := histogramCount(t, s.reg, "fluxgate_tls_handshake_duration_seconds"); n < 2 {
		t.Errorf("handshakes measured = %d, want >= 2", n)
	}
	exp := gauge(t, s.reg, "fluxgate_tls_certificate_expiry_timestamp_seconds", map[string]string{"server_name": "one.test"})
	if d := time.Until(time.Unix(int64(exp), 0)); d < 23*time.Hour || d > 25*time.Hour {
		t.Errorf("expiry gauge %v is %s away, want about 24h", exp, d)
	}

	// A new pair: new handshakes see it once the poll notices.
	writePair(t, dir, "two.test")
	if took, ok := waitFor(8*time.Second, func() bool { n, _, _ := servedName(t, url, false); return n == "two.test" }); !ok {
		t.Fatal("new certificate not served within 8s")
	} else {
		t.Logf("new certificate served after %s", took)
	}

	// An invalid replacement keeps the pair being served.
	if err := os.WriteFile(certFile, []byte("-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, ok := waitFor(8*time.Second, func() bool {
		return gauge(t, s.reg, "fluxgate_tls_certificate_reloads_total", map[string]string{"result": "failure"}) >= 1
	}); !ok {
		t.Fatal("invalid certificate not noticed within 8s")
	}
	if name, _, _ := servedName(t, url, false); name != "two.test" {
		t.Fatalf("after an invalid replacement served %q, want two.test kept", name)
	}
}

// histogramCount is the sample count of an unlabelled histogram, 0 if absent.
func histogramCount(t *testing.T, reg prometheus.Gatherer, name string) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				return m.GetHistogram().GetSampleCount()
			}
		}
	}
	return 0
}

// Upstreams that require a client certificate get the one of
// gateway.upstream_tls, verified against its ca_file and server_name,
// over HTTP/1.1 (the fast engine) and HTTP/2; without it they refuse.
func TestUpstreamMutualTLS(t *testing.T) {
	serverCert, serverKey := writePair(t, t.TempDir(), "upstream.internal")
	clientCert, clientKey := writePair(t, t.TempDir(), "fluxgate-gateway")
	pair, err := tls.LoadX509KeyPair(serverCert, serverKey)
	if err != nil {
		t.Fatal(err)
	}
	clientPEM, err := os.ReadFile(clientCert)
	if err != nil {
		t.Fatal(err)
	}
	clients := x509.NewCertPool()
	clients.AppendCertsFromPEM(clientPEM)
	for _, h2 := range []bool{false, true} {
		up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "HTTP/%d client=%s", r.ProtoMajor, r.TLS.PeerCertificates[0].Subject.CommonName)
		}))
		up.EnableHTTP2 = h2
		up.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clients}
		up.StartTLS()
		t.Cleanup(up.Close)
		major := map[bool]string{false: "1", true: "2"}[h2]
		for _, withCert := range []bool{true, false} {
			cfg := oneRoute(gateway.UpstreamConfig{Name: "u", TLS: true, HTTP2: h2,
				Targets: []gateway.TargetConfig{{Address: strings.TrimPrefix(up.URL, "https://")}}})
			cfg.UpstreamTLS = gateway.UpstreamTLSConfig{CAFile: serverCert, ServerName: "upstream.internal"}
			if withCert {
				cfg.UpstreamTLS.CertFile, cfg.UpstreamTLS.KeyFile = clientCert, clientKey
			}
			s := startStack(t, cfg, nil, gateway.ServiceOptions{})
			resp, err := s.hc.Get(s.url + "/")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch {
			case withCert && (resp.StatusCode != 200 || string(body) != "HTTP/"+major+" client=fluxgate-gateway"):
				t.Errorf("h2=%v with the client certificate: %d %q", h2, resp.StatusCode, body)
			case !withCert && resp.StatusCode != http.StatusBadGateway:
				t.Errorf("h2=%v without a client certificate: %d %q, want 502", h2, resp.StatusCode, body)
			}
		}
	}
}

// A gateway.upstream_tls file that does not load stops the gateway from
// starting, naming the file.
func TestUpstreamTLSBadFile(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(bad, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := gateway.UpstreamTLS(gateway.UpstreamTLSConfig{CAFile: bad})
	if err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("bad ca_file: %v", err)
	}
	_, err = gateway.UpstreamTLS(gateway.UpstreamTLSConfig{CertFile: bad, KeyFile: bad})
	if err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("bad cert_file: %v", err)
	}
	if err := (gateway.Config{UpstreamTLS: gateway.UpstreamTLSConfig{CertFile: bad}}).Validate(); err == nil || !strings.Contains(err.Error(), "upstream_tls") {
		t.Errorf("cert_file without key_file validated: %v", err)
	}
}
