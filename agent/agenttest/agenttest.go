// Package agenttest starts real agents for tests in other packages: bound
// to 127.0.0.1 on free ports, with their policies in a temporary
// directory, stopped when the test ends.
package agenttest

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fluxgate/fluxgate/agent"
)

// Config is the default configuration with every listener on a free
// loopback port and policies.dir a new temporary directory holding the
// given policy documents (one file each).
func Config(t testing.TB, policyFiles ...string) agent.Config {
	t.Helper()
	dir := t.TempDir()
	for i, p := range policyFiles {
		if err := os.WriteFile(filepath.Join(dir, "policy-"+string(rune('a'+i))+".yaml"), []byte(p), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := agent.DefaultConfig()
	cfg.Server.Host = "127.0.0.1"
	cfg.Server.HTTPPort, cfg.Server.GRPCPort, cfg.Metrics.Port = 0, 0, 0
	cfg.OTLP.GRPCPort, cfg.OTLP.HTTPPort = 0, 0
	cfg.Policies.Dir = dir
	return cfg
}

// Start builds and starts an agent with cfg and stops it at the end of
// the test.
func Start(t testing.TB, cfg agent.Config) *agent.Agent {
	t.Helper()
	a, err := agent.New(agent.Options{Config: cfg, ShutdownTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := a.Stop(context.Background()); err != nil {
			t.Errorf("stop agent: %v", err)
		}
	})
	return a
}

// URL is the base URL of an agent's HTTP API.
func URL(a *agent.Agent) string { return "http://" + a.Addr(agent.ListenerHTTP).String() }
