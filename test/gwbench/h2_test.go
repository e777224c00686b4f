package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fluxgate/fluxgate/internal/benchcert"
)

// parseH2Load reads h2load 1.52's real output (testdata: runs against
// nginx 1.22 and a Go h2c server on loopback), and refuses a run that
// negotiated another protocol or lost requests.
func TestParseH2Load(t *testing.T) {
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	h2 := read("h2load-h2.txt")
	for _, tc := range []struct {
		name, proto    string
		out            []byte
		rps, succeeded float64
		wantErr        error
	}{
		{"h2 over TLS", "h2", h2, 34686, 34686, nil},
		{"h2c", "h2c", read("h2load-h2c.txt"), 17657, 17657, nil},
		{"h2c where h2 was asked", "h2", read("h2load-h2c.txt"), 0, 0, errNotH2},
		{"HTTP/1.1 by ALPN", "h2", read("h2load-http11.txt"), 0, 0, errNotH2},
		// nginx's default keepalive_requests closed every connection
		// after 1000 requests: the rest failed.
		{"GOAWAY after 1000 requests", "h2", read("h2load-goaway.txt"), 0, 0, errH2Failed},
		{"5xx answers", "h2", []byte(strings.Replace(string(h2), "0 4xx, 0 5xx", "0 4xx, 7 5xx", 1)), 0, 0, errH2Failed},
		{"no connection", "h2", []byte("starting benchmark...\nclient could not connect to host\n"), 0, 0, errNotH2},
	} {
		got, err := parseH2Load(tc.out, tc.proto)
		if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
			t.Errorf("%s: error %v, want %v", tc.name, err, tc.wantErr)
			continue
		}
		if err == nil && (got.rps != tc.rps || got.succeeded != tc.succeeded || got.proto != tc.proto) {
			t.Errorf("%s: %+v, want %v req/s, %v succeeded over %s", tc.name, got, tc.rps, tc.succeeded, tc.proto)
		}
	}
}

// Under -h2, nginx's listener says `ssl http2` and lifts
// keepalive_requests; nginx -t accepts it, and nginx started with it
// negotiates h2 and TLS 1.3 with gwbench's client. Without h2 there is no
// http2 in it.
func TestNginxConfigH2(t *testing.T) {
	dir := t.TempDir()
	f, err := benchcert.Write(dir, "gwbench", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if c := nginxConfig(dir, "127.0.0.1:9003", "127.0.0.1:9004", f, false); strings.Contains(c, "http2") || strings.Contains(c, "keepalive_requests") {
		t.Errorf("-tls configuration offers http2:\n%s", c)
	}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") }))
	defer up.Close()
	listen := freeAddr()
	conf := nginxConfig(dir, strings.TrimPrefix(up.URL, "http://"), listen, f, true)
	for _, want := range []string{"listen " + listen + " ssl http2;", "keepalive_requests 1000000000;", "TLSv1.3"} {
		if !strings.Contains(conf, want) {
			t.Errorf("no %q in:\n%s", want, conf)
		}
	}
	bin, args := nginxAccepts(t, dir, conf)
	ng := exec.Command(bin, args...)
	if err := ng.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// SIGTERM: the master stops its workers and then itself. A
		// killed master would leave its workers running, listening.
		_ = ng.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = ng.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = ng.Process.Kill()
			<-done
		}
	})
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: f.ClientConfig(), ForceAttemptHTTP2: true}}
	defer client.CloseIdleConnections()
	var resp *http.Response
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if resp, err = client.Get("https://" + listen + "/"); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close() // only the status and the protocol matter
	if resp.StatusCode != http.StatusOK {
		t.Errorf("status %d through nginx", resp.StatusCode)
	}
	if err := checkH2("https://"+listen+"/", resp.TLS); err != nil {
		t.Error(err)
	}
}

// h2Workers opens one HTTP/2 connection a worker, over TLS with ALPN h2
// and over h2c, answers through each, and tells the slow backend; a TLS
// server that offers only HTTP/1.1 is refused.
func TestH2Workers(t *testing.T) {
	defer func(f *benchcert.Files) { srvTLS = f }(srvTLS)
	var mu sync.Mutex
	seen := map[string]int{} // remote address → HTTP/2 requests
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 {
			mu.Lock()
			seen[r.RemoteAddr]++
			mu.Unlock()
		}
		w.Header().Set("X-Backend", "slow")
		_, _ = io.WriteString(w, "ok\n")
	})
	tlsSrv := httptest.NewUnstartedServer(h)
	tlsSrv.EnableHTTP2 = true
	tlsSrv.StartTLS()
	defer tlsSrv.Close()
	h2c := httptest.NewUnstartedServer(h)
	h2c.Config.Protocols = new(http.Protocols)
	h2c.Config.Protocols.SetUnencryptedHTTP2(true)
	h2c.Start()
	defer h2c.Close()
	h1 := httptest.NewUnstartedServer(h)
	h1.TLS = &tls.Config{NextProtos: []string{"http/1.1"}}
	h1.StartTLS()
	defer h1.Close()
	roots := x509.NewCertPool()
	roots.AddCert(tlsSrv.Certificate())
	roots.AddCert(h1.Certificate())
	srvTLS = &benchcert.Files{Roots: roots}

	for _, url := range []string{tlsSrv.URL, h2c.URL} {
		clear(seen)
		send, closeAll, err := h2Workers(url+"/", 3, "slow")
		if err != nil {
			t.Fatalf("%s: %v", url, err)
		}
		for i, s := range send {
			if ok, slow := s(); !ok || !slow {
				t.Errorf("%s: worker %d: ok %v slow %v", url, i, ok, slow)
			}
		}
		closeAll()
		mu.Lock()
		if len(seen) != 3 {
			t.Errorf("%s: HTTP/2 requests by connection %v, want 3 connections", url, seen)
		}
		for addr, n := range seen {
			if n != 2 { // the warm-up and one
				t.Errorf("%s: %d requests on %s, want 2", url, n, addr)
			}
		}
		mu.Unlock()
	}
	if _, _, err := h2Workers(h1.URL+"/", 2, ""); !errors.Is(err, errNotH2) {
		t.Errorf("HTTP/1.1-only server: %v, want %v", err, errNotH2)
	}
}
