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

func TestGatewayCommandProxies(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello from upstream "+r.URL.Path)
	}))
	defer up.Close()
	listen := freeAddr(t)
	dir := t.TempDir()
	cfg := fmt.Sprintf(`server: {host: 127.0.0.1, http_port: 0, grpc_port: 0}
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
`, dir, listen, strings.TrimPrefix(up.URL, "http://"))
	path := filepath.Join(dir, "fluxgate.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
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

	var body string
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + listen + "/x")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = string(b)
			break
		}
		select {
		case err := <-errc:
			t.Fatalf("gateway command exited: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	if body != "hello from upstream /x" {
		t.Fatalf("body %q through the gateway", body)
	}
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
