package fluxgate

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// update rewrites golden output, here docs/configuration.md's reference.
var update = flag.Bool("update", false, "rewrite golden files (docs/configuration.md's config reference)")

// The file holds the agent's sections and the gateway's side by side; a
// key of either is loaded, overridden and validated.
func TestLoadJoinsAgentAndGatewaySections(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fluxgate.yaml")
	doc := "metrics: {port: 9191}\ngateway:\n  listen: 127.0.0.1:9000\n  upstreams: [{name: app, targets: [{address: 127.0.0.1:1}]}]\n  routes: [{id: app, upstream: app}]\n"
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	f, warnings, err := Load(path, []string{"FLUXGATE_GATEWAY_H2C=true", "FLUXGATE_LOG_LEVEL=warn"})
	if err != nil || len(warnings) > 0 {
		t.Fatalf("load: %v (warnings %q)", err, warnings)
	}
	if f.Metrics.Port != 9191 || f.Log.Level != "warn" || f.Server.HTTPPort != 8080 {
		t.Errorf("agent part = %+v", f.Config)
	}
	if f.Gateway.Listen != "127.0.0.1:9000" || !f.Gateway.H2C || len(f.Gateway.Routes) != 1 || f.Gateway.Routes[0].Upstream != "app" {
		t.Errorf("gateway part = %+v", f.Gateway)
	}
	if d, _, err := Load(filepath.Join(t.TempDir(), "none.yaml"), nil); err != nil || d.Gateway.Listen != "127.0.0.1:8000" || d.Server.HTTPPort != 8080 {
		t.Errorf("defaults: %+v, %v", d, err)
	}
}

// Problems in either part are reported together, with positions, and
// an unknown section lists the agent's and the gateway's.
func TestLoadReportsBothParts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fluxgate.yaml")
	doc := "metrics: {port: x}\ngateway: {listen: nonsense}\npolices: {}\n"
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err := Load(path, nil)
	want := []string{
		path + `:1:17: metrics.port: expected int, got string "x"`,
		path + `:2:19: gateway.listen: must be host:port, got "nonsense"`,
		path + `:3:1: unknown field "polices" in the document; valid fields: admin, agent, alertmanager, check, gateway, kubernetes, limits, log, metrics, otlp, policies, prometheus, redis, server, tls, tsdb`,
	}
	if err == nil || err.Error() != strings.Join(want, "\n") {
		t.Errorf("errors:\n%v\nwant:\n%s", err, strings.Join(want, "\n"))
	}
	if _, err := Set(nil, "metrix.port", "1"); err == nil || !strings.HasSuffix(err.Error(), "valid sections: server, metrics, otlp, policies, admin, check, tls, log, agent, tsdb, prometheus, alertmanager, redis, limits, kubernetes, gateway") {
		t.Errorf("set metrix.port: %v", err)
	}
}

// config set refuses what the loader would refuse: the edited file is
// decoded and validated as LoadConfig does, so cross-field and section
// rules (gateway.listen's host:port) apply, not only the key's own tag.
func TestSetConfigValueValidatesLikeTheLoader(t *testing.T) {
	for _, tc := range []struct{ file, key, value, want string }{
		{"", "gateway.listen", "not-an-addr", `must be host:port, got "not-an-addr"`},
		{"gateway:\n  listen: 127.0.0.1:8000\n", "gateway.listen", "8000", `must be host:port, got "8000"`},
		// A file the loader refuses is not edited into another one it refuses.
		{"custom: {a: 1}\n", "log.level", "warn", `config:1:1: unknown field "custom"`},
	} {
		out, err := Set([]byte(tc.file), tc.key, tc.value)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("set %s %q: err = %v (file %q), want it to contain %q", tc.key, tc.value, err, out, tc.want)
		}
	}
	// What the loader accepts is accepted.
	if _, err := Set(nil, "gateway.listen", "127.0.0.1:9000"); err != nil {
		t.Errorf("set gateway.listen 127.0.0.1:9000: %v", err)
	}
}

const (
	refStart = "<!-- config-reference:start -->"
	refEnd   = "<!-- config-reference:end -->"
)

// configReferenceSection is what the README holds between its markers.
func configReferenceSection() string {
	return "\n## Configuration reference\n\n" +
		"<!-- Generated from fluxgate.Keys by `go test . -run TestDocsConfigReference -update`; do not edit. -->\n\n" +
		"`fluxgate agent` reads `fluxgate.yaml` (or `--config PATH`). Every key has a default, so the file\n" +
		"only needs the keys you change, and a missing file means all defaults. Precedence is\n" +
		"defaults < file < environment: `FLUXGATE_<SECTION>_<KEY>` (the env var column) overrides the file,\n" +
		"and `FLUXGATE_DEBUG=true` sets `log.level` to `debug` over both. Unknown keys in the file\n" +
		"and values of the wrong type are errors with `file:line:col`; an unknown `FLUXGATE_*` variable is\n" +
		"a warning. A port of `0` picks a free port. Edit the file with\n" +
		"`fluxgate config set KEY VALUE` (comments are kept), read the effective value with\n" +
		"`fluxgate config get KEY`, and print the whole effective config with `fluxgate config view`.\n" +
		"A running agent reloads the file when it changes (an edit, or a Kubernetes ConfigMap volume's\n" +
		"`..data` swap): `log.level` and `policies.dir` apply at once, `fluxgate gateway` applies the\n" +
		"`gateway` section, any other changed key is logged once as needing a restart, and a file that\n" +
		"does not load is logged with its `file:line:col` errors and changes nothing.\n\n" +
		Reference() + "\n"
}

func TestDocsConfigReference(t *testing.T) {
	const readme = "docs/configuration.md"
	data, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	start := strings.Index(text, refStart)
	end := strings.Index(text, refEnd)
	if start < 0 || end < start {
		t.Fatalf("%s: markers %s … %s not found in order", readme, refStart, refEnd)
	}
	start += len(refStart)
	want := configReferenceSection()
	if text[start:end] == want {
		return
	}
	if !*update {
		t.Fatalf("%s: the configuration reference is out of date; run\n\tgo test . -run TestDocsConfigReference -update\ngot:\n%s\nwant:\n%s", readme, text[start:end], want)
	}
	fi, err := os.Stat(readme)
	if err != nil {
		t.Fatal(err)
	}
	out := text[:start] + want + text[end:]
	if err := os.WriteFile(readme, []byte(out), fi.Mode().Perm()); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: configuration reference rewritten", readme)
}

// TestDocsGatewayExampleLoads: the first example of docs/gateway.md is a
// whole config a reader pastes into fluxgate.yaml; it must load (its
// canary once named an upstream the example did not define).
func TestDocsGatewayExampleLoads(t *testing.T) {
	data, err := os.ReadFile("docs/gateway.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(data), "```yaml\n")
	block, _, closed := strings.Cut(rest, "```")
	if !ok || !closed || !strings.HasPrefix(block, "gateway:") {
		t.Fatalf("docs/gateway.md: no yaml block starting with gateway: found")
	}
	path := filepath.Join(t.TempDir(), "fluxgate.yaml")
	if err := os.WriteFile(path, []byte(block), 0o600); err != nil {
		t.Fatal(err)
	}
	f, _, err := Load(path, nil)
	if err != nil {
		t.Fatalf("the docs/gateway.md example does not load:\n%v", err)
	}
	if len(f.Gateway.Routes) == 0 || f.Gateway.Routes[0].Canary == nil {
		t.Errorf("example loaded without its route's canary: %+v", f.Gateway.Routes)
	}
}
