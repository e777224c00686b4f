package gateway

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fluxgate/fluxgate"
	"github.com/fluxgate/fluxgate/agent"
	"github.com/fluxgate/fluxgate/gateway"
)

const adminToken = "test-token"

// stack is an agent with the gateway Service next to it, as `fluxgate
// gateway` runs them, on loopback ports.
type stack struct {
	*harness
	agent *agent.Agent
	svc   *gateway.Service
	api   string // http://host:port of the agent's HTTP API
	dir   string // policy directory
}

// startStack starts an agent whose policy directory holds files and a
// gateway Service for gw, with opts' other options.
func startStack(t testing.TB, gw gateway.Config, files map[string]string, opts gateway.ServiceOptions) *stack {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := agent.DefaultConfig()
	cfg.Server = agent.ServerConfig{Host: "127.0.0.1"}
	cfg.Metrics.Enabled = false
	cfg.OTLP = agent.OTLPConfig{}
	cfg.Policies.Dir = dir
	cfg.Admin.Token = adminToken
	cfg.Log.Level = "debug"
	gw.Listen = "127.0.0.1:0"
	opts.Config = gw
	logger := testLogger(t)
	a, err := agent.New(agent.Options{Config: cfg, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	opts.Logger = logger
	svc := gateway.NewServiceWithOptions(fluxgate.GatewayHost(a), opts)
	ctx := context.Background()
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(ctx); err != nil {
		_ = a.Stop(ctx)
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := svc.Stop(ctx); err != nil {
			t.Errorf("gateway stop: %v", err)
		}
		if err := a.Stop(ctx); err != nil {
			t.Errorf("agent stop: %v", err)
		}
	})
	h := &harness{gw: svc.Gateway(), url: "http://" + svc.Addr().String(), reg: a.Registry(), hc: newClient(t)}
	return &stack{harness: h, agent: a, svc: svc, api: "http://" + a.Addr(agent.ListenerHTTP).String(), dir: dir}
}

// put sends an authenticated PUT to the agent's API and returns the
// status and body.
func (s *stack) put(t *testing.T, path, contentType, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, s.api+path, bytes.NewBufferString(body))
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Content-Type", contentType)
	resp, err := s.hc.Do(req)
	if err != nil {
		t.Fatalf("PUT %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// testLogger logs to t, so failures show what the gateway saw.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// newClient is an HTTP client whose idle connections close with the test.
func newClient(t testing.TB) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}
