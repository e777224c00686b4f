package agent

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
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

// ApplyConfig applies log.level and policies.dir at once, names every
// other changed key as needing a restart (once, not at every call), and
// refuses a policies.dir that does not exist while applying the rest.
// The watcher that reads the file and calls it is package fluxgate's
// (watch_test.go there runs it on a ConfigMap volume).
func TestApplyConfig(t *testing.T) {
	base := t.TempDir()
	dirA, dirB := filepath.Join(base, "a"), filepath.Join(base, "b")
	for dir, name := range map[string]string{dirA: "from-a", dirB: "from-b"} {
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, "p.yaml"), policyYAML("default", name, "1s"))
	}
	cfg := testConfig(dirA)
	cfg.Log.Level = "info"
	var logs syncBuffer
	logger, level := NewLoggerLevel(cfg.Log, &logs)
	a, err := New(Options{Config: cfg, Logger: logger, LogLevel: level, ShutdownTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Stop(context.Background()) })
	if err := a.store.Reload(); err != nil {
		t.Fatal(err)
	}
	served := func() string {
		var names []string
		for _, e := range a.Store().Snapshot().Sorted() {
			names = append(names, e.Key.Name)
		}
		return strings.Join(names, ",")
	}
	if served() != "from-a" {
		t.Fatalf("policies %q", served())
	}

	next := cfg
	next.Policies.Dir = dirB
	next.Log.Level = "debug"
	next.TSDB.Retention = 3 * time.Hour
	applied, restart := a.ApplyConfig(next)
	if !slices.Equal(applied, []string{"policies.dir", "log.level"}) || !slices.Equal(restart, []string{"tsdb.retention"}) {
		t.Fatalf("applied %v, restart %v", applied, restart)
	}
	if level.Level() != slog.LevelDebug || served() != "from-b" || a.Store().Dir() != dirB {
		t.Fatalf("level %v, policies %q from %s", level.Level(), served(), a.Store().Dir())
	}
	if !strings.Contains(logs.String(), "apply only at restart") || !strings.Contains(logs.String(), `"keys":["tsdb.retention"]`) {
		t.Fatalf("no restart notice:\n%s", logs.String())
	}
	// The same config again: nothing to apply, no second notice.
	if applied, restart := a.ApplyConfig(next); len(applied) != 0 || len(restart) != 0 {
		t.Fatalf("the same config again: applied %v, restart %v", applied, restart)
	}
	// A directory that does not exist is refused; the rest applies.
	bad := next
	bad.Policies.Dir = filepath.Join(base, "missing")
	bad.Log.Level = "warn"
	applied, _ = a.ApplyConfig(bad)
	if !slices.Equal(applied, []string{"log.level"}) || level.Level() != slog.LevelWarn || served() != "from-b" ||
		!strings.Contains(logs.String(), "policies.dir change refused") {
		t.Fatalf("applied %v, level %v, policies %q", applied, level.Level(), served())
	}
}
