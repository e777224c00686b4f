package nginx

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fluxgate/fluxgate/agent"
	"github.com/fluxgate/fluxgate/certs/certstest"
	"github.com/fluxgate/fluxgate/internal/policytest"
)

// The example's locations that talk to the agent, as fluxgate.conf has
// them.
const (
	exampleCheckPass   = "proxy_pass http://fluxgate_agent/v1/check/http;"
	exampleFlowEndPass = "proxy_pass http://fluxgate_agent/v1/flow/end;"
)

// tlsPass is pass over https with the directives examples/nginx/README.md
// gives for an agent with TLS, and a client certificate when cert is set.
func tlsPass(pass, caFile, cert, key string) string {
	s := strings.Replace(pass, "http://", "https://", 1) + fmt.Sprintf(`
        proxy_ssl_trusted_certificate %s;
        proxy_ssl_verify on;
        proxy_ssl_name agent.fluxgate.test;
        proxy_ssl_session_reuse on;`, caFile)
	if cert != "" {
		s += fmt.Sprintf(`
        proxy_ssl_certificate %s;
        proxy_ssl_certificate_key %s;`, cert, key)
	}
	return s
}

// TestNginxMutualTLSAgent runs the example against an agent that
// requires client certificates: with proxy_ssl_certificate both the check
// and the flow end reach it (the one-slot limit is freed after every
// request, which only the flow end does); without it the agent refuses
// the handshake and nginx fails open, saying so.
func TestNginxMutualTLSAgent(t *testing.T) {
	dir := t.TempDir()
	ca := certstest.NewCA(t, "fluxgate-test-ca")
	certFile, keyFile := ca.Server(t, "agent.fluxgate.test").Write(t, filepath.Join(dir, "agent.crt"), filepath.Join(dir, "agent.key"))
	caFile := ca.WriteCert(t, filepath.Join(dir, "ca.crt"))
	nginxCert, nginxKey := ca.Client(t, "nginx").Write(t, filepath.Join(dir, "nginx.crt"), filepath.Join(dir, "nginx.key"))
	agentAddr := startAgentConfig(t, []byte(policytest.OneSlot("ingress")), func(c *agent.Config) {
		c.TLS.CertFile, c.TLS.KeyFile, c.TLS.ClientCAFile = certFile, keyFile, caFile
	})
	app := httptest.NewServer(&blockingApp{release: make(chan struct{})})
	t.Cleanup(app.Close)
	upstream := strings.TrimPrefix(app.URL, "http://")

	nginx := startNginx(t, agentAddr, upstream,
		[2]string{exampleCheckPass, tlsPass(exampleCheckPass, caFile, nginxCert, nginxKey)},
		[2]string{exampleFlowEndPass, tlsPass(exampleFlowEndPass, caFile, nginxCert, nginxKey)})
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
	t.Cleanup(client.CloseIdleConnections)
	waitFree(t, client, "http://"+nginx+"/ok")
	for i := range 10 {
		resp, err := client.Get("http://" + nginx + "/ok")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("X-FluxGate-Decision") != "accepted" || resp.Header.Get("X-FluxGate-Fail-Open") != "" {
			t.Fatalf("request %d over mutual TLS = %d, decision %q, fail open %q; want 200 accepted by the agent (the previous flow's end freed the slot)",
				i, resp.StatusCode, resp.Header.Get("X-FluxGate-Decision"), resp.Header.Get("X-FluxGate-Fail-Open"))
		}
	}
	if log := errorLog(t, nginx); strings.Contains(log, "[error]") {
		t.Errorf("nginx logged errors:\n%s", log)
	}

	noCert := startNginx(t, agentAddr, upstream,
		[2]string{exampleCheckPass, tlsPass(exampleCheckPass, caFile, "", "")},
		[2]string{exampleFlowEndPass, tlsPass(exampleFlowEndPass, caFile, "", "")})
	r := get(t, "http://"+noCert+"/ok", nil)
	if r.code != 200 || r.header.Get("X-FluxGate-Decision") != "" || !strings.Contains(r.header.Get("X-FluxGate-Fail-Open"), "agent unreachable") {
		t.Fatalf("nginx without a client certificate = %d, decision %q, fail open %q; want the agent to refuse it (fail open, agent unreachable)",
			r.code, r.header.Get("X-FluxGate-Decision"), r.header.Get("X-FluxGate-Fail-Open"))
	}
}
