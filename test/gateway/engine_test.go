package gateway

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/fluxgate/fluxgate/agent"
	"github.com/fluxgate/fluxgate/gateway"
)

// A plain listener runs on the fast engine unless gateway.engine asks for
// net/http; either proxies the same. An unknown engine is refused.
func TestEngineChoice(t *testing.T) {
	b := newBackend(t, "a")
	for engine, want := range map[string]string{"": "fast", agent.GatewayEngineAuto: "fast", agent.GatewayEngineNet: "net"} {
		cfg := oneRoute(agent.UpstreamConfig{Name: "u", Targets: targets(b)})
		cfg.Engine = engine
		s := startStack(t, cfg, nil, gateway.ServiceOptions{})
		if got := s.svc.Engine(); got != want {
			t.Errorf("engine %q: serving on %q, want %q", engine, got, want)
		}
		if st, backend := s.get(t, "/", nil); st != 200 || backend != "a" {
			t.Errorf("engine %q: got %d from %q", engine, st, backend)
		}
	}
	cfg := oneRoute(agent.UpstreamConfig{Name: "u", Targets: targets(b)})
	cfg.Engine = "nginx"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "engine") {
		t.Errorf("engine nginx validated: %v", err)
	}
}

// Stop lets a request in flight finish within its grace period; past it,
// Stop returns and the connections are closed, on either engine.
func TestStopGraceAndDeadline(t *testing.T) {
	for _, engine := range []string{agent.GatewayEngineAuto, agent.GatewayEngineNet} {
		b := newBackend(t, "a")
		cfg := oneRoute(agent.UpstreamConfig{Name: "u", Targets: targets(b)})
		cfg.Engine = engine
		for _, tc := range []struct {
			delay, grace time.Duration
			wantOK       bool
		}{
			{200 * time.Millisecond, 5 * time.Second, true},
			{3 * time.Second, 200 * time.Millisecond, false},
		} {
			s := startStack(t, cfg, nil, gateway.ServiceOptions{})
			b.delay.Store(int64(tc.delay))
			got := make(chan int, 1)
			go func() {
				resp, err := s.hc.Get(s.url + "/")
				if err != nil {
					got <- 0
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				got <- resp.StatusCode
			}()
			time.Sleep(50 * time.Millisecond) // in flight
			ctx, cancel := context.WithTimeout(context.Background(), tc.grace)
			start := time.Now()
			err := s.svc.Stop(ctx)
			cancel()
			took := time.Since(start)
			status := <-got
			if tc.wantOK && (err != nil || status != 200) {
				t.Errorf("%s: stop with %s grace: %v; the request in flight got %d, want 200", engine, tc.grace, err, status)
			}
			if !tc.wantOK && (err == nil || took > tc.grace+time.Second || status == 200) {
				t.Errorf("%s: stop past its %s grace returned %v after %s; the request got %d", engine, tc.grace, err, took, status)
			}
		}
	}
}
