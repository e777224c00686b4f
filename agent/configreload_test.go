package agent

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// String is everything logged so far (syncBuffer: auth_test.go).
func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// configMapVolume lays out dir as the kubelet lays out a ConfigMap
// volume, and swap replaces its content the way the kubelet does: a new
// timestamped directory, a new ..data symlink renamed over the old one,
// the old directory removed. fluxgate.yaml is a symlink through ..data.
type configMapVolume struct {
	t   *testing.T
	dir string
	n   int
}

func (v *configMapVolume) swap(content string) {
	v.t.Helper()
	v.n++
	ts := fmt.Sprintf("..2026_12_05_00_00_%02d.%d", v.n, v.n)
	if err := os.Mkdir(filepath.Join(v.dir, ts), 0o755); err != nil {
		v.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(v.dir, ts, "fluxgate.yaml"), []byte(content), 0o644); err != nil {
		v.t.Fatal(err)
	}
	old, _ := os.Readlink(filepath.Join(v.dir, "..data"))
	if err := os.Symlink(ts, filepath.Join(v.dir, "..data_tmp")); err != nil {
		v.t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(v.dir, "..data_tmp"), filepath.Join(v.dir, "..data")); err != nil {
		v.t.Fatal(err)
	}
	if old != "" {
		if err := os.RemoveAll(filepath.Join(v.dir, old)); err != nil {
			v.t.Fatal(err)
		}
		return
	}
	if err := os.Symlink(filepath.Join("..data", "fluxgate.yaml"), filepath.Join(v.dir, "fluxgate.yaml")); err != nil {
		v.t.Fatal(err)
	}
}

func reloadConfigText(policies, level, retention string) string {
	return fmt.Sprintf(`server: {host: 127.0.0.1, http_port: 0, grpc_port: 0}
metrics: {port: 0}
otlp: {grpc_port: 0, http_port: 0}
policies: {dir: %s}
log: {level: %s}
tsdb: {retention: %s}
`, policies, level, retention)
}

// A config file in a ConfigMap volume is reloaded when the kubelet swaps
// the volume's ..data symlink: log.level and policies.dir apply at once,
// other changed keys are logged as needing a restart, and a file that
// does not load changes nothing and is reported with its position.
func TestConfigReloadFromConfigMapSwap(t *testing.T) {
	base := t.TempDir()
	dirA, dirB := filepath.Join(base, "a"), filepath.Join(base, "b")
	for dir, name := range map[string]string{dirA: "from-a", dirB: "from-b"} {
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, "p.yaml"), policyYAML("default", name, "1s"))
	}
	vol := &configMapVolume{t: t, dir: filepath.Join(base, "config")}
	if err := os.Mkdir(vol.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	vol.swap(reloadConfigText(dirA, "info", "2h"))
	path := filepath.Join(vol.dir, "fluxgate.yaml")
	cfg, _, err := LoadConfig(path, []string{})
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	logger, level := NewLoggerLevel(cfg.Log, &logs)
	a, err := New(Options{Config: cfg, Logger: logger, LogLevel: level, ConfigFile: path, Environ: []string{}, ShutdownTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Stop(context.Background()) })
	served := func() string {
		var names []string
		for _, e := range a.Store().Snapshot().Sorted() {
			names = append(names, e.Key.Name)
		}
		return strings.Join(names, ",")
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; log:\n%s", what, logs.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor("the first policies", func() bool { return served() == "from-a" })
	if level.Level() != slog.LevelInfo {
		t.Fatalf("level = %v", level.Level())
	}

	vol.swap(reloadConfigText(dirB, "debug", "3h"))
	waitFor("the new level and directory", func() bool { return level.Level() == slog.LevelDebug && served() == "from-b" })
	waitFor("the restart notice", func() bool {
		l := logs.String()
		return strings.Contains(l, "apply only at restart") && strings.Contains(l, `"keys":["tsdb.retention"]`)
	})
	if a.Store().Dir() != dirB {
		t.Fatalf("store dir = %s", a.Store().Dir())
	}

	// A policy added to the new directory is picked up: Run watches it.
	writeFile(t, filepath.Join(dirB, "q.yaml"), policyYAML("default", "late", "1s"))
	waitFor("a policy written to the new directory", func() bool { return served() == "from-b,late" })

	// A file that does not load changes nothing.
	vol.swap(reloadConfigText(dirA, "error", "3h") + "nosuch: 1\n")
	waitFor("the refused file in the log", func() bool {
		return strings.Contains(logs.String(), "config file change refused") && strings.Contains(logs.String(), "fluxgate.yaml:7:1")
	})
	if level.Level() != slog.LevelDebug || served() != "from-b,late" {
		t.Fatalf("a refused file changed the agent: level %v, policies %s", level.Level(), served())
	}
	// A directory that does not exist is refused; the rest applies.
	vol.swap(reloadConfigText(filepath.Join(base, "missing"), "warn", "3h"))
	waitFor("the new level", func() bool { return level.Level() == slog.LevelWarn })
	if served() != "from-b,late" || !strings.Contains(logs.String(), "policies.dir change refused") {
		t.Fatalf("a missing policies.dir was applied: %s", served())
	}
}

// A config file that is gone (deleted, or between an editor's rename and
// its write) leaves the running configuration as it is: it is not read as
// the embedded defaults, which would switch policies.dir and log.level
// back to theirs.
func TestConfigReloadOfMissingFileKeepsConfig(t *testing.T) {
	dir := t.TempDir()
	policiesDir := filepath.Join(dir, "policies")
	if err := os.Mkdir(policiesDir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(policiesDir, "p.yaml"), policyYAML("default", "kept", "1s"))
	path := filepath.Join(dir, "fluxgate.yaml")
	writeFile(t, path, reloadConfigText(policiesDir, "debug", "2h"))
	cfg, _, err := LoadConfig(path, []string{})
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	logger, level := NewLoggerLevel(cfg.Log, &logs)
	a, err := New(Options{Config: cfg, Logger: logger, LogLevel: level, ConfigFile: path, Environ: []string{}, ShutdownTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Stop(context.Background()) })
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	applied, restart := a.ReloadConfig()
	if len(applied) != 0 || len(restart) != 0 || level.Level() != slog.LevelDebug || a.Store().Dir() != policiesDir {
		t.Fatalf("a missing file changed the agent: applied %v, restart %v, level %v, policies.dir %s", applied, restart, level.Level(), a.Store().Dir())
	}
	a.ReloadConfig() // the periodic re-read: logged once, not every time
	if n := strings.Count(logs.String(), "config file not found"); n != 1 {
		t.Fatalf("the missing file was logged %d times:\n%s", n, logs.String())
	}
	// The file back as it was: nothing changed.
	writeFile(t, path, reloadConfigText(policiesDir, "debug", "2h"))
	if applied, restart := a.ReloadConfig(); len(applied) != 0 || len(restart) != 0 {
		t.Fatalf("the same file again: applied %v, restart %v", applied, restart)
	}
}
