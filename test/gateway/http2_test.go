package gateway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/fluxgate/fluxgate/gateway"
)

// protoBackend answers with the HTTP version the request arrived over,
// and the size of its body when it has one.
func protoBackend(t *testing.T, tlsOn, h2 bool) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "%d", r.ProtoMajor)
		if n > 0 {
			fmt.Fprintf(w, " %d bytes", n)
		}
	}))
	p := new(http.Protocols)
	p.SetHTTP1(true)
	switch {
	case h2 && tlsOn:
		p.SetHTTP2(true)
	case h2:
		p.SetUnencryptedHTTP2(true)
	}
	srv.Config.Protocols = p
	if tlsOn {
		srv.EnableHTTP2 = h2
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return srv
}

// get returns the protocol major version the gateway's client side used
// and the body (the upstream's protocol major version).
func protoGet(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d: %s", url, resp.StatusCode, b)
	}
	return resp.ProtoMajor, string(b)
}

func TestH2CClients(t *testing.T) {
	b := newBackend(t, "b1")
	cfg := oneRoute(gateway.UpstreamConfig{Name: "u", Targets: targets(b)})
	cfg.H2C = true
	s := startStack(t, cfg, nil, gateway.ServiceOptions{})
	url := "http://" + s.svc.Addr().String() + "/x"
	for _, tc := range []struct {
		name string
		set  func(*http.Protocols)
		want int
	}{
		{"prior knowledge", func(p *http.Protocols) { p.SetUnencryptedHTTP2(true) }, 2},
		{"HTTP/1.1 on the same listener", func(p *http.Protocols) { p.SetHTTP1(true) }, 1},
	} {
		p := new(http.Protocols)
		tc.set(p)
		tr := &http.Transport{Protocols: p}
		got, body := protoGet(t, &http.Client{Transport: tr, Timeout: 5 * time.Second}, url)
		tr.CloseIdleConnections()
		if got != tc.want || body != "b1" {
			t.Errorf("%s: answered over HTTP/%d by %q, want HTTP/%d by b1", tc.name, got, body, tc.want)
		}
	}
}

func TestHTTP2Upstreams(t *testing.T) {
	for _, tc := range []struct {
		name      string
		tls, h2   bool
		wantMajor string
	}{
		{"h2c prior knowledge", false, true, "2"},
		{"h2 over TLS", true, true, "2"},
		{"HTTP/1.1 over TLS", true, false, "1"},
		{"HTTP/1.1", false, false, "1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := protoBackend(t, tc.tls, tc.h2)
			var tlsCfg *tls.Config
			if tc.tls {
				pool := x509.NewCertPool()
				pool.AddCert(up.Certificate())
				tlsCfg = &tls.Config{RootCAs: pool}
			}
			addr := strings.TrimPrefix(strings.TrimPrefix(up.URL, "https://"), "http://")
			cfg := oneRoute(gateway.UpstreamConfig{Name: "u", HTTP2: tc.h2, TLS: tc.tls, Targets: []gateway.TargetConfig{{Address: addr}},
				HealthCheck: &gateway.HealthCheckConfig{Interval: 50 * time.Millisecond, Timeout: 40 * time.Millisecond}})
			g, err := gateway.New(gateway.Options{Config: cfg, UpstreamTLSConfig: tlsCfg, ResponseHeaderTimeout: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { _ = g.Run(ctx); close(done) }()
			front := httptest.NewServer(g)
			t.Cleanup(func() { cancel(); <-done; front.Close(); g.Close() })
			c := newClient(t)
			for i := range 3 {
				_, body := protoGet(t, c, front.URL+"/x")
				if body != tc.wantMajor {
					t.Fatalf("request %d: upstream saw HTTP/%s, want HTTP/%s", i, body, tc.wantMajor)
				}
			}
			// Health checks reach the target over its scheme.
			time.Sleep(200 * time.Millisecond)
			if st := g.Status(time.Now())[0].Targets[0]; !st.Healthy {
				t.Errorf("target unhealthy by active checks: %+v", st)
			}
		})
	}
}

// On the lean engine, a route to an HTTP/2 group goes through the fast
// engine to the net/http engine in process, request bodies included.
func TestFastEngineHandsHTTP2RoutesOver(t *testing.T) {
	up := protoBackend(t, false, true)
	cfg := oneRoute(gateway.UpstreamConfig{Name: "u", HTTP2: true, Targets: []gateway.TargetConfig{{Address: strings.TrimPrefix(up.URL, "http://")}}})
	cfg.Engine = gateway.EngineLean
	s := startStack(t, cfg, nil, gateway.ServiceOptions{})
	if s.svc.Engine() != gateway.EngineLean {
		t.Fatalf("engine %q, want lean", s.svc.Engine())
	}
	if _, body := protoGet(t, s.hc, s.url+"/x"); body != "2" {
		t.Errorf("GET reached the upstream as %q, want HTTP/2", body)
	}
	const size = 3 << 20 // past fasthttp's buffered body: it streams in
	resp, err := s.hc.Post(s.url+"/upload", "application/octet-stream", strings.NewReader(strings.Repeat("x", size)))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := fmt.Sprintf("2 %d bytes", size); resp.StatusCode != 200 || string(b) != want {
		t.Errorf("POST: %d %q, want 200 %q", resp.StatusCode, b, want)
	}
}
