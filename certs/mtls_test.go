package certs

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/fluxgate/fluxgate/certs/certstest"
)

// serveTLS serves 200 over r's Listener with cfg on a loopback port.
func serveTLS(t *testing.T, r *Reloader, cfg *tls.Config) string {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := r.Listener(inner, cfg, "test")
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }),
		ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "https://" + inner.Addr().String() + "/"
}

// get reports whether a GET with cfg was answered 200.
func get(t *testing.T, url string, cfg *tls.Config) error {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
	defer c.CloseIdleConnections()
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	return nil
}

// With a client CA file, ServerConfig verifies client certificates:
// required, or only when given; the CA file reloads with the pair.
func TestReloaderClientCAs(t *testing.T) {
	dir := t.TempDir()
	ca, other := certstest.NewCA(t, "ca-one"), certstest.NewCA(t, "ca-other")
	certFile, keyFile := ca.Server(t, "server.test").Write(t, filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
	caFile := ca.WriteCert(t, filepath.Join(dir, "ca.crt"))
	r, err := New(Options{Server: "test", CertFile: certFile, KeyFile: keyFile, ClientCAFile: caFile})
	if err != nil {
		t.Fatal(err)
	}
	good, stranger := ca.Client(t, "good"), other.Client(t, "stranger")
	require := serveTLS(t, r, r.ServerConfig(tls.RequireAndVerifyClientCert, 0, "http/1.1"))
	ifGiven := serveTLS(t, r, r.ServerConfig(tls.VerifyClientCertIfGiven, tls.VersionTLS13, "http/1.1"))
	cases := []struct {
		url    string
		client *certstest.Pair
		ok     bool
	}{
		{require, good, true},
		{require, nil, false},
		{require, stranger, false},
		{ifGiven, good, true},
		{ifGiven, nil, true},
		{ifGiven, stranger, false},
	}
	for i, c := range cases {
		if err := get(t, c.url, certstest.ClientConfig(ca, c.client)); (err == nil) != c.ok {
			t.Errorf("case %d: GET: %v, want success %v", i, err, c.ok)
		}
	}
	// TLS 1.2 is below the second listener's minimum.
	old := certstest.ClientConfig(ca, good)
	old.MaxVersion = tls.VersionTLS12
	if err := get(t, ifGiven, old); err == nil {
		t.Error("TLS 1.2 client accepted by a TLS 1.3 listener")
	}

	// The other CA replaces the first: its clients get in, the first's
	// no longer do.
	other.WriteCert(t, caFile)
	if changed, err := r.Reload(); !changed || err != nil {
		t.Fatalf("Reload after a new CA file = %v, %v", changed, err)
	}
	if err := get(t, require, certstest.ClientConfig(ca, stranger)); err != nil {
		t.Errorf("client of the new CA refused: %v", err)
	}
	if err := get(t, require, certstest.ClientConfig(ca, good)); err == nil {
		t.Error("client of the replaced CA accepted")
	}
	if err := writeFile(caFile, "not a CA"); err != nil {
		t.Fatal(err)
	}
	if changed, err := r.Reload(); changed || err == nil {
		t.Fatalf("Reload of a CA file without certificates = %v, %v; want refused", changed, err)
	}
	if err := get(t, require, certstest.ClientConfig(ca, stranger)); err != nil {
		t.Errorf("after a refused CA file, the previous CA no longer verifies: %v", err)
	}
}

// The agent and the gateway register their TLS metrics on the same
// registry in `fluxgate gateway`: each writes its own series, and closing
// one leaves the other's.
func TestReloadersShareRegistry(t *testing.T) {
	ca := certstest.NewCA(t, "ca")
	reg := prometheus.NewPedanticRegistry()
	var rs []*Reloader
	for _, server := range []string{"agent", "gateway"} {
		dir := t.TempDir()
		c, k := ca.Server(t, server+".test").Write(t, filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
		r, err := New(Options{Server: server, CertFile: c, KeyFile: k, Registerer: reg})
		if err != nil {
			t.Fatalf("%s: %v", server, err)
		}
		r.GRPCCredentials(r.ServerConfig(tls.NoClientCert, 0), server+"_listener")
		rs = append(rs, r)
	}
	count := func(name string) int {
		t.Helper()
		n, err := testutil.GatherAndCount(reg, name)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count("fluxgate_tls_certificate_expiry_timestamp_seconds"); n != 2 {
		t.Errorf("expiry series = %d, want 2", n)
	}
	if n := count("fluxgate_tls_handshake_errors_total"); n != 2 {
		t.Errorf("handshake error series = %d, want 2 (one per listener)", n)
	}
	rs[0].Close()
	if n := count("fluxgate_tls_certificate_expiry_timestamp_seconds"); n != 1 {
		t.Errorf("expiry series after closing one = %d, want 1", n)
	}
	if n := count("fluxgate_tls_handshake_duration_seconds"); n != 1 {
		t.Errorf("handshake series after closing one = %d, want 1", n)
	}
}

// New names the file and the problem.
func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	ca := certstest.NewCA(t, "ca")
	certFile, keyFile := ca.Server(t, "a.test").Write(t, filepath.Join(dir, "a.crt"), filepath.Join(dir, "a.key"))
	_, otherKey := ca.Server(t, "b.test").Write(t, filepath.Join(dir, "b.crt"), filepath.Join(dir, "b.key"))
	garbage := filepath.Join(dir, "garbage.pem")
	if err := writeFile(garbage, "not PEM"); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.crt")
	cases := []struct {
		opts Options
		want string
	}{
		{Options{Server: "x", CertFile: certFile}, "both required"},
		{Options{Server: "x", CertFile: missing, KeyFile: keyFile}, missing},
		{Options{Server: "x", CertFile: certFile, KeyFile: otherKey}, "private key does not match public key"},
		{Options{Server: "x", CertFile: garbage, KeyFile: keyFile}, garbage},
		{Options{Server: "x", CertFile: certFile, KeyFile: keyFile, ClientCAFile: garbage}, garbage + ": no PEM certificate"},
		{Options{Server: "x", CertFile: certFile, KeyFile: keyFile, ClientCAFile: missing}, missing},
	}
	for i, c := range cases {
		_, err := New(c.opts)
		if err == nil || !contains(err.Error(), c.want) {
			t.Errorf("case %d: New(%+v) = %v, want an error with %q", i, c.opts, err, c.want)
		}
	}
}
