package main

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func runPolicyValidate(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	return runFluxgate(t, append([]string{"policy", "validate"}, args...)...)
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const goodPolicies = `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: a}
spec: {circuit: {components: []}}
---
apiVersion: fluxgate.io/v1beta1
kind: TrafficPolicy
metadata: {name: b}
spec: {targetRef: {name: web}}
`

func TestPolicyValidateOK(t *testing.T) {
	dir := t.TempDir()
	f1 := writeFile(t, dir, "one.yaml", goodPolicies)
	f2 := writeFile(t, dir, "two.yaml", "apiVersion: fluxgate.io/v1beta1\nkind: Policy\nmetadata: {name: c}\nspec: {}\n")
	stdout, stderr, err := runPolicyValidate(t, f1, f2)
	if err != nil {
		t.Fatalf("err = %v, stderr %q", err, stderr)
	}
	if stdout != "ok: 2 files, 3 policies\n" || stderr != "" {
		t.Errorf("stdout %q, stderr %q", stdout, stderr)
	}
}

func TestPolicyValidateBad(t *testing.T) {
	dir := t.TempDir()
	good := writeFile(t, dir, "good.yaml", goodPolicies)
	bad := writeFile(t, dir, "bad.yaml", "apiVersion: v1\nkind: Policy\nmetadata: {name: X}\nspec: {bogus: 1}\n")
	missing := filepath.Join(dir, "missing.yaml")
	stdout, stderr, err := runPolicyValidate(t, good, bad, missing)
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != 1 {
		t.Fatalf("err = %v, want exit status 1", err)
	}
	want := []string{
		bad + `:1:13: unsupported apiVersion "v1"; want fluxgate.io/v1beta1`,
		bad + `:3:18: invalid name "X": must be lowercase letters, digits, '-' and '.', start and end with a letter or digit, at most 253 characters`,
		bad + `:4:8: unknown field "bogus" in spec; valid fields: circuit, resources`,
		missing + `: no such file or directory`,
	}
	if got := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("stderr:\n%s\nwant:\n%s", stderr, strings.Join(want, "\n"))
	}
	if stdout != "" {
		t.Errorf("stdout %q", stdout)
	}
	if got := err.Error(); got != "policy validate: 4 problems in 3 files" {
		t.Errorf("error %q", got)
	}
}

func TestPolicyValidateNoArgs(t *testing.T) {
	if _, _, err := runPolicyValidate(t); err == nil {
		t.Error("no error without files")
	}
}

func TestPolicyValidateExamples(t *testing.T) {
	files, _ := filepath.Glob("../../policies/examples/*.yaml")
	if len(files) == 0 {
		t.Fatal("no examples")
	}
	stdout, stderr, err := runPolicyValidate(t, files...)
	if err != nil || !strings.HasPrefix(stdout, "ok: ") {
		t.Errorf("examples: %v\n%s%s", err, stdout, stderr)
	}
}

const circuitPolicy = `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: loop}
spec:
  circuit:
    components:
      - arithmetic_combinator:
          operator: mul
          in_ports: {lhs: {signal_name: LATENCY}, rhs: {constant_signal: {value: 2}}}
          out_ports: {output: {signal_name: LIMIT}}
      - flow_control:
          rate_limiter:
            selectors: [{control_point: ingress}]
            in_ports: {bucket_capacity: {signal_name: LIMIT}, fill_amount: {constant_signal: {value: 10}}}
            parameters: {interval: 1s}
`

func TestPolicyValidateReportsWiringErrors(t *testing.T) {
	dir := t.TempDir()
	f := writeFile(t, dir, "loop.yaml", circuitPolicy)
	_, stderr, err := runPolicyValidate(t, f)
	if err == nil {
		t.Fatal("a circuit reading a signal nobody produces validated")
	}
	want := f + `:7:9: arithmetic_combinator: in_ports.lhs: signal "LATENCY" has no producer` + "\n"
	if stderr != want {
		t.Fatalf("stderr = %q, want %q", stderr, want)
	}
}

func TestPolicyGraph(t *testing.T) {
	f := writeFile(t, t.TempDir(), "loop.yaml", circuitPolicy)
	for _, tc := range []struct{ format, want string }{
		{"dot", `c0 -> c1 [label="LIMIT"];`},
		{"mermaid", `c0 -->|LIMIT| c1`},
	} {
		out, _, err := runFluxgate(t, "policy", "graph", f, "--format", tc.format)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, tc.want) || !strings.Contains(out, "LATENCY (no producer)") {
			t.Errorf("%s graph:\n%s\nwant it to contain %q", tc.format, out, tc.want)
		}
	}
	if _, _, err := runFluxgate(t, "policy", "graph", f, "--format", "png"); err == nil {
		t.Error("--format png accepted")
	}
}

// The documentation's flow-control example is
// policies/examples/per-user-limit.yaml, which TestPolicyValidateExamples
// validates.
func TestDocsExampleIsTheExampleFile(t *testing.T) {
	readme, err := os.ReadFile("../../docs/policies.md")
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile("../../policies/examples/per-user-limit.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, body, _ := strings.Cut(string(example), "\n") // the comment line
	if !strings.Contains(string(readme), "```yaml\n"+body+"```") {
		t.Fatal("docs/policies.md's flow-control example and policies/examples/per-user-limit.yaml differ")
	}
}

func TestSimWithPlantAndInputs(t *testing.T) {
	out, _, err := runFluxgate(t, "sim", "../../policies/examples/service-protection.yaml", "--plant", "../../circuit/sim/testdata/checkout-plant.yaml", "-o", "csv")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 181 || !strings.HasPrefix(lines[0], "time_s,") || !strings.Contains(lines[0], "plant.latency_ms") || !strings.Contains(lines[0], "MULTIPLIER") {
		t.Fatalf("sim csv: %d lines, header %q", len(lines), lines[0])
	}
	dir := t.TempDir()
	csv := writeFile(t, dir, "in.csv", "time_s,LATENCY_RAW\n0,20\n1,20\n2,invalid\n3,500\n")
	out, _, err = runFluxgate(t, "sim", "../../policies/examples/service-protection.yaml", "--inputs", csv)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(strings.Split(strings.TrimSpace(out), "\n")); n != 5 {
		t.Fatalf("sim table has %d lines, want a header and 4 ticks:\n%s", n, out)
	}
	if _, _, err := runFluxgate(t, "sim", "../../policies/examples/service-protection.yaml"); err == nil {
		t.Fatal("sim without --inputs or --plant accepted")
	}
}

// TestSimInPath: the service-protection blueprint's default policy (the
// in-path loop) is simulated request by request against a plant at 3×
// overload, and holds the plant's goodput as test/protect measures it on
// a real service (BENCHMARKS.md).
func TestSimInPath(t *testing.T) {
	dir := t.TempDir()
	values := writeFile(t, dir, "v.yaml", "policy_name: sp\nselectors: [{control_point: ingress}]\n")
	if _, stderr, err := runFluxgate(t, "blueprints", "generate", "service-protection", "--values", values, "--output-dir", dir); err != nil {
		t.Fatalf("generate: %v\n%s", err, stderr)
	}
	plant := writeFile(t, dir, "plant.yaml", `capacity: 300
base_latency: 10ms
jitter: 0.1
duration: 40s
load:
  - {at: 0s, rps: 150}
  - {at: 10s, rps: 900}
  - {at: 30s, rps: 150}
`)
	out, _, err := runFluxgate(t, "sim", filepath.Join(dir, "sp.yaml"), "--plant", plant, "-o", "csv")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 41 || !strings.HasPrefix(lines[0], "time_s,limiter.limit,") {
		t.Fatalf("sim csv: %d lines, header %q", len(lines), lines[0])
	}
	col := func(row int, name string) float64 {
		t.Helper()
		for i, c := range strings.Split(lines[0], ",") {
			if c == name {
				v, err := strconv.ParseFloat(strings.Split(lines[row+1], ",")[i], 64)
				if err != nil {
					t.Fatalf("row %d %s: %v", row, name, err)
				}
				return v
			}
		}
		t.Fatalf("no column %s in %q", name, lines[0])
		return 0
	}
	for sec := 0; sec < 10; sec++ {
		if r := col(sec, "plant.rejected_rps"); r != 0 {
			t.Errorf("second %d at half load: %g rejected, want none", sec, r)
		}
	}
	for sec := 11; sec < 30; sec++ {
		if g := col(sec, "plant.goodput_rps"); g < 0.9*300 {
			t.Errorf("second %d of the overload: goodput %g req/s, want >= 90%% of 300", sec, g)
		}
		if p99 := col(sec, "plant.p99_ms"); p99 > 3*11 {
			t.Errorf("second %d of the overload: admitted p99 %g ms, want <= 3 × the no-load p99 (11 ms)", sec, p99)
		}
	}

	// A circuit steering the limiter is not simulated: say so.
	steered := writeFile(t, dir, "steered.yaml", `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: steered}
spec:
  circuit:
    components:
      - flow_control:
          adaptive_concurrency:
            selectors: [{control_point: ingress}]
            in_ports: {latency_objective_ms: {constant_signal: {value: 20}}}
`)
	if _, _, err := runFluxgate(t, "sim", steered, "--plant", plant); err == nil || !strings.Contains(err.Error(), "in_ports") {
		t.Fatalf("sim of a steered limiter: %v, want an error naming in_ports", err)
	}
}

func TestPolicyValidatePrintsLintWarnings(t *testing.T) {
	f := writeFile(t, t.TempDir(), "slo.yaml", `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: slo}
spec:
  resources:
    flux_meters:
      lat: {selectors: [{control_point: ingress}], static_buckets: {buckets: [100, 250, 500]}}
  circuit:
    components:
      - query:
          promql:
            query_string: histogram_quantile(0.95, sum(rate(flux_meter_bucket{flux_meter_name="lat"}[1m])) by (le))
            out_ports: {output: {signal_name: P95}}
      - decider:
          operator: gt
          in_ports: {lhs: {signal_name: P95}, rhs: {constant_signal: {value: 300}}}
          out_ports: {output: {signal_name: SLOW}}
`)
	out, stderr, err := runPolicyValidate(t, f)
	if err != nil {
		t.Fatalf("a warning failed validation: %v\n%s", err, stderr)
	}
	if !strings.HasPrefix(out, "ok: 1 file") || !strings.HasPrefix(stderr, f+":14:9: warning: decider compares P95") {
		t.Fatalf("stdout %q, stderr %q", out, stderr)
	}
}

// TestPolicyConvertAperture converts an Aperture policy: validate says it
// read the Aperture form, convert prints a native policy that validate
// reads as native.
func TestPolicyConvertAperture(t *testing.T) {
	const src = "../../policies/testdata/aperture/aiad.yaml"
	out, stderr, err := runPolicyValidate(t, src)
	if err != nil || out != "ok: 1 file, 1 policy (1 Aperture policy)\n" {
		t.Fatalf("validate: %q %q %v", out, stderr, err)
	}
	native, stderr, err := runFluxgate(t, "policy", "convert", src)
	if err != nil {
		t.Fatalf("convert: %v\n%s", err, stderr)
	}
	for _, want := range []string{"apiVersion: fluxgate.io/v1beta1", "aiad_load_multiplier:", "load_scheduler:", "load_multiplier:"} {
		if !strings.Contains(native, want) {
			t.Errorf("convert output lacks %q:\n%s", want, native)
		}
	}
	f := writeFile(t, t.TempDir(), "native.yaml", native)
	if out, stderr, err := runPolicyValidate(t, f); err != nil || out != "ok: 1 file, 1 policy\n" {
		t.Fatalf("validate of the converted policy: %q %q %v", out, stderr, err)
	}
	_, stderr, err = runFluxgate(t, "policy", "convert", "../../policies/testdata/aperture/unsupported.bad.yaml")
	if err == nil || !strings.Contains(stderr, "unsupported.bad.yaml:10:132: Aperture construct flow_control.load_ramp.parameters.cohort is not supported yet") {
		t.Fatalf("convert of unsupported constructs: %v\n%s", err, stderr)
	}
}
