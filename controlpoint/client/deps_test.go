package client

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLinksOnlyTheSDKCore keeps the SDK light (issue 15 item 6): the
// package links gRPC, the protos, the OpenTelemetry API and client_golang,
// and of this module only the packages an application checking flows
// needs. The OpenTelemetry SDK and the OTLP exporter are in package
// otlpspans, for applications that send flow spans.
func TestLinksOnlyTheSDKCore(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command lists the package's dependencies: %v", err)
	}
	out, err := exec.Command(goBin, "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	ours := map[string]bool{
		"github.com/fluxgate/fluxgate/controlpoint/client":         true,
		"github.com/fluxgate/fluxgate/controlpoint/controlpointpb": true, // the wire types
		"github.com/fluxgate/fluxgate/controlpoint/flow":           true, // requests and decisions
		"github.com/fluxgate/fluxgate/controlpoint/breaker":        true, // the Guard's breaker
		"github.com/fluxgate/fluxgate/metricnames":                 true, // label values
	}
	heavy := []string{
		"go.opentelemetry.io/otel/sdk",        // the OpenTelemetry SDK
		"go.opentelemetry.io/otel/exporters/", // OTLP exporters
		"go.opentelemetry.io/proto/",          // OTLP protos
		"github.com/grpc-ecosystem/",          // the OTLP protos' REST gateway
		"github.com/prometheus/prometheus",    // the TSDB and PromQL
		"github.com/open-policy-agent/",       // Rego classifiers
		"github.com/redis/",                   // global rate limits
		"go.uber.org/fx",                      // the agent's wiring
		"k8s.io/",                             // Kubernetes resources
	}
	pkgs := strings.Fields(string(out))
	if len(pkgs) == 0 {
		t.Fatal("go list -deps listed nothing")
	}
	for _, p := range pkgs {
		if strings.HasPrefix(p, "github.com/fluxgate/fluxgate/") || p == "github.com/fluxgate/fluxgate" {
			if !ours[p] {
				t.Errorf("the SDK links %s", p)
			}
			continue
		}
		for _, h := range heavy {
			if strings.HasPrefix(p, h) {
				t.Errorf("the SDK links %s", p)
			}
		}
	}
	t.Logf("%d non-standard packages", len(pkgs))
}
