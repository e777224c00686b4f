package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLinksNoServerPackage keeps fluxctl a client (issue 15 item 6): of
// this module it links only the API types and the policy parser, and none
// of the server's libraries. client-go (rest, clientcmd) is expected: apply
// --kubeconfig writes custom resources with it.
func TestLinksNoServerPackage(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command lists fluxctl's dependencies: %v", err)
	}
	out, err := exec.Command(goBin, "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
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
	pkgs := strings.Fields(string(out))
	if len(pkgs) == 0 {
		t.Fatal("go list -deps listed nothing")
	}
	for _, p := range pkgs {
		if strings.HasPrefix(p, "github.com/fluxgate/fluxgate/") || p == "github.com/fluxgate/fluxgate" {
			if !ours[p] {
				t.Errorf("fluxctl links %s", p)
			}
			continue
		}
		for _, h := range heavy {
			if strings.HasPrefix(p, h) {
				t.Errorf("fluxctl links %s", p)
			}
		}
	}
}
