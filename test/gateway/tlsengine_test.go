package gateway

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/fluxgate/fluxgate/gateway"
	"github.com/fluxgate/fluxgate/metricnames"
)

// echoProto is a target that answers with the X-Forwarded-Proto and
// X-Forwarded-For it was sent and the protocol it was spoken to in.
func echoProto(t *testing.T, h2c bool) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s HTTP/%d", r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Forwarded-For"), r.ProtoMajor)
	}))
	if h2c {
		p := new(http.Protocols)
		p.SetUnencryptedHTTP2(true)
		srv.Config.Protocols = p
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// tlsGet sends one GET over a new TLS connection, as HTTP/2 when h2, and
// returns the protocol the gateway answered in and the body.
func tlsGet(t *testing.T, url string, h2 bool) (proto, body string) {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: h2} // a throwaway self-signed pair
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get(url)
	if err != nil {
		t.Fatalf("GET %s (h2 %v): %v", url, h2, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s (h2 %v): status %d: %s", url, h2, resp.StatusCode, b)
	}
	return resp.Proto, string(b)
}

// tlsGet10 sends an HTTP/1.0 request over TLS by hand (no Go client
// speaks it) and returns the answer's status line and body.
func tlsGet10(t *testing.T, addr string) (status, body string) {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "GET /x HTTP/1.0\r\nHost: gw.test\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.Status, string(b)
}

// On a TLS listener the loop engine (auto's choice on Linux) and the lean
// engine serve HTTP/1.1 themselves, hand HTTP/2 to gateway.http2.server
// (its own, or net/http's) and what they do not serve (here HTTP/1.0, and
// a route to an HTTP/2 group) on to the fast engine (the loop through
// lean); every path tells the target the client came over https.
// gateway.engine fast or net keep TLS on the net/http engine, as before.
func TestTLSListenerEngines(t *testing.T) {
	plain := echoProto(t, false)
	h2c := echoProto(t, true)
	certFile, keyFile := writePair(t, t.TempDir(), "gw.test")
	for _, tc := range []struct{ engine, http2, want string }{
		{gateway.EngineAuto, "", "loop"}, // on Linux; lean elsewhere
		{gateway.EngineLean, gateway.HTTP2ServerLean, "lean"},
		{gateway.EngineLean, gateway.HTTP2ServerNet, "lean"},
		{gateway.EngineLoop, "", "loop"},
		{gateway.EngineLoop, gateway.HTTP2ServerLean, "loop"},
		{gateway.EngineLoop, gateway.HTTP2ServerNet, "loop"},
		{gateway.EngineFast, "", "net"},
		{gateway.EngineNet, "", "net"},
	} {
		engine, want := tc.engine, tc.want
		if want == "loop" && runtime.GOOS != "linux" {
			want = "lean"
		}
		t.Run(engine+"/"+tc.http2, func(t *testing.T) {
			cfg := gateway.Config{
				Engine: engine,
				HTTP2:  gateway.HTTP2Config{Server: tc.http2},
				TLS:    gateway.TLSConfig{CertFile: certFile, KeyFile: keyFile},
				Upstreams: []gateway.UpstreamConfig{
					{Name: "h1", Targets: []gateway.TargetConfig{{Address: strings.TrimPrefix(plain.URL, "http://")}}},
					{Name: "h2", HTTP2: true, Targets: []gateway.TargetConfig{{Address: strings.TrimPrefix(h2c.URL, "http://")}}},
				},
				Routes: []gateway.RouteConfig{
					{ID: "to-h2", Match: gateway.RouteMatch{PathPrefix: "/h2"}, Upstream: "h2"},
					{ID: "to-h1", Match: gateway.RouteMatch{PathPrefix: "/"}, Upstream: "h1"},
				},
			}
			s := startStack(t, cfg, nil, gateway.ServiceOptions{})
			if got := s.svc.Engine(); got != want {
				t.Fatalf("TLS listener with engine %q served on %q, want %q", engine, got, want)
			}
			base := "https://" + s.svc.Addr().String()
			for _, tc := range []struct {
				path      string
				h2        bool
				wantProto string
				wantBody  string
			}{
				{"/x", false, "HTTP/1.1", "https 127.0.0.1 HTTP/1"},
				{"/x", true, "HTTP/2.0", "https 127.0.0.1 HTTP/1"},
				{"/h2/x", false, "HTTP/1.1", "https 127.0.0.1 HTTP/2"},
				{"/h2/x", true, "HTTP/2.0", "https 127.0.0.1 HTTP/2"},
			} {
				proto, body := tlsGet(t, base+tc.path, tc.h2)
				if proto != tc.wantProto || body != tc.wantBody {
					t.Errorf("GET %s (h2 %v): answered over %s with %q; want %s with %q", tc.path, tc.h2, proto, body, tc.wantProto, tc.wantBody)
				}
			}
			if status, body := tlsGet10(t, s.svc.Addr().String()); !strings.HasPrefix(status, "200") || body != "https 127.0.0.1 HTTP/1" {
				t.Errorf("HTTP/1.0 over TLS: %s %q, want 200 \"https 127.0.0.1 HTTP/1\"", status, body)
			}
			if want == "net" {
				return
			}
			// HTTP/2 clients go to gateway.http2.server (two connections),
			// or with it loop (the default on the loop engine) stay on the
			// loops, whose stream to the HTTP/2 group goes to lean alone.
			h2 := map[string]float64{metricnames.HandoverHTTP2: 2}
			if want == "loop" && tc.http2 == "" {
				h2 = map[string]float64{metricnames.HandoverHTTP2Stream: 1}
				if n := gauge(t, s.reg, metricnames.GatewayHandoversTotal, map[string]string{"reason": metricnames.HandoverHTTP2}); n != 0 {
					t.Errorf("%s{reason=%q} = %v, want 0: HTTP/2 on the loops", metricnames.GatewayHandoversTotal, metricnames.HandoverHTTP2, n)
				}
			}
			h2[metricnames.HandoverRequest], h2[metricnames.HandoverRoute] = 1, 1
			for reason, min := range h2 {
				if n := gauge(t, s.reg, metricnames.GatewayHandoversTotal, map[string]string{"reason": reason}); n < min {
					t.Errorf("%s{reason=%q} = %v, want >= %v", metricnames.GatewayHandoversTotal, reason, n, min)
				}
			}
		})
	}
}

// Stop on a TLS listener lets an HTTP/2 request in flight (served by the
// HTTP/2 server the lean engine handed the connection to, its own or
// net/http's) and an HTTP/1.1 one (the lean engine's own) finish, and
// returns.
func TestTLSStopFinishesBothProtocols(t *testing.T) {
	for _, server := range []string{gateway.HTTP2ServerLean, gateway.HTTP2ServerNet} {
		t.Run(server, func(t *testing.T) { testTLSStopFinishesBothProtocols(t, server) })
	}
}

func testTLSStopFinishesBothProtocols(t *testing.T, http2Server string) {
	b := newBackend(t, "a")
	certFile, keyFile := writePair(t, t.TempDir(), "gw.test")
	cfg := oneRoute(gateway.UpstreamConfig{Name: "u", Targets: targets(b)})
	cfg.TLS = gateway.TLSConfig{CertFile: certFile, KeyFile: keyFile}
	cfg.HTTP2.Server = http2Server
	svc := startStack(t, cfg, nil, gateway.ServiceOptions{}).svc
	b.delay.Store(int64(300 * time.Millisecond))
	url := "https://" + svc.Addr().String() + "/"
	type answer struct {
		proto, body string
		err         error
	}
	got := make(chan answer, 2)
	var clients []*http.Client
	for _, h2 := range []bool{false, true} {
		tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: h2}
		t.Cleanup(tr.CloseIdleConnections)
		hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		clients = append(clients, hc)
		go func() {
			resp, err := hc.Get(url)
			if err != nil {
				got <- answer{err: err}
				return
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			got <- answer{resp.Proto, string(body), err}
		}()
	}
	if _, ok := waitFor(5*time.Second, func() bool { return b.served.Load() == 2 }); !ok {
		t.Fatalf("the target saw %d of the 2 requests", b.served.Load())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := svc.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	protos := map[string]bool{}
	for range 2 {
		a := <-got
		if a.err != nil || a.body != "a" {
			t.Fatalf("a request in flight at Stop: %q, %v; want its answer", a.body, a.err)
		}
		protos[a.proto] = true
	}
	if !protos["HTTP/1.1"] || !protos["HTTP/2.0"] {
		t.Errorf("answered over %v, want HTTP/1.1 and HTTP/2.0", protos)
	}
	// Both connections were closed: nothing is served after Stop.
	for i, hc := range clients {
		if resp, err := hc.Get(url); err == nil {
			resp.Body.Close()
			t.Errorf("client %d: served %s after Stop", i, resp.Proto)
		}
	}
}

// gateway.tls.alpn [http/1.1] keeps a client that would choose HTTP/2 on
// HTTP/1.1, served by the lean engine; [h2] serves HTTP/2 alone to
// clients that offer it, and the default offers both.
func TestTLSALPN(t *testing.T) {
	b := newBackend(t, "a")
	certFile, keyFile := writePair(t, t.TempDir(), "gw.test")
	for _, tc := range []struct {
		alpn []string
		want string // what a client offering h2 and http/1.1 gets
	}{
		{nil, "HTTP/2.0"},
		{[]string{gateway.ALPNHTTP1}, "HTTP/1.1"},
		{[]string{gateway.ALPNHTTP2}, "HTTP/2.0"},
		{[]string{gateway.ALPNHTTP1, gateway.ALPNHTTP2}, "HTTP/1.1"},
	} {
		cfg := oneRoute(gateway.UpstreamConfig{Name: "u", Targets: targets(b)})
		cfg.TLS = gateway.TLSConfig{CertFile: certFile, KeyFile: keyFile, ALPN: tc.alpn}
		cfg.HTTP2.Server = gateway.HTTP2ServerLean // HTTP/2 handed to internal/h2, counted
		s := startStack(t, cfg, nil, gateway.ServiceOptions{})
		proto, body := tlsGet(t, "https://"+s.svc.Addr().String()+"/", true)
		if proto != tc.want || body != "a" {
			t.Errorf("alpn %v: answered over %s with %q, want %s with \"a\"", tc.alpn, proto, body, tc.want)
		}
		wantH2 := 0.0
		if tc.want == "HTTP/2.0" {
			wantH2 = 1
		}
		if n := gauge(t, s.reg, metricnames.GatewayHandoversTotal, map[string]string{"reason": metricnames.HandoverHTTP2}); n != wantH2 {
			t.Errorf("alpn %v: %v HTTP/2 hand-overs, want %v", tc.alpn, n, wantH2)
		}
	}
}
