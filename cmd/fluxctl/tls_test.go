package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fluxgate/fluxgate/agent"
	"github.com/fluxgate/fluxgate/certs/certstest"
)

// fluxctl talks to an https:// agent that requires client certificates
// with --ca-file, --cert-file and --key-file, and fails without them.
func TestMutualTLSAgent(t *testing.T) {
	dir := t.TempDir()
	ca := certstest.NewCA(t, "agent-ca")
	cfg := agent.DefaultConfig()
	cfg.Server.Host = "127.0.0.1"
	cfg.Server.HTTPPort, cfg.Server.GRPCPort = 0, 0
	cfg.Metrics.Enabled = false
	cfg.OTLP.GRPCPort, cfg.OTLP.HTTPPort = 0, 0
	cfg.Policies.Dir = t.TempDir()
	cfg.Admin.Token = testToken
	cfg.TLS.CertFile, cfg.TLS.KeyFile = ca.Server(t, "agent.test").Write(t, filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
	cfg.TLS.ClientCAFile = ca.WriteCert(t, filepath.Join(dir, "ca.crt"))
	a, err := agent.New(agent.Options{Config: cfg, ShutdownTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Stop(context.Background()) })
	addr := a.Addr(agent.ListenerHTTP).String()
	certFile, keyFile := ca.Client(t, "operator").Write(t, filepath.Join(dir, "op.crt"), filepath.Join(dir, "op.key"))
	strangerCert, strangerKey := certstest.NewCA(t, "other").Client(t, "stranger").Write(t, filepath.Join(dir, "x.crt"), filepath.Join(dir, "x.key"))

	base := []string{"--agent", "https://" + addr, "--token", testToken, "--ca-file", cfg.TLS.ClientCAFile}
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr string // empty: success
	}{
		{"client certificate", append(base, "--cert-file", certFile, "--key-file", keyFile), ""},
		{"no client certificate", base, "cannot reach the agent"},
		{"certificate of another CA", append(base, "--cert-file", strangerCert, "--key-file", strangerKey), "cannot reach the agent"},
		{"agent not trusted", []string{"--agent", "https://" + addr, "--token", testToken, "--cert-file", certFile, "--key-file", keyFile}, "certificate signed by unknown authority"},
		{"plain-text URL", []string{"--agent", "http://" + addr, "--ca-file", cfg.TLS.ClientCAFile}, "need an https:// --agent URL"},
		{"cert without key", append(base, "--cert-file", certFile), "--cert-file and --key-file go together"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := run(t, append(tc.args, "get", "policies")...)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("get policies: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("get policies: %v, want an error with %q", err, tc.wantErr)
			}
		})
	}
}
