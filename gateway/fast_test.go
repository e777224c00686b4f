package gateway

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/fluxgate/fluxgate/agent"
)

// serveFast serves g on the fast engine on a loopback port until the test
// ends.
func serveFast(t *testing.T, g *Gateway) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fs := g.NewFastServer(nil)
	done := make(chan struct{})
	go func() { _ = fs.Serve(ln); close(done) }()
	t.Cleanup(func() { _ = fs.Shutdown(); <-done })
	return "http://" + ln.Addr().String()
}

func oneUpstream(addr string) agent.GatewayConfig {
	return agent.GatewayConfig{
		Upstreams: []agent.UpstreamConfig{{Name: "u", Targets: []agent.TargetConfig{{Address: addr}}}},
		Routes:    []agent.RouteConfig{{ID: "r", Upstream: "u"}},
	}
}

// A target that sends nothing is given up after ResponseHeaderTimeout
// with 504, on both engines.
func TestResponseHeaderTimeout(t *testing.T) {
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer up.Close()
	defer close(release)
	g, err := New(Options{Config: oneUpstream(strings.TrimPrefix(up.URL, "http://")), ResponseHeaderTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	netSrv := httptest.NewServer(g)
	defer netSrv.Close()
	for engine, url := range map[string]string{"net": netSrv.URL, "fast": serveFast(t, g)} {
		resp, err := http.Get(url + "/")
		if err != nil {
			t.Fatalf("%s: %v", engine, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusGatewayTimeout || resp.Header.Get("X-FluxGate-Reason") != "upstream_timeout" {
			t.Errorf("%s: status %d reason %q, want 504 upstream_timeout", engine, resp.StatusCode, resp.Header.Get("X-FluxGate-Reason"))
		}
	}
}
