package main

import (
	"crypto/tls"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fluxgate/fluxgate"
	"github.com/fluxgate/fluxgate/internal/benchcert"
)

// A server with the pair and a client with ClientConfig complete a TLS
// 1.3 handshake on loopback, which checkTLS13 accepts; one capped at TLS
// 1.2 is refused.
func TestHandshakeWithClientConfig(t *testing.T) {
	f, err := benchcert.Write(t.TempDir(), "gwbench", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		maxVersion uint16
		wantErr    error
	}{{tls.VersionTLS13, nil}, {tls.VersionTLS12, errNotTLS13}} {
		ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}, MaxVersion: tc.maxVersion})
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			_, _ = io.WriteString(c, "x") // completes the server's side of the handshake
		}()
		c, err := tls.Dial("tcp", ln.Addr().String(), f.ClientConfig())
		if err != nil {
			_ = ln.Close()
			t.Fatalf("max %s: dial: %v", tls.VersionName(tc.maxVersion), err)
		}
		st := c.ConnectionState()
		got := checkTLS13("https://"+ln.Addr().String()+"/", &st)
		_ = c.Close()
		_ = ln.Close()
		if !errors.Is(got, tc.wantErr) || (tc.wantErr == nil) != (got == nil) {
			t.Errorf("max %s: checkTLS13 = %v, want %v", tls.VersionName(tc.maxVersion), got, tc.wantErr)
		}
	}
	if err := checkTLS13("http://x/", nil); err == nil {
		t.Error("checkTLS13 accepted no TLS")
	}
}

// The gateway configuration loads as fluxgate reads it, with gateway.tls
// naming the generated files under -tls and no TLS without.
func TestGatewayConfigTLS(t *testing.T) {
	dir := t.TempDir()
	f, err := benchcert.Write(dir, "gwbench", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, tf := range []*benchcert.Files{nil, f} {
		path := filepath.Join(dir, "gw.yaml")
		body := gatewayConfig("9001", "9004", dir, "127.0.0.1:9002", "net", "round-robin", "{address: 127.0.0.1:9003}", tf)
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, _, err := fluxgate.Load(path, nil)
		if err != nil {
			t.Fatalf("tls %v: %v\n%s", tf != nil, err, body)
		}
		gw := cfg.Gateway
		if gw.Listen != "127.0.0.1:9002" || gw.Engine != "net" || len(gw.Upstreams) != 1 || gw.Upstreams[0].Algorithm != "round-robin" {
			t.Errorf("tls %v: gateway %+v", tf != nil, gw)
		}
		switch {
		case tf == nil && gw.TLS.Enabled():
			t.Errorf("TLS without -tls: %+v", gw.TLS)
		case tf != nil && (gw.TLS.CertFile != f.Cert || gw.TLS.KeyFile != f.Key):
			t.Errorf("gateway.tls = %+v, want %s and %s", gw.TLS, f.Cert, f.Key)
		}
	}
}

// nginx's configuration listens with ssl and the generated files under
// -tls only, and nginx itself accepts it (nginx -t reads the files).
func TestNginxConfigTLS(t *testing.T) {
	dir := t.TempDir()
	f, err := benchcert.Write(dir, "gwbench", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	plain := nginxConfig(dir, "127.0.0.1:9003", "127.0.0.1:9004", nil, false)
	if !strings.Contains(plain, "listen 127.0.0.1:9004;") || strings.Contains(plain, "ssl") {
		t.Errorf("plain configuration:\n%s", plain)
	}
	withTLS := nginxConfig(dir, "127.0.0.1:9003", "127.0.0.1:9004", f, false)
	for _, want := range []string{"listen 127.0.0.1:9004 ssl;", "ssl_certificate " + f.Cert + ";", "ssl_certificate_key " + f.Key + ";", "TLSv1.3"} {
		if !strings.Contains(withTLS, want) {
			t.Errorf("no %q in:\n%s", want, withTLS)
		}
	}
	nginxAccepts(t, dir, withTLS)
}

// missing skips the test for a missing binary, or fails it under CI=true
// (CI installs it).
func missing(t *testing.T, msg string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// Under -tls, gateway-net runs beside the gateway and proxy-only and
// gateway-fast do not; plain runs are as before.
func TestContendersUnderTLS(t *testing.T) {
	defer func(e string, f *benchcert.Files) { *engine, srvTLS = e, f }(*engine, srvTLS)
	for _, tc := range []struct {
		engine string
		tls    bool
		want   string
	}{
		{"lean", false, "direct gateway nginx proxy-only gateway-fast"},
		{"fast", false, "direct gateway nginx proxy-only"},
		{"lean", true, "direct gateway nginx gateway-net"},
		{"fast", true, "direct gateway nginx gateway-net"},
		{"net", true, "direct gateway nginx"},
	} {
		*engine, srvTLS = tc.engine, nil
		if tc.tls {
			srvTLS = &benchcert.Files{}
		}
		if got := strings.Join(contenders(), " "); got != tc.want {
			t.Errorf("-engine %s, tls %v: contenders %q, want %q", tc.engine, tc.tls, got, tc.want)
		}
	}
}

// nginxAccepts writes conf as dir/nginx.conf, checks it with nginx -t and
// returns the nginx binary and the arguments that run it.
func nginxAccepts(t *testing.T, dir, conf string) (bin string, args []string) {
	t.Helper()
	bin, err := exec.LookPath("nginx") // Debian's is in /usr/sbin, off a user's PATH
	if err != nil {
		bin = "/usr/sbin/nginx"
		if _, err := os.Stat(bin); err != nil {
			missing(t, "nginx is not installed (Debian package nginx-light; `make deps` installs it)")
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	args = []string{"-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", path}
	if out, err := exec.Command(bin, append([]string{"-t"}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
	return bin, args
}
