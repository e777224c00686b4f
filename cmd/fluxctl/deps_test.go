package main

import (
	"testing"

	"github.com/fluxgate/fluxgate/internal/linkcheck"
)

// TestLinksNoServerPackage keeps fluxctl a client (issue 15 item 6): of
// this module it links only the API types and the policy parser, and none
// of the server's libraries. client-go (rest, clientcmd) is expected: apply
// --kubeconfig writes custom resources with it.
func TestLinksNoServerPackage(t *testing.T) {
	ours := map[string]bool{
		"github.com/fluxgate/fluxgate/api":                 true,
		"github.com/fluxgate/fluxgate/policies":            true,
		"github.com/fluxgate/fluxgate/policies/strictyaml": true,
		"github.com/fluxgate/fluxgate/cmd/fluxctl":         true,
	}
	heavy := []string{
		"github.com/prometheus/",        // client_golang, the TSDB and PromQL
		"github.com/open-policy-agent/", // Rego classifiers
		"github.com/redis/",             // global rate limits
		"google.golang.org/grpc",        // the check service
		"go.opentelemetry.io/",          // flux meters
	}
	linkcheck.Check(t, linkcheck.Rule{Name: "fluxctl", Ours: ours, Heavy: heavy})
}
