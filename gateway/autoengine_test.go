//go:build linux

package gateway

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fluxgate/fluxgate/controlpoint/client"
	"github.com/fluxgate/fluxgate/policies"
)

// bareHost is a Host with no agent behind it: no checker, no policies.
type bareHost struct{ reg *prometheus.Registry }

func (h bareHost) Checker() client.Checker                                  { return nil }
func (h bareHost) Flows() client.FlowObserver                               { return nil }
func (h bareHost) Registerer() prometheus.Registerer                        { return h.reg }
func (h bareHost) HandleHTTP(string, http.Handler)                          {}
func (h bareHost) SubscribeTrafficPolicies(func([]*policies.TrafficPolicy)) {}
func (h bareHost) RegisterHealth(string, func() HealthStatus)               {}
func (h bareHost) SetGatewayPolicies([]*policies.Policy)                    {}
func (h bareHost) Attach(*Gateway)                                          {}

// Where the loop engine cannot start (its epoll or eventfd refused: a
// sandbox, a descriptor limit), engine auto serves on the lean engine and
// says so in the log; engine loop, asked for by name, fails to start.
func TestAutoFallsBackToLeanWhereLoopsCannotStart(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "up") }))
	t.Cleanup(up.Close)
	defer func(f func(*Gateway, *slog.Logger, int) (*LoopServer, error)) { newLoopServer = f }(newLoopServer)
	refused := errors.New("epoll_create1: operation not permitted")
	newLoopServer = func(*Gateway, *slog.Logger, int) (*LoopServer, error) { return nil, refused }

	for _, tc := range []struct {
		engine, want string
		fails        bool
	}{{EngineAuto, EngineLean, false}, {"", EngineLean, false}, {EngineLoop, "", true}} {
		cfg := Config{Listen: "127.0.0.1:0", Engine: tc.engine,
			Upstreams: []UpstreamConfig{{Name: "u", Targets: []TargetConfig{{Address: strings.TrimPrefix(up.URL, "http://")}}}},
			Routes:    []RouteConfig{{ID: "r", Match: RouteMatch{PathPrefix: "/"}, Upstream: "u"}}}
		var log bytes.Buffer
		s := NewService(bareHost{prometheus.NewRegistry()}, cfg, slog.New(slog.NewTextHandler(&log, nil)))
		err := s.Start(context.Background())
		if tc.fails {
			if !errors.Is(err, refused) {
				t.Errorf("engine %q: Start = %v, want the loops' error", tc.engine, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("engine %q: %v", tc.engine, err)
		}
		if got := s.Engine(); got != tc.want {
			t.Errorf("engine %q: serving on %q, want %q", tc.engine, got, tc.want)
		}
		if !strings.Contains(log.String(), "the loop engine cannot start here") {
			t.Errorf("engine %q: no warning in the log:\n%s", tc.engine, log.String())
		}
		resp, err := http.Get("http://" + s.Addr().String() + "/")
		if err != nil {
			t.Fatalf("engine %q: %v", tc.engine, err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if string(body) != "up" {
			t.Errorf("engine %q: got %d %q", tc.engine, resp.StatusCode, body)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := s.Stop(ctx); err != nil {
			t.Errorf("engine %q: Stop: %v", tc.engine, err)
		}
		cancel()
	}
}

// Which configurations the loop engine serves: asked for, or auto on
// Linux, plain or over TLS; with h2c only when HTTP/2 is served on the
// loops too (gateway.http2.server loop, the default there); on the other
// engines, not.
func TestServesOnLoops(t *testing.T) {
	tlsOn := TLSConfig{CertFile: "c.pem", KeyFile: "k.pem"}
	for _, tc := range []struct {
		name string
		cfg  Config
		want bool
	}{
		{"auto, plain", Config{}, true},
		{"auto, tls", Config{TLS: tlsOn}, true},
		{"loop, tls", Config{Engine: EngineLoop, TLS: tlsOn}, true},
		{"auto, h2c", Config{H2C: true}, loopsSupported}, // http2.server loop by default
		{"auto, h2c, http2.server lean", Config{H2C: true, HTTP2: HTTP2Config{Server: HTTP2ServerLean}}, false},
		{"loop, tls and h2c", Config{Engine: EngineLoop, TLS: tlsOn, H2C: true}, true},
		{"loop, tls and h2c, http2.server net", Config{Engine: EngineLoop, TLS: tlsOn, H2C: true, HTTP2: HTTP2Config{Server: HTTP2ServerNet}}, false},
		{"lean, tls", Config{Engine: EngineLean, TLS: tlsOn}, false},
		{"net, tls", Config{Engine: EngineNet, TLS: tlsOn}, false},
	} {
		if got := servesOnLoops(tc.cfg); got != tc.want {
			t.Errorf("%s: servesOnLoops = %v, want %v", tc.name, got, tc.want)
		}
	}
}
