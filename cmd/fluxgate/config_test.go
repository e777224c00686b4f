package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runFluxgate runs the root command in-process with args and returns its
// stdout, stderr and error.
func runFluxgate(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	root := newRootCmd()
	var stdout, stderr bytes.Buffer
	root.SetArgs(args)
	root.SetOut(&stdout)
	root.SetErr(&stderr)
	err := root.Execute()
	return stdout.String(), stderr.String(), err
}

func TestConfigSetGet(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fluxgate.yaml")
	for _, kv := range [][2]string{
		{"metrics.enabled", "true"},
		{"metrics.port", "9090"},
		{"metrics.path", "/metrics"},
	} {
		if _, stderr, err := runFluxgate(t, "--config", path, "config", "set", kv[0], kv[1]); err != nil {
			t.Fatalf("config set %s %s: %v (stderr %q)", kv[0], kv[1], err, stderr)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := "metrics:\n  enabled: true\n  port: 9090\n  path: /metrics\n"; string(data) != want {
		t.Errorf("file:\n%s\nwant:\n%s", data, want)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != newConfigFileMode {
		t.Errorf("new file mode = %v, want %v", fi.Mode().Perm(), newConfigFileMode)
	}

	stdout, _, err := runFluxgate(t, "--config", path, "config", "get", "metrics.port")
	if err != nil || stdout != "9090\n" {
		t.Errorf("config get metrics.port = %q, %v; want 9090", stdout, err)
	}

	// The environment wins over the file.
	t.Setenv("FLUXGATE_METRICS_PORT", "9191")
	stdout, _, err = runFluxgate(t, "--config", path, "config", "get", "metrics.port")
	if err != nil || stdout != "9191\n" {
		t.Errorf("with FLUXGATE_METRICS_PORT, config get metrics.port = %q, %v; want 9191", stdout, err)
	}
	_, stderr, err := runFluxgate(t, "--config", path, "config", "set", "metrics.port", "9292")
	if err != nil || !strings.Contains(stderr, "FLUXGATE_METRICS_PORT is set in the environment") {
		t.Errorf("set under an env override: err %v, stderr %q", err, stderr)
	}
}

func TestConfigSetKeepsModeAndComments(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fluxgate.yaml")
	const in = "# mine\nlog:\n  level: info # quiet\n"
	if err := os.WriteFile(path, []byte(in), 0o640); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runFluxgate(t, "--config", path, "config", "set", "log.level", "warn"); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	if want := "# mine\nlog:\n  level: warn # quiet\n"; string(data) != want {
		t.Errorf("file:\n%s\nwant:\n%s", data, want)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("mode = %v, want 0640", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the config file", len(entries))
	}
}

func TestConfigRefusals(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fluxgate.yaml")
	const in = "metrics:\n  port: 9090\n"
	if err := os.WriteFile(path, []byte(in), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"config", "set", "metrics.prot", "1"}, `unknown key "metrics.prot"; valid keys: metrics.enabled, metrics.port, metrics.path, metrics.tls`},
		{[]string{"config", "set", "metrics.port", "abc"}, `metrics.port: expected int, got "abc"`},
		{[]string{"config", "set", "metrics.port", "70000"}, `metrics.port: must be 0..65535, got 70000`},
		{[]string{"config", "get", "metrics.prot"}, `unknown key "metrics.prot"`},
		{[]string{"config", "set", "metrics.port"}, `accepts 2 arg(s), received 1`},
		{[]string{"config", "set", "metrics.port", "-1"}, `a VALUE that starts with - goes after --: fluxgate config set KEY -- VALUE`},
		{[]string{"config", "set", "metrics.port", "--", "-1"}, `metrics.port: must be 0..65535, got -1`},
		// What only the loader refuses is positioned in this file, not in
		// one named "config".
		{[]string{"config", "set", "gateway.listen", "nonsense"}, path + `:4:11: gateway.listen: must be host:port, got "nonsense"`},
	} {
		_, _, err := runFluxgate(t, append([]string{"--config", path}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err = %v, want it to contain %q", tc.args, err, tc.want)
			continue
		}
		if exitCode(err) == 0 {
			t.Errorf("%v: exit code 0", tc.args)
		}
	}
	if data, _ := os.ReadFile(path); string(data) != in {
		t.Errorf("refused sets changed the file:\n%s", data)
	}
}

func TestConfigView(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fluxgate.yaml")
	if err := os.WriteFile(path, []byte("log:\n  format: text\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, _, err := runFluxgate(t, "--config", path, "config", "view")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"server:\n  host: 0.0.0.0\n  http_port: 8080\n  grpc_port: 8081\n",
		"metrics:\n  enabled: true\n  port: 9090\n  path: /metrics\n",
		"admin:\n  token: \"\"\n",
		"log:\n  level: info\n  format: text\n",
		"agent:\n  agent_group: default\n",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("config view lacks %q:\n%s", want, stdout)
		}
	}

	// A bad file is an error with its position.
	if err := os.WriteFile(path, []byte("log:\n  levle: info\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err = runFluxgate(t, "--config", path, "config", "view")
	if err == nil || !strings.Contains(err.Error(), path+":2:3: unknown field \"levle\"") {
		t.Errorf("bad file: err = %v", err)
	}
}

func TestConfigKeysTable(t *testing.T) {
	stdout, _, err := runFluxgate(t, "config", "keys")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) < 14 || !strings.HasPrefix(lines[0], "KEY") {
		t.Fatalf("config keys:\n%s", stdout)
	}
	var row string
	for _, l := range lines {
		if strings.HasPrefix(l, "metrics.port ") {
			row = l
		}
	}
	if f := strings.Fields(row); len(f) < 4 || f[1] != "int" || f[2] != "9090" || f[3] != "FLUXGATE_METRICS_PORT" {
		t.Errorf("metrics.port row = %q", row)
	}
}

// config view prints secrets redacted, with their length; config get
// prints one when asked by name. Unset secrets stay "".
func TestConfigViewRedactsSecrets(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fluxgate.yaml")
	const file = "admin: {token: admin-0123456789abcdef0123456789}\n" +
		"check: {token: check-secret}\n" +
		"redis: {address: 127.0.0.1:6379, password: hunter2}\n"
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, _, err := runFluxgate(t, "--config", path, "config", "view")
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"admin-0123456789abcdef0123456789", "check-secret", "hunter2"} {
		if strings.Contains(stdout, secret) {
			t.Errorf("config view prints the secret %q:\n%s", secret, stdout)
		}
	}
	for _, want := range []string{
		"admin:\n  token: '<redacted: 32 chars>'\n",
		"check:\n  token: '<redacted: 12 chars>'\n",
		"password: '<redacted: 7 chars>'\n",
		"otlp:\n  grpc_port: 4317\n  http_port: 4318\n  token: \"\"\n",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("config view lacks %q:\n%s", want, stdout)
		}
	}
	got, _, err := runFluxgate(t, "--config", path, "config", "get", "admin.token")
	if err != nil || got != "admin-0123456789abcdef0123456789\n" {
		t.Errorf("config get admin.token = %q, %v; want the token", got, err)
	}
}
