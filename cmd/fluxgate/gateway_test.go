package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// freeAddr returns a loopback address nothing listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// fluxgate gateway runs the agent, the gateway and the one watcher of
// its config file together: it proxies, applies a change of the gateway
// section live, and stops cleanly.
func TestGatewayCommandProxies(t *testing.T) {
	upstream := func(name string) *httptest.Server {
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "hello from "+name+" "+r.URL.Path)
		}))
		t.Cleanup(up.Close)
		return up
	}
	one, two := upstream("one"), upstream("two")
	listen := freeAddr(t)
	dir := t.TempDir()
	cfg := `server: {host: 127.0.0.1, http_port: 0, grpc_port: 0}
metrics: {enabled: false}
otlp: {grpc_port: 0, http_port: 0}
policies: {dir: %s}
log: {level: warn}
gateway:
  listen: %s
  upstreams:
    - name: app
      algorithm: round-robin
      targets: [{address: %s}]
  routes:
    - id: app
      match: {path_prefix: /}
      upstream: app
`
	path := filepath.Join(dir, "fluxgate.yaml")
	write := func(up *httptest.Server) {
		t.Helper()
		if err := os.WriteFile(path, []byte(fmt.Sprintf(cfg, dir, listen, strings.TrimPrefix(up.URL, "http://"))), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(one)
	old := configPath
	configPath = path
	defer func() { configPath = old }()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := newGatewayCmd()
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	errc := make(chan error, 1)
	go func() { errc <- cmd.ExecuteContext(ctx) }()

	waitBody := func(want string) {
		t.Helper()
		var body string
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			resp, err := http.Get("http://" + listen + "/x")
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if body = string(b); body == want {
					return
				}
			}
			select {
			case err := <-errc:
				t.Fatalf("gateway command exited: %v", err)
			case <-time.After(20 * time.Millisecond):
			}
		}
		t.Fatalf("body %q through the gateway, want %q", body, want)
	}
	waitBody("hello from one /x")
	write(two) // the watcher hands the gateway its new section
	waitBody("hello from two /x")
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("gateway command returned %v after shutdown", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("gateway command did not stop")
	}
}

func TestGatewayCommandNeedsRoutes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fluxgate.yaml")
	if err := os.WriteFile(path, []byte("log: {level: warn}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := configPath
	configPath = path
	defer func() { configPath = old }()
	cmd := newGatewayCmd()
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	if err := cmd.ExecuteContext(context.Background()); err == nil || !strings.Contains(err.Error(), "gateway.routes") {
		t.Fatalf("err = %v, want one naming gateway.routes", err)
	}
}

// A --config that names no file says so, rather than that the file has
// no routes.
func TestGatewayCommandMissingConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fluxgat.yaml")
	old := configPath
	configPath = path
	defer func() { configPath = old }()
	cmd := newGatewayCmd()
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	if err := cmd.ExecuteContext(context.Background()); err == nil || !strings.Contains(err.Error(), "config file "+path+" does not exist") {
		t.Fatalf("err = %v, want one saying %s does not exist", err, path)
	}
}
