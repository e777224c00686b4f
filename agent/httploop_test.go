//go:build linux

package agent

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// With server.http_engine loop, /v1/check/http is answered on the loops
// through the agent's own handler (the check token included), and a
// connection that asks something else moves to net/http with it.
func TestHTTPLoopsServeChecksAndHandOver(t *testing.T) {
	for _, engine := range []string{"loop", "auto", "net"} {
		t.Run(engine, func(t *testing.T) {
			cfg := testConfig(t.TempDir())
			cfg.Server.HTTPEngine = engine
			cfg.Check.Token = testCheckToken
			a := startAgent(t, cfg)
			if loops := a.httpLoops != nil; loops != (engine != "net") {
				t.Fatalf("engine %s: loops running %v", engine, loops)
			}
			c, err := net.Dial("tcp", a.Addr(ListenerHTTP).String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			br := bufio.NewReader(c)
			ask := func(req string) *http.Response {
				t.Helper()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := fmt.Fprint(c, req); err != nil {
					t.Fatal(err)
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("%q: %v", req, err)
				}
				_ = resp.Body.Close()
				return resp
			}
			check := "GET /v1/check/http HTTP/1.1\r\nHost: agent\r\nX-Original-URI: /api/items\r\n"
			if r := ask(check + "\r\n"); r.StatusCode != http.StatusUnauthorized {
				t.Errorf("check without the token: %d", r.StatusCode)
			}
			withToken := check + "Authorization: Bearer " + testCheckToken + "\r\n\r\n"
			if r := ask(withToken); r.StatusCode != http.StatusOK || r.Header.Get("X-Fluxgate-Decision") != "accepted" {
				t.Errorf("check with the token: %d %v", r.StatusCode, r.Header)
			}
			checkJSON := `{"control_point":"ingress","labels":{"user":"u1"}}`
			if r := ask(fmt.Sprintf("POST /v1/check HTTP/1.1\r\nHost: agent\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", testCheckToken, len(checkJSON), checkJSON)); r.StatusCode != http.StatusOK {
				t.Errorf("JSON check: %d", r.StatusCode)
			}
			end := `{"flow_id":"42","failed":false}`
			if r := ask(fmt.Sprintf("POST /v1/flow/end HTTP/1.1\r\nHost: agent\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", testCheckToken, len(end), end)); r.StatusCode != http.StatusOK {
				t.Errorf("flow end: %d", r.StatusCode)
			}
			if r := ask("GET /readyz HTTP/1.1\r\nHost: agent\r\n\r\n"); r.StatusCode != http.StatusOK {
				t.Errorf("/readyz on the same connection: %d", r.StatusCode)
			}
			if r := ask(withToken); r.StatusCode != http.StatusOK || r.Header.Get("X-Fluxgate-Decision") != "accepted" {
				t.Errorf("check after the hand-over: %d %v", r.StatusCode, r.Header)
			}
		})
	}
}

// server.http_engine loop with TLS on the HTTP port is refused at start,
// in the operator's words.
func TestHTTPEngineLoopNeedsPlainPort(t *testing.T) {
	e := newTLSEnv(t)
	cfg := e.config(t, "")
	cfg.Server.HTTPEngine = "loop"
	a, err := New(Options{Config: cfg, ShutdownTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = a.Start(context.Background())
	if err == nil {
		_ = a.Stop(context.Background())
		t.Fatal("started with http_engine loop and TLS")
	}
	if !strings.Contains(err.Error(), "server.http_engine loop serves plain HTTP only") {
		t.Errorf("error: %v", err)
	}
	// auto with TLS: net/http serves the port.
	cfg.Server.HTTPEngine = "auto"
	if a := startAgent(t, cfg); a.httpLoops != nil {
		t.Error("auto with TLS runs the loops")
	}
}
