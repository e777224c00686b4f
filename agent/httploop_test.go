//go:build linux

package agent

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fluxgate/fluxgate/certs/certstest"
)

// With server.http_engine loop, /v1/check/http is answered on the loops
// through the agent's own handler (the check token included), and a
// connection that asks something else moves to net/http with it.
//
// Over TLS the same (the handshake on a goroutine, then the loops), the
// client presenting the certificate the agent requires.
func TestHTTPLoopsServeChecksAndHandOver(t *testing.T) {
	e := newTLSEnv(t)
	for _, engine := range []string{"loop", "auto", "net", "loop-tls", "auto-tls", "net-tls"} {
		t.Run(engine, func(t *testing.T) {
			cfg := testConfig(t.TempDir())
			engine, overTLS := strings.CutSuffix(engine, "-tls")
			if overTLS {
				cfg = e.config(t, ClientAuthRequire)
			}
			cfg.Server.HTTPEngine = engine
			cfg.Check.Token = testCheckToken
			a := startAgent(t, cfg)
			if loops := a.httpLoops != nil; loops != (engine != "net") {
				t.Fatalf("engine %s: loops running %v", engine, loops)
			}
			var c net.Conn
			var err error
			if overTLS {
				c, err = tls.Dial("tcp", a.Addr(ListenerHTTP).String(), e.client(e.good))
			} else {
				c, err = net.Dial("tcp", a.Addr(ListenerHTTP).String())
			}
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

// Over TLS the HTTP loops refuse a client without the certificate the
// agent requires (at the handshake, on a goroutine) and a plain-text one;
// the JSON check (the Python SDK's) is answered over HTTP/1.1 on the
// loops and, to a client that agrees on h2 by ALPN, by net/http's HTTP/2.
func TestHTTPLoopsOverTLS(t *testing.T) {
	e := newTLSEnv(t)
	cfg := e.config(t, ClientAuthRequire)
	cfg.Server.HTTPEngine = "loop"
	a := startAgent(t, cfg)
	if a.httpLoops == nil {
		t.Fatal("http_engine loop with TLS: no loops")
	}
	api := a.Addr(ListenerHTTP).String()
	for name, p := range map[string]*certstest.Pair{"no certificate": nil, "another CA's certificate": e.stranger} {
		if _, _, err := httpsDo("GET", "https://"+api+"/v1/check/http", "", e.client(p), false); err == nil {
			t.Errorf("%s: answered", name)
		}
	}
	if resp, err := http.Get("http://" + api + "/v1/check/http"); err == nil {
		_ = resp.Body.Close()
		t.Errorf("plain text: answered %s", resp.Status)
	}
	for _, h2 := range []bool{false, true} {
		code, proto, err := httpsDo("POST", "https://"+api+"/v1/check", `{"control_point":"api"}`, e.client(e.good), h2)
		if want := map[bool]int{false: 1, true: 2}[h2]; err != nil || code != http.StatusOK || proto != want {
			t.Errorf("check over TLS (h2 %v): %d HTTP/%d, %v; want 200 HTTP/%d", h2, code, proto, err, want)
		}
	}
}
