package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDashboardsGenerate(t *testing.T) {
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policy, []byte(`apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: checkout}
spec:
  resources:
    flux_meters:
      checkout-latency: {selectors: [{control_point: ingress}]}
  circuit:
    components:
      - variable:
          constant_output: {value: 50}
          out_ports: {output: {signal_name: RATE}}
      - flow_control:
          rate_limiter:
            selectors: [{control_point: ingress}]
            in_ports: {bucket_capacity: {signal_name: RATE}, fill_amount: {signal_name: RATE}}
            parameters: {interval: 1s}
---
apiVersion: fluxgate.io/v1beta1
kind: TrafficPolicy
metadata: {name: web}
spec: {targetRef: {name: web}}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	cmd := newDashboardsCmd()
	var stdout, stderr bytes.Buffer
	cmd.SetOut(&stdout)
	cmd.SetErr(&stderr)
	cmd.SetArgs([]string{"generate", "--policy", policy, "--datasource", "Mimir", "--output-dir", out})
	if err := cmd.Execute(); err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "skipping TrafficPolicy default/web") {
		t.Errorf("stderr %q, want the TrafficPolicy skipped", stderr.String())
	}
	for _, name := range []string{"fluxgate-ops-01.json", "fluxgate-default-checkout.json"} {
		data, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatalf("%v (stdout %q)", err, stdout.String())
		}
		var d struct {
			UID        string
			Templating struct {
				List []struct {
					Name, Type string
					Current    struct{ Value string }
				}
			}
		}
		if err := json.Unmarshal(data, &d); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if v := d.Templating.List[0]; v.Type != "datasource" || v.Current.Value != "Mimir" {
			t.Errorf("%s: datasource variable %+v, want default Mimir", name, v)
		}
	}
	if !strings.Contains(stdout.String(), "FluxGate Gateway Overview") {
		t.Errorf("stdout %q", stdout.String())
	}
}

func TestDashboardsGenerateBadPolicy(t *testing.T) {
	dir := t.TempDir()
	policy := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(policy, []byte("apiVersion: fluxgate.io/v1beta1\nkind: Policy\nmetadata: {name: x}\nspec: {nope: 1}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := newDashboardsCmd()
	var stderr bytes.Buffer
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetErr(&stderr)
	cmd.SetArgs([]string{"generate", "--policy", policy, "--output-dir", filepath.Join(dir, "out")})
	if err := cmd.Execute(); err == nil || exitCode(err) != 1 {
		t.Fatalf("err %v, want exit 1", err)
	}
	if !strings.Contains(stderr.String(), "bad.yaml:4:") {
		t.Errorf("stderr %q, want a positioned error", stderr.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "out")); err == nil {
		t.Error("wrote dashboards despite a bad policy")
	}
}
