package gateway

import (
	"strings"
	"testing"

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
