package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fluxgate/fluxgate/circuit"
	"github.com/fluxgate/fluxgate/policies"
)

// TestCircuitKindsMatchCircuit: fluxctl knows every kind circuit registers
// (this test binary links circuit through agent; fluxctl itself does not).
func TestCircuitKindsMatchCircuit(t *testing.T) {
	if got, want := slices.Sorted(slices.Values(circuitKinds)), circuit.Kinds(); !slices.Equal(got, want) {
		t.Errorf("circuitKinds = %v\ncircuit.Kinds() = %v", got, want)
	}
}

// TestApplyCircuitPolicyBinary applies policies with signal components
// through the fluxctl binary, which links no circuit package: before
// kinds.go it refused them locally as "unknown component kind". The
// in-process tests cannot see this, as their binary links circuit.
func TestApplyCircuitPolicyBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the fluxctl binary; not run with -short")
	}
	bin := filepath.Join(t.TempDir(), "fluxctl")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	_, url := startAgent(t, testToken)
	for _, tc := range []struct{ file, want string }{
		// native: query.promql, extrapolator, … beside flow_control kinds
		{"../../policies/examples/service-protection.yaml", "Policy default/service-protection created"},
		// Aperture's format: query, decider, alerter
		{"../../policies/testdata/aperture/rate-limiter.yaml", "Policy default/rate-limiting created"},
	} {
		out, err := exec.Command(bin, "--agent", url, "--token", testToken, "apply", "-f", tc.file).CombinedOutput()
		if err != nil || !strings.Contains(string(out), tc.want) {
			t.Errorf("fluxctl apply -f %s: %v\n%s", tc.file, err, out)
		}
	}

	// A circuit spec fluxctl cannot check is still checked by the agent,
	// and its error is positioned in the user's file: the second document,
	// line 17 (from the document the agent re-encodes it would have said 10).
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte(`# two policies
apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: fine}
spec: {circuit: {components: [{variable: {constant_output: {value: 1}, out_ports: {output: {signal_name: ONE}}}}]}}
---
# the second one has a typo
apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: bad-ema}
spec:
  circuit:
    components:
      - ema:
          in_ports: {input: {constant_signal: {value: 1}}}
          out_ports: {output: {signal_name: X}}
          parameters: {ema_window: 10s, bogus: 1}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "--agent", url, "--token", testToken, "apply", "-f", bad).CombinedOutput()
	if err == nil || !strings.Contains(string(out), bad+`:17:41: unknown field "bogus"`) {
		t.Errorf("fluxctl apply of a bad ema: %v\n%s", err, out)
	}
}

// documentText finds each document's own lines, with how many come before
// them, so the agent's positions map back to the file.
func TestDocumentText(t *testing.T) {
	data := []byte("---\n# first\n" + twoPolicies + "--- # third\napiVersion: fluxgate.io/v1beta1\nkind: Policy\nmetadata: {name: gamma}\nspec: {circuit: {components: []}}\n...\n")
	docs, err := policies.Parse("f.yaml", data)
	if err != nil || len(docs) != 3 {
		t.Fatalf("parse: %v, %d documents", err, len(docs))
	}
	for i, want := range []struct {
		before int
		first  string
	}{{0, "---\n"}, {9, "---\n"}, {19, "--- # third\n"}} {
		text, before, ok := documentText("f.yaml", data, docs[i])
		if !ok || before != want.before || !strings.HasPrefix(string(text), want.first) {
			t.Errorf("document %d: ok %v, before %d, text %q; want %d and %q first", i, ok, before, text, want.before, want.first)
		}
	}
	got := filePositions([]string{"body:3:5: bad", "plain", "body:x"}, "f.yaml", 8)
	if strings.Join(got, "|") != "f.yaml:11:5: bad|plain|body:x" {
		t.Errorf("filePositions = %q", got)
	}
}
