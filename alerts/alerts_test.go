package alerts

import (
	"bytes"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

// TestRulesValid decodes the rule file strictly with Prometheus' own
// rulefmt (which also parses every expression and template) and checks
// that every alert is labelled and annotated for on-call.
func TestRulesValid(t *testing.T) {
	groups, errs := rulefmt.Parse(Rules(), false, model.UTF8Validation, parser.NewParser(parser.Options{}), slog.New(slog.DiscardHandler))
	for _, err := range errs {
		t.Error(err)
	}
	if len(errs) > 0 {
		t.FailNow()
	}
	runbooks, err := os.ReadFile("runbooks.md")
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^## (\S+)$`).FindAllSubmatch(runbooks, -1) {
		anchors[strings.ToLower(string(m[1]))] = true
	}
	var names []string
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				t.Errorf("group %s: rule %q is not an alert", g.Name, r.Record)
				continue
			}
			names = append(names, r.Alert)
			if s := r.Labels["severity"]; s != "critical" && s != "warning" {
				t.Errorf("%s: severity %q, want critical or warning", r.Alert, s)
			}
			for _, a := range []string{"summary", "description", "runbook_url"} {
				if r.Annotations[a] == "" {
					t.Errorf("%s: no %s annotation", r.Alert, a)
				}
			}
			_, anchor, _ := strings.Cut(r.Annotations["runbook_url"], "/alerts/runbooks.md#")
			if anchor != strings.ToLower(r.Alert) || !anchors[anchor] {
				t.Errorf("%s: runbook_url %q does not point to its section of runbooks.md", r.Alert, r.Annotations["runbook_url"])
			}
			// Every selector is limited to FluxGate's scrape jobs, so
			// that the rules do not fire on other exporters' series.
			expr, err := parser.NewParser(parser.Options{}).ParseExpr(r.Expr)
			if err != nil {
				t.Fatalf("%s: %v", r.Alert, err)
			}
			parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
				if vs, ok := n.(*parser.VectorSelector); ok && !strings.Contains(vs.String(), `job=~"fluxgate.*"`) {
					t.Errorf("%s: selector %s does not match job=~\"fluxgate.*\"", r.Alert, vs)
				}
				return nil
			})
		}
	}
	want := []string{
		"FluxGateAgentDown", "FluxGatePolicyReloadErrors", "FluxGateInvalidSignals",
		"FluxGateFluxMeterHighErrorRate", "FluxGateFluxMeterHighLatency", "FluxGateFailOpen",
		"FluxGateRedisErrors", "FluxGateRedisBreakerOpen", "FluxGateGatewayHighErrorRate",
		"FluxGateGatewayHighLatency", "FluxGateCircuitBreakerOpen",
	}
	for _, w := range want {
		if !slices.Contains(names, w) {
			t.Errorf("alert %s missing", w)
		}
	}
	if len(names) != len(want) {
		t.Errorf("alerts %v, want %v (add new alerts to this list and to runbooks.md)", names, want)
	}
}

// TestRulesRejectsBadFile makes sure the validation above can fail: a
// rule without expression and an unknown key are both reported.
func TestRulesRejectsBadFile(t *testing.T) {
	bad := []byte("groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up ==\n        severity: x\n")
	_, errs := rulefmt.Parse(bad, false, model.UTF8Validation, parser.NewParser(parser.Options{}), slog.New(slog.DiscardHandler))
	if len(errs) == 0 {
		t.Fatal("rulefmt accepted a rule with an unknown key")
	}
}

func promtool(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool is not installed (Debian package prometheus; `make deps` installs it)")
	}
	return bin
}

// TestPromtoolCheckRules runs `promtool check rules` on the file Write
// produces.
func TestPromtoolCheckRules(t *testing.T) {
	bin := promtool(t)
	path, err := Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "check", "rules", path).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("SUCCESS")) {
		t.Errorf("promtool check rules: %s", out)
	}
}

// TestPromtoolTestRules runs testdata/fluxgate-operational.test.yaml with
// `promtool test rules`: agent down, policy reload errors, invalid signals,
// an open circuit breaker and a flux meter error rate fire, their healthy
// neighbours do not.
func TestPromtoolTestRules(t *testing.T) {
	bin := promtool(t)
	dir := t.TempDir()
	if _, err := Write(dir); err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile(filepath.Join("testdata", "fluxgate-operational.test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "fluxgate-operational.test.yaml"), tests, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "test", "rules", "fluxgate-operational.test.yaml")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
}
