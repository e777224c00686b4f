package gateway

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/fluxgate/fluxgate/gateway"
	"github.com/fluxgate/fluxgate/metricnames"
)

// handoverCount is fluxgate_gateway_handovers_total{reason}.
func handoverCount(t *testing.T, s *stack, reason string) float64 {
	t.Helper()
	return gauge(t, s.reg, metricnames.GatewayHandoversTotal, map[string]string{"reason": reason})
}

// h2cStack serves one route to a backend named b1 with gateway.h2c on
// the lean engine and gateway.http2.server server.
func h2cStack(t *testing.T, server string) *stack {
	t.Helper()
	b := newBackend(t, "b1")
	cfg := oneRoute(gateway.UpstreamConfig{Name: "u", Targets: targets(b)})
	cfg.H2C, cfg.Engine = true, gateway.EngineLean
	cfg.HTTP2.Server = server
	s := startStack(t, cfg, nil, gateway.ServiceOptions{})
	if e := s.svc.Engine(); e != gateway.EngineLean {
		t.Fatalf("engine %q with h2c, want lean", e)
	}
	return s
}

// dialH2C opens a cleartext HTTP/2 connection to addr by prior knowledge:
// the preface and SETTINGS are sent; it closes at the test's end and
// nothing on it waits more than 10 s.
func dialH2C(t *testing.T, addr string) *http2.Framer {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return fr
}

// serverSettings opens a connection to addr with the HTTP/2 client
// preface and returns the settings of the server's first frame.
func serverSettings(t *testing.T, addr string) map[http2.SettingID]uint32 {
	t.Helper()
	fr := dialH2C(t, addr)
	f, err := fr.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	sf, ok := f.(*http2.SettingsFrame)
	if !ok || sf.IsAck() {
		t.Fatalf("server's first frame %v, want SETTINGS", f)
	}
	got := map[http2.SettingID]uint32{}
	_ = sf.ForeachSetting(func(s http2.Setting) error { got[s.ID] = s.Val; return nil })
	return got
}

// With gateway.h2c on the lean engine, a client with prior knowledge is
// handed to gateway.http2.server (the gateway's own by default, net/http's
// with net), and HTTP/1.1 clients on the same listener stay on the lean
// engine. Which HTTP/2 server answered shows in its SETTINGS: net/http
// announces SETTINGS_MAX_FRAME_SIZE, internal/h2 does not.
func TestH2CPriorKnowledgeOnLeanEngine(t *testing.T) {
	for _, tc := range []struct {
		name, server string
		wantMaxFrame bool
	}{
		{"default", "", false}, // lean
		{"net", gateway.HTTP2ServerNet, true},
	} {
		t.Run("http2.server "+tc.name, func(t *testing.T) {
			s := h2cStack(t, tc.server)
			addr := s.svc.Addr().String()
			url := "http://" + addr + "/x"

			p := new(http.Protocols)
			p.SetUnencryptedHTTP2(true)
			tr := &http.Transport{Protocols: p}
			c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
			for i := range 3 { // one connection, three streams
				major, body := protoGet(t, c, url)
				if major != 2 || body != "b1" {
					t.Fatalf("request %d: HTTP/%d %q, want HTTP/2 from b1", i, major, body)
				}
			}
			tr.CloseIdleConnections()
			if n := handoverCount(t, s, metricnames.HandoverH2C); n != 1 {
				t.Errorf("handovers{reason=h2c} = %v after one prior-knowledge connection, want 1", n)
			}

			_, hasMaxFrame := serverSettings(t, addr)[http2.SettingMaxFrameSize]
			if hasMaxFrame != tc.wantMaxFrame {
				t.Errorf("SETTINGS_MAX_FRAME_SIZE announced: %v, want %v (which HTTP/2 server answered)", hasMaxFrame, tc.wantMaxFrame)
			}
			if n := handoverCount(t, s, metricnames.HandoverH2C); n != 2 {
				t.Errorf("handovers{reason=h2c} = %v after two prior-knowledge connections, want 2", n)
			}

			p1 := new(http.Protocols)
			p1.SetHTTP1(true)
			tr1 := &http.Transport{Protocols: p1}
			c1 := &http.Client{Transport: tr1, Timeout: 5 * time.Second}
			for i := range 3 {
				major, body := protoGet(t, c1, url)
				if major != 1 || body != "b1" {
					t.Fatalf("HTTP/1.1 request %d: HTTP/%d %q, want HTTP/1 from b1", i, major, body)
				}
			}
			tr1.CloseIdleConnections()
			for _, r := range []string{metricnames.HandoverRequest, metricnames.HandoverBody, metricnames.HandoverRoute, metricnames.HandoverHTTP2} {
				if n := handoverCount(t, s, r); n != 0 {
					t.Errorf("handovers{reason=%s} = %v: the HTTP/1.1 requests left the lean engine", r, n)
				}
			}
			if n := handoverCount(t, s, metricnames.HandoverH2C); n != 2 {
				t.Errorf("handovers{reason=h2c} = %v after HTTP/1.1 requests, want still 2", n)
			}
		})
	}
}

// An HTTP/1.1 request with Upgrade: h2c is upgraded, as it was before the
// lean engine served h2c listeners: net/http's h2c handler answers 101
// and the response comes on stream 1 over HTTP/2.
func TestH2CUpgradeOnLeanEngine(t *testing.T) { checkH2CUpgrade(t, h2cStack(t, "")) }

// checkH2CUpgrade checks an Upgrade: h2c request on s.
func checkH2CUpgrade(t *testing.T, s *stack) {
	t.Helper()
	c, err := net.Dial("tcp", s.svc.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	// HTTP2-Settings: an empty SETTINGS payload, base64url.
	if _, err := io.WriteString(c, "GET /x HTTP/1.1\r\nHost: gw\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: \r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || !strings.EqualFold(resp.Header.Get("Upgrade"), "h2c") {
		t.Fatalf("answer %d Upgrade %q, want 101 to h2c", resp.StatusCode, resp.Header.Get("Upgrade"))
	}
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, br)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	var status, body string
	for done := false; !done; {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading the upgraded answer: %v (status %q, body %q)", err, status, body)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = fr.WriteSettingsAck()
			}
		case *http2.HeadersFrame:
			if f.StreamID == 1 {
				status = fmt.Sprintf("%d bytes of HPACK", len(f.HeaderBlockFragment()))
				done = f.StreamEnded()
			}
		case *http2.DataFrame:
			if f.StreamID == 1 {
				body += string(f.Data())
				done = f.StreamEnded()
			}
		case *http2.GoAwayFrame:
			t.Fatalf("GOAWAY %v before the answer", f.ErrCode)
		}
	}
	if status == "" || body != "b1" {
		t.Errorf("stream 1: headers %q, body %q; want an answer from b1", status, body)
	}
	if n := handoverCount(t, s, metricnames.HandoverRequest); n != 1 {
		t.Errorf("handovers{reason=request} = %v, want 1 (the upgrade, to net/http)", n)
	}
	if n := handoverCount(t, s, metricnames.HandoverH2C); n != 0 {
		t.Errorf("handovers{reason=h2c} = %v, want 0", n)
	}
}

// With gateway.http2.server loop (the default on Linux), the loop engine
// serves the listener:
// clients with prior knowledge on the loops (no hand-over), HTTP/1.1
// clients on the loops too, and Upgrade: h2c through the lean engine to
// net/http as before.
func TestH2COnTheLoops(t *testing.T) {
	b := newBackend(t, "b1")
	cfg := oneRoute(gateway.UpstreamConfig{Name: "u", Targets: targets(b)})
	cfg.H2C = true // gateway.http2.server loop by default on Linux
	s := startStack(t, cfg, nil, gateway.ServiceOptions{})
	if runtime.GOOS != "linux" {
		return // no loops: the lean engine's tests above
	}
	if e := s.svc.Engine(); e != gateway.EngineLoop {
		t.Fatalf("engine %q with h2c and the default http2.server, want loop", e)
	}
	url := "http://" + s.svc.Addr().String() + "/x"
	for _, proto := range []int{2, 1} {
		p := new(http.Protocols)
		if proto == 2 {
			p.SetUnencryptedHTTP2(true)
		} else {
			p.SetHTTP1(true)
		}
		tr := &http.Transport{Protocols: p}
		c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
		for i := range 3 {
			major, body := protoGet(t, c, url)
			if major != proto || body != "b1" {
				t.Fatalf("request %d: HTTP/%d %q, want HTTP/%d from b1", i, major, body, proto)
			}
		}
		tr.CloseIdleConnections()
	}
	for _, r := range []string{metricnames.HandoverH2C, metricnames.HandoverRequest, metricnames.HandoverHTTP2Stream} {
		if n := handoverCount(t, s, r); n != 0 {
			t.Errorf("handovers{reason=%s} = %v, want 0: served on the loops", r, n)
		}
	}
	checkH2CUpgrade(t, s)
}

// The engines net and fast keep serving h2c on net/http, both ways.
func TestH2CEnginesNetAndFast(t *testing.T) {
	for _, engine := range []string{gateway.EngineNet, gateway.EngineFast} {
		t.Run(engine, func(t *testing.T) {
			b := newBackend(t, "b1")
			cfg := oneRoute(gateway.UpstreamConfig{Name: "u", Targets: targets(b)})
			cfg.H2C, cfg.Engine = true, engine
			s := startStack(t, cfg, nil, gateway.ServiceOptions{})
			if e := s.svc.Engine(); e != gateway.EngineNet {
				t.Fatalf("engine %q, want net", e)
			}
			p := new(http.Protocols)
			p.SetUnencryptedHTTP2(true)
			tr := &http.Transport{Protocols: p}
			defer tr.CloseIdleConnections()
			major, body := protoGet(t, &http.Client{Transport: tr, Timeout: 5 * time.Second}, "http://"+s.svc.Addr().String()+"/x")
			if major != 2 || body != "b1" {
				t.Errorf("HTTP/%d %q, want HTTP/2 from b1", major, body)
			}
			if _, ok := serverSettings(t, s.svc.Addr().String())[http2.SettingMaxFrameSize]; !ok {
				t.Errorf("no SETTINGS_MAX_FRAME_SIZE: not net/http's HTTP/2 server")
			}
		})
	}
}

// Stopping the gateway ends the h2c connections handed to the HTTP/2
// server: an idle client connection sees its end (EOF), not its own read
// timeout.
func TestH2CStopEndsHandedConnections(t *testing.T) {
	for _, tc := range []struct{ name, server string }{{"default", ""}, {"net", gateway.HTTP2ServerNet}} {
		t.Run("http2.server "+tc.name, func(t *testing.T) {
			s := h2cStack(t, tc.server)
			fr := dialH2C(t, s.svc.Addr().String())
			if _, err := fr.ReadFrame(); err != nil { // the server's SETTINGS: handed over
				t.Fatal(err)
			}
			stopped := make(chan error, 1)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				stopped <- s.svc.Stop(ctx)
			}()
			var err error
			for {
				if _, err = fr.ReadFrame(); err != nil {
					break
				}
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Errorf("the connection outlived the gateway's stop: %v", err)
			}
			if err := <-stopped; err != nil {
				t.Errorf("stop: %v", err)
			}
		})
	}
}
