package gateway

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fluxgate/fluxgate"
	"github.com/fluxgate/fluxgate/agent"
	"github.com/fluxgate/fluxgate/gateway"
)

const reloadConfig = `policies: {dir: %s}
gateway:
  listen: 127.0.0.1:0
  upstreams:
    - name: old
      targets: [{address: %s}]
    - name: new
      algorithm: %s
      targets: [{address: %s}]
  routes:
    - id: app
      match: {path_prefix: /app}
      upstream: %s
`

// fluxgate gateway applies changes to the gateway section of its config
// file live (the program's one watcher, fluxgate.Watcher, hands it the
// section): requests in flight finish on the old upstream, new ones take
// the new route; an invalid change is refused with positioned errors and
// the last good routing keeps serving.
func TestConfigLiveReload(t *testing.T) {
	oldB, newB := newBackend(t, "old"), newBackend(t, "new")
	dir := t.TempDir()
	path := filepath.Join(dir, "fluxgate.yaml")
	write := func(algorithm, upstream string) {
		t.Helper()
		body := fmt.Sprintf(reloadConfig, filepath.Join(dir, "policies"), oldB.addr(), algorithm, newB.addr(), upstream)
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("round-robin", "old")
	f, _, err := fluxgate.Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := startStack(t, f.Gateway, nil, gateway.ServiceOptions{})
	watchFile(t, fluxgate.WatcherOptions{Path: path, Environ: []string{}, Logger: testLogger(t), Gateway: s.svc})
	if _, be := s.get(t, "/app", nil); be != "old" {
		t.Fatalf("before reload: served by %q", be)
	}

	// A slow request in flight on the old route while the file changes.
	oldB.delay.Store(int64(500 * time.Millisecond))
	type result struct {
		status  int
		backend string
	}
	inflight := make(chan result, 1)
	go func() {
		st, be := s.get(t, "/app/slow", nil)
		inflight <- result{st, be}
	}()
	time.Sleep(100 * time.Millisecond)
	write("round-robin", "new")
	took, ok := waitFor(5*time.Second, func() bool {
		return gauge(t, s.reg, "fluxgate_gateway_config_reloads_total", map[string]string{"result": "success"}) == 1
	})
	if !ok {
		t.Fatal("the config change was not applied")
	}
	t.Logf("config change applied %s after the write (fsnotify + 50ms debounce)", took)
	if _, be := s.get(t, "/app", nil); be != "new" {
		t.Errorf("after the reload: served by %q, want new", be)
	}
	if r := <-inflight; r.status != 200 || r.backend != "old" {
		t.Errorf("request in flight during the reload: %d from %q, want 200 from old", r.status, r.backend)
	}

	// Invalid: refused with its position, the new route keeps serving.
	write("bogus", "new")
	if _, ok := waitFor(5*time.Second, func() bool {
		return gauge(t, s.reg, "fluxgate_gateway_config_reloads_total", map[string]string{"result": "failure"}) >= 1
	}); !ok {
		t.Fatal("invalid config change not refused")
	}
	g := s.agent.Health().Report().Components["gateway"]
	t.Logf("health after the invalid change: %+v", g)
	wantPos := path + ":8:7"
	if g.Status != agent.StatusDegraded || len(g.Errors) == 0 || !strings.Contains(strings.Join(g.Errors, "\n"), wantPos) {
		t.Errorf("gateway health %+v, want degraded with an error at %s", g, wantPos)
	}
	for range 20 {
		if st, be := s.get(t, "/app", nil); st != 200 || be != "new" {
			t.Fatalf("after the refused change: %d from %q, want 200 from new", st, be)
		}
	}
	if u := s.upstream(t, "new"); u.Algorithm != gateway.AlgorithmRoundRobin {
		t.Errorf("refused change applied: algorithm %q", u.Algorithm)
	}

	// Fixed: applies, and the health clears.
	write("least-request", "new")
	if _, ok := waitFor(5*time.Second, func() bool { return s.upstream(t, "new").Algorithm == gateway.AlgorithmLeastRequest }); !ok {
		t.Fatal("valid change after a refused one not applied")
	}
	if g := s.agent.Health().Report().Components["gateway"]; g.Status != agent.StatusHealthy {
		t.Errorf("gateway health after the fix %+v, want healthy", g)
	}
}

// watchFile runs the program's config watcher until the test ends.
func watchFile(t testing.TB, opts fluxgate.WatcherOptions) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	w := fluxgate.NewWatcher(opts)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("watcher: %v", err)
		}
	})
}
