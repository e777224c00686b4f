package agent

import (
	"encoding/json"
	"net"
	"strings"
	"testing"
)

// closedAddress is an http:// address where nothing listens.
func closedAddress(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := "http://" + ln.Addr().String()
	_ = ln.Close()
	return addr
}

// A Prometheus source or an Alertmanager the agent cannot reach degrades
// health, each naming its address and the reason, even while no circuit
// queries and no alert fires.
func TestHealthDegradedByUnreachableRemotes(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.Prometheus.Address = closedAddress(t)
	cfg.Alertmanager.Address = closedAddress(t)
	a := startAgent(t, cfg)
	var rep HealthReport
	waitFor(t, "health to notice both remotes are down", func() bool {
		r := doRequest(t, "GET", a.testURL("/v1/monitoring/health"), "", nil)
		if err := json.Unmarshal([]byte(r.body), &rep); err != nil {
			t.Fatal(err)
		}
		return rep.Components["promql"].Status == StatusDegraded && rep.Components["alertmanager"].Status == StatusDegraded
	})
	if rep.Status != StatusDegraded {
		t.Errorf("agent status %q, want degraded", rep.Status)
	}
	for name, addr := range map[string]string{"promql": cfg.Prometheus.Address, "alertmanager": cfg.Alertmanager.Address} {
		if m := rep.Components[name].Message; !strings.Contains(m, addr) || !strings.Contains(m, "connection refused") {
			t.Errorf("%s: message %q, want the address and the reason", name, m)
		}
	}
}
