package gateway

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"github.com/fluxgate/fluxgate"
	"github.com/fluxgate/fluxgate/agent"
	"github.com/fluxgate/fluxgate/gateway"
)

// gateway.Module with a ConfigFile and a Loader, as `fluxgate gateway` wires it,
// reloads the gateway section when the file changes.
func TestModuleReloadsConfigFile(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	dir := t.TempDir()
	path := filepath.Join(dir, "fluxgate.yaml")
	doc := `server: {host: 127.0.0.1, http_port: 0, grpc_port: 0}
metrics: {enabled: false}
otlp: {grpc_port: 0, http_port: 0}
policies: {dir: %s}
gateway:
  listen: 127.0.0.1:0
  upstreams: [{name: app, targets: [{address: %s}]}]
  routes: [{id: app, match: {path_prefix: /}, upstream: app}]
`
	write := func(target string) {
		if err := os.WriteFile(path, []byte(fmt.Sprintf(doc, filepath.Join(dir, "policies"), target)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(a.addr())
	f, _, err := fluxgate.Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	var svc *gateway.Service
	app := fxtest.New(t, fx.NopLogger, fx.Supply(f.Config, f.Gateway, testLogger(t), gateway.ConfigFile(path), gateway.Loader(fluxgate.GatewayLoader)), agent.Module, fx.Provide(fluxgate.GatewayHost), gateway.Module, fx.Populate(&svc))
	app.RequireStart()
	defer app.RequireStop()
	h := &harness{gw: svc.Gateway(), url: "http://" + svc.Addr().String(), hc: newClient(t)}
	if _, be := h.get(t, "/", nil); be != "a" {
		t.Fatalf("served by %q, want a", be)
	}
	write(b.addr())
	if took, ok := waitFor(5*time.Second, func() bool { _, be := h.get(t, "/", nil); return be == "b" }); !ok {
		t.Fatal("config change not applied")
	} else {
		t.Logf("applied %s after the write", took)
	}
}
