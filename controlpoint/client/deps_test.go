package client

import (
	"testing"

	"github.com/fluxgate/fluxgate/internal/linkcheck"
)

// TestLinksOnlyTheSDKCore keeps the SDK light (issue 15 item 6): the
// package links gRPC, the protos, the OpenTelemetry API and client_golang,
// and of this module only the packages an application checking flows
// needs. The OpenTelemetry SDK and the OTLP exporter are in package
// otlpspans, for applications that send flow spans.
func TestLinksOnlyTheSDKCore(t *testing.T) {
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
	linkcheck.Check(t, linkcheck.Rule{Name: "the SDK", Ours: ours, Heavy: heavy})
}
