package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runMainEnv makes the test binary act as the fluxgate binary, so tests can
// run the real command as a child process and signal it.
const runMainEnv = "FG_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// logLine is the part of the agent's JSON log lines the tests read.
type logLine struct {
	Msg      string `json:"msg"`
	Level    string `json:"level"`
	Listener string `json:"listener"`
	Addr     string `json:"addr"`
}

// startBinary runs `fluxgate args...` in dir and returns the process and a
// channel of its decoded log lines.
func startBinary(t *testing.T, dir string, env []string, args ...string) (*exec.Cmd, <-chan logLine) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), runMainEnv+"=1"), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	lines := make(chan logLine, 100)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var l logLine
			if json.Unmarshal(sc.Bytes(), &l) != nil {
				l.Msg = sc.Text()
			}
			lines <- l
		}
	}()
	return cmd, lines
}

func TestAgentRunsOnDefaultsAndStopsOnSIGTERM(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "policies"), 0o755); err != nil {
		t.Fatal(err)
	}
	policy := "apiVersion: fluxgate.io/v1beta1\nkind: Policy\nmetadata: {name: demo}\nspec:\n  circuit:\n    components: []\n"
	if err := os.WriteFile(filepath.Join(dir, "policies", "demo.yaml"), []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	// No config file: embedded defaults, with ports moved to free ones by
	// the environment so the test never collides with a real agent.
	cmd, lines := startBinary(t, dir, []string{
		"FLUXGATE_SERVER_HOST=127.0.0.1",
		"FLUXGATE_SERVER_HTTP_PORT=0",
		"FLUXGATE_SERVER_GRPC_PORT=0",
		"FLUXGATE_METRICS_PORT=0",
		"FLUXGATE_OTLP_GRPC_PORT=0",
		"FLUXGATE_OTLP_HTTP_PORT=0",
	}, "agent")

	addrs := map[string]string{}
	deadline := time.After(20 * time.Second)
	for addrs["http"] == "" || addrs["metrics"] == "" || addrs["grpc"] == "" || addrs["otlp_grpc"] == "" || addrs["otlp_http"] == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("agent exited before listening")
			}
			if l.Msg == "listening" {
				addrs[l.Listener] = l.Addr
			}
		case <-deadline:
			t.Fatalf("agent did not log its listeners; got %v", addrs)
		}
	}
	waitReady(t, "http://"+addrs["http"]+"/readyz")
	resp, err := http.Get("http://" + addrs["http"] + "/v1/monitoring/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if !strings.Contains(string(body), `"policies_loaded": 1`) {
		t.Fatalf("policies from ./policies not loaded: %s", body)
	}
	// On defaults admin.token is empty: the admin API is off.
	resp, err = http.Get("http://" + addrs["http"] + "/v1/policies")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "admin_disabled") {
		t.Fatalf("GET /v1/policies on defaults = %d %s, want 403 admin_disabled", resp.StatusCode, body)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var sawStop, sawAdminOff bool
	for l := range lines {
		switch l.Msg {
		case "agent stopped":
			sawStop = true
		case "admin API disabled: admin.token is empty":
			sawAdminOff = true
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("agent exit after SIGTERM: %v, want exit code 0", err)
	}
	if !sawStop {
		t.Error(`no "agent stopped" log line`)
	}
	if !sawAdminOff {
		t.Error(`no "admin API disabled: admin.token is empty" log line`)
	}
}

// TestAgentWarnsOfMissingConfig: a --config that names no file (a typo)
// is a warning, not a silent run on defaults; without --config the
// missing ./fluxgate.yaml is an info line.
func TestAgentWarnsOfMissingConfig(t *testing.T) {
	env := []string{
		"FLUXGATE_SERVER_HOST=127.0.0.1", "FLUXGATE_SERVER_HTTP_PORT=0", "FLUXGATE_SERVER_GRPC_PORT=0",
		"FLUXGATE_METRICS_PORT=0", "FLUXGATE_OTLP_GRPC_PORT=0", "FLUXGATE_OTLP_HTTP_PORT=0",
	}
	for _, tc := range []struct {
		args      []string
		wantLevel string
	}{
		{[]string{"--config", "fluxgat.yaml", "agent"}, "WARN"},
		{[]string{"agent"}, "INFO"},
	} {
		cmd, lines := startBinary(t, t.TempDir(), env, tc.args...)
		var level string
		for l := range lines {
			if l.Msg == "config file does not exist: running on defaults until it appears" {
				level = l.Level
			}
			if l.Msg == "agent started" {
				break
			}
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		for range lines { // drain until the agent has stopped
		}
		_ = cmd.Wait()
		if level != tc.wantLevel {
			t.Errorf("fluxgate %s: config file note at level %q, want %q", strings.Join(tc.args, " "), level, tc.wantLevel)
		}
	}
}

func TestAgentRefusesBadConfig(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "fluxgate.yaml"), []byte("metrics:\n  prot: 9090\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "agent")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("agent started with a bad config: %s", out)
	}
	if !strings.Contains(string(out), "fluxgate.yaml:2:3:") {
		t.Fatalf("error lacks the position: %s", out)
	}
}

func waitReady(t *testing.T, url string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		resp, err := http.Get(url)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
	}
	t.Fatalf("%s never answered 200", url)
}
