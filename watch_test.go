package fluxgate

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fluxgate/fluxgate/agent"
)

// syncBuffer is a bytes.Buffer safe for the agent's goroutines to log into.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func policyYAML(name string) string {
	return fmt.Sprintf(`apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata:
  name: %s
  namespace: default
spec:
  circuit:
    evaluation_interval: 1s
    components: []
`, name)
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
	writeFile(v.t, filepath.Join(v.dir, ts, "fluxgate.yaml"), content)
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

// newWatchedAgent builds (does not start) an agent from the file at path
// and a Watcher of the file for it, both logging to logs.
func newWatchedAgent(t *testing.T, path string, logs *syncBuffer) (*agent.Agent, *slog.LevelVar, *Watcher) {
	t.Helper()
	f, _, err := Load(path, []string{})
	if err != nil {
		t.Fatal(err)
	}
	logger, level := agent.NewLoggerLevel(f.Log, logs)
	a, err := agent.New(agent.Options{Config: f.Config, Logger: logger, LogLevel: level, ShutdownTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Stop(context.Background()) })
	return a, level, NewWatcher(WatcherOptions{Path: path, Environ: []string{}, Logger: logger, Agent: a})
}

func served(a *agent.Agent) string {
	var names []string
	for _, e := range a.Store().Snapshot().Sorted() {
		names = append(names, e.Key.Name)
	}
	return strings.Join(names, ",")
}

// A config file in a ConfigMap volume is reloaded when the kubelet swaps
// the volume's ..data symlink: log.level and policies.dir apply at once,
// other changed keys are logged as needing a restart, and a file that
// does not load changes nothing and is reported with its position.
func TestWatcherFollowsConfigMapSwap(t *testing.T) {
	base := t.TempDir()
	dirA, dirB := filepath.Join(base, "a"), filepath.Join(base, "b")
	for dir, name := range map[string]string{dirA: "from-a", dirB: "from-b"} {
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, "p.yaml"), policyYAML(name))
	}
	vol := &configMapVolume{t: t, dir: filepath.Join(base, "config")}
	if err := os.Mkdir(vol.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	vol.swap(reloadConfigText(dirA, "info", "2h"))
	path := filepath.Join(vol.dir, "fluxgate.yaml")
	var logs syncBuffer
	a, level, w := newWatchedAgent(t, path, &logs)
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("watcher: %v", err)
		}
	})
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
	waitFor("the first policies", func() bool { return served(a) == "from-a" })
	if level.Level() != slog.LevelInfo {
		t.Fatalf("level = %v", level.Level())
	}

	vol.swap(reloadConfigText(dirB, "debug", "3h"))
	waitFor("the new level and directory", func() bool { return level.Level() == slog.LevelDebug && served(a) == "from-b" })
	waitFor("the restart notice", func() bool {
		l := logs.String()
		return strings.Contains(l, "apply only at restart") && strings.Contains(l, `"keys":["tsdb.retention"]`)
	})
	if a.Store().Dir() != dirB {
		t.Fatalf("store dir = %s", a.Store().Dir())
	}

	// A policy added to the new directory is picked up: the store watches it.
	writeFile(t, filepath.Join(dirB, "q.yaml"), policyYAML("late"))
	waitFor("a policy written to the new directory", func() bool { return served(a) == "from-b,late" })

	// A file that does not load changes nothing.
	vol.swap(reloadConfigText(dirA, "error", "3h") + "nosuch: 1\n")
	waitFor("the refused file in the log", func() bool {
		return strings.Contains(logs.String(), "config file change refused") && strings.Contains(logs.String(), "fluxgate.yaml:7:1")
	})
	if level.Level() != slog.LevelDebug || served(a) != "from-b,late" {
		t.Fatalf("a refused file changed the agent: level %v, policies %s", level.Level(), served(a))
	}
	// A directory that does not exist is refused; the rest applies.
	vol.swap(reloadConfigText(filepath.Join(base, "missing"), "warn", "3h"))
	waitFor("the new level", func() bool { return level.Level() == slog.LevelWarn })
	if served(a) != "from-b,late" || !strings.Contains(logs.String(), "policies.dir change refused") {
		t.Fatalf("a missing policies.dir was applied: %s", served(a))
	}
}

// A config file that is gone (deleted, or between an editor's rename and
// its write) leaves the running configuration as it is: it is not read as
// the embedded defaults, which would switch policies.dir and log.level
// back to theirs. A half-written one does not load and changes nothing.
func TestWatcherKeepsConfigOfMissingOrHalfWrittenFile(t *testing.T) {
	dir := t.TempDir()
	policiesDir := filepath.Join(dir, "policies")
	if err := os.Mkdir(policiesDir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(policiesDir, "p.yaml"), policyYAML("kept"))
	path := filepath.Join(dir, "fluxgate.yaml")
	writeFile(t, path, reloadConfigText(policiesDir, "debug", "2h"))
	var logs syncBuffer
	a, level, w := newWatchedAgent(t, path, &logs)
	unchanged := func(when string) {
		t.Helper()
		if level.Level() != slog.LevelDebug || a.Store().Dir() != policiesDir || strings.Contains(logs.String(), "restart the agent") {
			t.Fatalf("%s changed the agent: level %v, policies.dir %s; log:\n%s", when, level.Level(), a.Store().Dir(), logs.String())
		}
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := w.Reload(); err != nil {
		t.Fatal(err)
	}
	unchanged("a missing file")
	_ = w.Reload() // the periodic re-read: logged once, not every time
	if n := strings.Count(logs.String(), "config file not found"); n != 1 {
		t.Fatalf("the missing file was logged %d times:\n%s", n, logs.String())
	}
	// Half written: cut inside a flow mapping.
	full := reloadConfigText(policiesDir, "info", "3h")
	writeFile(t, path, full[:strings.Index(full, "log:")+len("log: {lev")])
	if err := w.Reload(); err == nil || !strings.Contains(err.Error(), path+":") {
		t.Fatalf("a half-written file: %v, want an error with its position", err)
	}
	unchanged("a half-written file")
	// The file back as it was: nothing changed.
	writeFile(t, path, reloadConfigText(policiesDir, "debug", "2h"))
	if err := w.Reload(); err != nil {
		t.Fatal(err)
	}
	unchanged("the same file again")
}

// An agent started without a config file runs on the embedded defaults:
// the watcher says nothing about the absent file, loads it when it
// appears, and warns once it has come and gone.
func TestWatcherQuietWithoutAFileUntilOneCameAndWent(t *testing.T) {
	dir := t.TempDir()
	policiesDir := filepath.Join(dir, "policies")
	if err := os.Mkdir(policiesDir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "fluxgate.yaml")
	var logs syncBuffer
	a, level, w := newWatchedAgent(t, path, &logs)
	for range 2 {
		if err := w.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	if strings.Contains(logs.String(), "config file not found") {
		t.Fatalf("an agent on its embedded defaults warned about the absent file:\n%s", logs.String())
	}
	writeFile(t, path, reloadConfigText(policiesDir, "debug", "2h"))
	if err := w.Reload(); err != nil {
		t.Fatal(err)
	}
	if level.Level() != slog.LevelDebug || a.Store().Dir() != policiesDir {
		t.Fatalf("the file that appeared was not applied: level %v, policies.dir %s", level.Level(), a.Store().Dir())
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := w.Reload(); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(logs.String(), "config file not found"); n != 1 {
		t.Fatalf("the file that went was logged %d times, want once:\n%s", n, logs.String())
	}
}
