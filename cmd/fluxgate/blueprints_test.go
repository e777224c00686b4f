package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runBlueprints runs `fluxgate blueprints ARGS...` through the command
// itself (main.go's command list is not needed).
func runBlueprints(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := newBlueprintsCmd()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err = cmd.Execute()
	return out.String(), errOut.String(), err
}

func TestBlueprintsList(t *testing.T) {
	out, _, err := runBlueprints(t, "list")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"availability-slo", "canary-rollout", "latency-slo", "rate-limiting", "service-protection"} {
		if !strings.Contains(out, name+" ") {
			t.Errorf("list does not show %s:\n%s", name, out)
		}
	}
}

// TestBlueprintsValuesGenerateValidate: the printed values generate files
// whose policy `fluxgate policy validate` accepts.
func TestBlueprintsValuesGenerateValidate(t *testing.T) {
	for _, name := range []string{"availability-slo", "canary-rollout", "latency-slo", "rate-limiting", "service-protection"} {
		t.Run(name, func(t *testing.T) {
			values, _, err := runBlueprints(t, "values", name)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			vf := writeFile(t, dir, "values.yaml", values)
			outDir := filepath.Join(dir, "out")
			out, stderr, err := runBlueprints(t, "generate", name, "--values", vf, "--output-dir", outDir)
			if err != nil {
				t.Fatalf("%v\n%s", err, stderr)
			}
			policies, _ := filepath.Glob(filepath.Join(outDir, "*.yaml"))
			var policyFile string
			for _, p := range policies {
				if !strings.Contains(filepath.Base(p), ".rules") {
					policyFile = p
				}
			}
			if policyFile == "" || !strings.Contains(out, "wrote "+policyFile) {
				t.Fatalf("no policy written; stdout:\n%s", out)
			}
			for _, suffix := range []string{".dashboard.json", ".dot", ".mmd", ".rules.yaml"} {
				if _, err := os.Stat(strings.TrimSuffix(policyFile, ".yaml") + suffix); err != nil {
					t.Error(err)
				}
			}
			if stdout, stderr, err := runPolicyValidate(t, policyFile); err != nil || !strings.HasPrefix(stdout, "ok:") {
				t.Errorf("policy validate: %v %s %s", err, stdout, stderr)
			}
		})
	}
}

func TestBlueprintsGenerateBadValues(t *testing.T) {
	dir := t.TempDir()
	vf := writeFile(t, dir, "values.yaml", "policy_name: s\nobjective: 99.5\nthreshold_ms: 300\nflux_meter: {name: m, selectors: [{control_point: ingress}], buckets: [100, 250]}\nrunbook_url: https://r\nextra: 1\n")
	outDir := filepath.Join(dir, "out")
	_, stderr, err := runBlueprints(t, "generate", "latency-slo", "--values", vf, "--output-dir", outDir)
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != 1 {
		t.Fatalf("err = %v, want exit status 1", err)
	}
	want := vf + `:6:1: unknown field "extra"`
	if !strings.HasPrefix(stderr, want) {
		t.Errorf("stderr:\n%s\nwant it to start with %s", stderr, want)
	}
	if _, err := os.Stat(outDir); !os.IsNotExist(err) {
		t.Errorf("output dir written despite bad values: %v", err)
	}
	if _, _, err := runBlueprints(t, "generate", "blue-green", "--values", vf, "--output-dir", outDir); err == nil || !strings.Contains(err.Error(), `no blueprint "blue-green"`) {
		t.Errorf("unknown blueprint: %v", err)
	}
}
