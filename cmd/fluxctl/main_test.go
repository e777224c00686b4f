package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fluxgate/fluxgate/agent"
	"github.com/fluxgate/fluxgate/api"
)

func startAgent(t *testing.T, token string) (*agent.Agent, string) {
	t.Helper()
	cfg := agent.DefaultConfig()
	cfg.Server.Host = "127.0.0.1"
	cfg.Server.HTTPPort, cfg.Server.GRPCPort = 0, 0
	cfg.Metrics.Enabled = false
	cfg.OTLP.GRPCPort, cfg.OTLP.HTTPPort = 0, 0
	cfg.Policies.Dir = t.TempDir()
	cfg.Admin.Token = token
	a, err := agent.New(agent.Options{Config: cfg, ShutdownTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Stop(context.Background()) })
	return a, "http://" + a.Addr(agent.ListenerHTTP).String()
}

// run executes fluxctl in-process and returns stdout, stderr and the error.
func run(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	cmd := newRootCmd()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), errOut.String(), err
}

const twoPolicies = `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata:
  name: alpha
spec:
  circuit:
    components: []
---
apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata:
  name: beta
  namespace: team-b
spec:
  circuit:
    evaluation_interval: 2s
    components: []
`

// testToken is the admin token of the agents the tests start; run passes
// it with --token unless a test clears it.
const testToken = "tok"

func TestApplyGetDelete(t *testing.T) {
	a, url := startAgent(t, testToken)
	file := filepath.Join(t.TempDir(), "policies.yaml")
	if err := os.WriteFile(file, []byte(twoPolicies), 0o644); err != nil {
		t.Fatal(err)
	}

	out, _, err := run(t, "--agent", url, "--token", testToken, "apply", "-f", file)
	if err != nil {
		t.Fatal(err)
	}
	if out != "Policy default/alpha created\nPolicy team-b/beta created\n" {
		t.Fatalf("apply output = %q", out)
	}
	out, _, err = run(t, "--agent", url, "--token", testToken, "apply", "-f", file)
	if err != nil || !strings.Contains(out, "Policy default/alpha configured") {
		t.Fatalf("re-apply = %q, %v", out, err)
	}
	if n := len(a.Store().Snapshot().Entries); n != 2 {
		t.Fatalf("agent has %d policies", n)
	}

	out, _, err = run(t, "--agent", url, "--token", testToken, "get", "policies")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "NAMESPACE") || !strings.Contains(lines[1], "alpha") || !strings.Contains(lines[2], "beta") {
		t.Fatalf("table = %q", out)
	}

	out, _, err = run(t, "--agent", url, "--token", testToken, "get", "policies", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var list api.PolicyList
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("-o json is not JSON: %v\n%s", err, out)
	}
	if len(list.Policies) != 2 || list.Policies[1].Namespace != "team-b" {
		t.Fatalf("json list = %+v", list)
	}
	out, _, err = run(t, "--agent", url, "--token", testToken, "get", "policies", "-o", "yaml")
	if err != nil || !strings.Contains(out, "name: beta") {
		t.Fatalf("-o yaml = %q, %v", out, err)
	}
	out, _, err = run(t, "--agent", url, "--token", testToken, "get", "policy", "beta", "-n", "team-b")
	if err != nil || !strings.Contains(out, "evaluation_interval: 2s") {
		t.Fatalf("get policy beta = %q, %v", out, err)
	}

	out, _, err = run(t, "--agent", url, "--token", testToken, "delete", "policy", "alpha")
	if err != nil || out != "policy default/alpha deleted\n" {
		t.Fatalf("delete = %q, %v", out, err)
	}
	if _, _, err := run(t, "--agent", url, "--token", testToken, "delete", "policy", "alpha"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("deleting a missing policy: %v", err)
	}
	if n := len(a.Store().Snapshot().Entries); n != 1 {
		t.Fatalf("agent has %d policies after delete", n)
	}
}

func TestApplyNamespaceOverride(t *testing.T) {
	a, url := startAgent(t, testToken)
	file := filepath.Join(t.TempDir(), "p.yaml")
	if err := os.WriteFile(file, []byte(twoPolicies), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, err := run(t, "--agent", url, "--token", testToken, "apply", "-f", file, "--namespace", "production")
	if err != nil {
		t.Fatal(err)
	}
	if out != "Policy production/alpha created\nPolicy production/beta created\n" {
		t.Fatalf("apply --namespace = %q", out)
	}
	for _, e := range a.Store().Snapshot().Entries {
		if e.Key.Namespace != "production" || !strings.Contains(string(e.Source), "namespace: production") {
			t.Fatalf("entry %s source:\n%s", e.Key, e.Source)
		}
	}
}

func TestApplyInvalidFileFailsLocallyWithPositions(t *testing.T) {
	a, url := startAgent(t, testToken)
	file := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(file, []byte("apiVersion: fluxgate.io/v1beta1\nkind: Policy\nmetadata: {name: x}\nspec:\n  circuit:\n    evaluation_interval: soon\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err := run(t, "--agent", url, "--token", testToken, "apply", "-f", file)
	if err == nil || !strings.Contains(err.Error(), file+":6:26:") {
		t.Fatalf("apply of a bad file: %v", err)
	}
	if n := len(a.Store().Snapshot().Entries); n != 0 {
		t.Fatalf("a bad file reached the agent: %d policies", n)
	}
}

func TestToken(t *testing.T) {
	_, url := startAgent(t, "tok")
	t.Setenv("FLUXCTL_TOKEN", "")
	_, _, err := run(t, "--agent", url, "get", "policies")
	if err == nil || !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), "--token or set FLUXCTL_TOKEN") {
		t.Fatalf("without a token: %v", err)
	}
	_, _, err = run(t, "--agent", url, "--token", "wrong", "get", "policies")
	if err == nil || !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), "refused the token") {
		t.Fatalf("with a wrong token: %v", err)
	}
	if _, _, err := run(t, "--agent", url, "--token", "tok", "get", "policies"); err != nil {
		t.Fatalf("with --token: %v", err)
	}
	t.Setenv("FLUXCTL_TOKEN", "tok")
	if _, _, err := run(t, "--agent", url, "get", "policies"); err != nil {
		t.Fatalf("with FLUXCTL_TOKEN: %v", err)
	}
	if _, _, err := run(t, "--agent", url, "--token", "wrong", "get", "policies"); err == nil {
		t.Fatal("--token did not override FLUXCTL_TOKEN")
	}
	// --help shows the flag but never the token.
	out, _, err := run(t, "--help")
	if err != nil || !strings.Contains(out, "--token") || strings.Contains(out, `"tok"`) {
		t.Fatalf("--help: %v\n%s", err, out)
	}
}

// An agent without admin.token answers 403; fluxctl says how to turn the
// admin API on.
func TestAdminDisabled(t *testing.T) {
	a, url := startAgent(t, "")
	file := filepath.Join(t.TempDir(), "p.yaml")
	if err := os.WriteFile(file, []byte(twoPolicies), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"apply", "-f", file}, {"get", "policies"}, {"signals", "alpha"}, {"get", "controlpoints"}} {
		_, _, err := run(t, append([]string{"--agent", url, "--token", "anything"}, args...)...)
		if err == nil || !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "admin API is off") || !strings.Contains(err.Error(), "admin.token") {
			t.Errorf("fluxctl %v against an agent without admin.token: %v", args, err)
		}
	}
	if n := len(a.Store().Snapshot().Entries); n != 0 {
		t.Fatalf("apply reached an agent without admin.token: %d policies", n)
	}
}

func TestUnreachableAgent(t *testing.T) {
	_, _, err := run(t, "--agent", "http://127.0.0.1:1", "get", "policies")
	if err == nil || !strings.Contains(err.Error(), "cannot reach the agent") {
		t.Fatalf("unreachable agent: %v", err)
	}
}

// TestAgentURLWithoutScheme: an --agent without http:// is refused with
// what to write, not with net/url's or net/http's words.
func TestAgentURLWithoutScheme(t *testing.T) {
	for _, agentURL := range []string{"127.0.0.1:8080", "localhost:8080", "http://", "ftp://127.0.0.1:8080"} {
		_, _, err := run(t, "--agent", agentURL, "get", "policies")
		if err == nil || !strings.Contains(err.Error(), "want http://HOST:PORT or https://HOST:PORT") {
			t.Errorf("--agent %s: %v", agentURL, err)
		}
	}
}

func TestExplainSignalsAndControlPoints(t *testing.T) {
	_, url := startAgent(t, testToken)
	policy := `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: limit}
spec:
  circuit:
    evaluation_interval: 50ms
    components:
      - variable:
          constant_output: {value: 2}
          out_ports: {output: {signal_name: CAPACITY}}
      - flow_control:
          rate_limiter:
            selectors:
              - control_point: ingress
                label_matcher: {match_labels: {tier: free}}
            in_ports: {bucket_capacity: {signal_name: CAPACITY}, fill_amount: {constant_signal: {value: 0}}}
            parameters: {interval: 1s, limit_by_label_key: user}
`
	file := filepath.Join(t.TempDir(), "p.yaml")
	if err := os.WriteFile(file, []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := run(t, "--agent", url, "--token", testToken, "apply", "-f", file); err != nil {
		t.Fatal(err)
	}
	// The circuit sets the capacity on its first tick.
	var out string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		var err error
		if out, _, err = run(t, "--agent", url, "--token", testToken, "signals", "limit"); err == nil && strings.Contains(out, "CAPACITY  2") {
			break
		}
	}
	if !strings.Contains(out, "CAPACITY  2      true") {
		t.Fatalf("signals table:\n%s", out)
	}
	out, _, err := run(t, "--agent", url, "--token", testToken, "explain", "--control-point", "ingress", "-l", "tier=free", "-l", "user=alice")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "control point ingress: ACCEPTED") || !strings.Contains(out, "default/limit") || !strings.Contains(out, "alice") {
		t.Fatalf("explain:\n%s", out)
	}
	out, _, err = run(t, "--agent", url, "--token", testToken, "explain", "--control-point", "ingress", "-l", "tier=paid", "-o", "json")
	if err != nil || !strings.Contains(out, `"matched": false`) {
		t.Fatalf("explain json: %v\n%s", err, out)
	}
	if _, _, err := run(t, "--agent", url, "--token", testToken, "explain", "-l", "x=y"); err == nil {
		t.Fatal("explain without a control point accepted")
	}
	// Checks make the control point show up.
	resp, err := http.Post(url+"/v1/check", "application/json", strings.NewReader(`{"control_point":"ingress","labels":{"tier":"free"}}`))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	out, _, err = run(t, "--agent", url, "--token", testToken, "get", "controlpoints")
	if err != nil || !strings.Contains(out, "ingress") || !strings.Contains(out, "tier") {
		t.Fatalf("controlpoints: %v\n%s", err, out)
	}
}
