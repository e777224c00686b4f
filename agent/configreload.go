package agent

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"time"

	"github.com/fsnotify/fsnotify"
)

// ConfigFile is the path of the agent's fluxgate.yaml. Supplied to Module
// (optional), the agent reloads the file when it changes (Options.ConfigFile).
type ConfigFile string

// configResync re-reads the config file even without an event, as a
// safety net for file systems that drop events.
const configResync = 10 * time.Second

// Keys a running agent applies from a changed config file; any other
// changed key of Config is logged as needing a restart. Sections of the
// file that are not the agent's (the gateway's) are not in Config.
const (
	keyLogLevel    = "log.level"
	keyPoliciesDir = "policies.dir"
)

// watchConfig reloads Options.ConfigFile whenever it changes, until ctx
// is done. It watches the file's directory, not the file: editors and
// ConfigMap volumes replace it by rename (a ConfigMap volume swaps its
// ..data symlink to a new timestamped directory, and fluxgate.yaml is a
// symlink through ..data), which a watch on the file itself would lose.
func (a *Agent) watchConfig(ctx context.Context) error {
	path := filepath.Clean(a.configFile)
	w, err := fsnotify.NewWatcher()
	if err != nil {
		a.logger.Error("config file not watched; changes need a restart", "file", path, "err", err)
		return nil
	}
	defer func() { _ = w.Close() }()
	if err := w.Add(filepath.Dir(path)); err != nil {
		a.logger.Error("config file not watched; changes need a restart", "file", path, "err", err)
		return nil
	}
	a.ReloadConfig() // changes made before the watch was in place have no event
	resync := time.NewTicker(configResync)
	defer resync.Stop()
	var debounce <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			name := filepath.Clean(ev.Name)
			if ev.Op == fsnotify.Chmod || (name != path && filepath.Base(name) != "..data") {
				continue
			}
			if debounce == nil {
				debounce = time.After(50 * time.Millisecond)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			a.logger.Warn("config file watch error", "file", path, "err", err)
		case <-debounce:
			debounce = nil
			a.ReloadConfig()
		case <-resync.C:
			a.ReloadConfig()
		}
	}
}

// ReloadConfig reads Options.ConfigFile (with the environment overrides,
// as at start) and applies what a running agent can: log.level (when
// Options.LogLevel is set) and policies.dir. It logs every other key that
// changed since the file was last read as needing a restart, once. A file
// that does not load is logged with its file:line:col errors and changes
// nothing, and so does a missing file. It returns the keys it applied and
// those that need a restart.
func (a *Agent) ReloadConfig() (applied, restart []string) {
	if a.configFile == "" {
		return nil, nil
	}
	if _, err := os.Stat(a.configFile); errors.Is(err, fs.ErrNotExist) {
		// Gone, or between an editor's rename and its write: not the
		// embedded defaults, which LoadConfig reads for a missing file.
		a.cfgMu.Lock()
		if !a.cfgMissing {
			a.logger.Warn("config file not found; the running configuration stays", "file", a.configFile)
		}
		a.cfgMissing = true
		a.cfgMu.Unlock()
		return nil, nil
	}
	load := a.loadConfig
	if load == nil {
		load = LoadConfig
	}
	cfg, _, err := load(a.configFile, a.environ)
	if err != nil {
		a.logger.Error("config file change refused; the running configuration stays", "file", a.configFile, "err", err)
		return nil, nil
	}
	a.cfgMu.Lock()
	defer a.cfgMu.Unlock()
	a.cfgMissing = false
	prev := reflect.ValueOf(&a.fileCfg).Elem()
	cur := reflect.ValueOf(&cfg).Elem()
	for _, f := range schema.Fields() {
		if reflect.DeepEqual(prev.FieldByIndex(f.Index).Interface(), cur.FieldByIndex(f.Index).Interface()) {
			continue
		}
		switch {
		case f.Key == keyLogLevel && a.level != nil:
			a.level.Set(parseLevel(cfg.Log.Level))
			applied = append(applied, f.Key)
		case f.Key == keyPoliciesDir:
			if err := a.store.SetDir(cfg.Policies.Dir); err != nil {
				a.logger.Error("policies.dir change refused; the old directory stays", "err", err)
				cfg.Policies.Dir = a.fileCfg.Policies.Dir // retried at the next change
				continue
			}
			applied = append(applied, f.Key)
		default:
			restart = append(restart, f.Key)
		}
	}
	a.fileCfg = cfg
	if len(applied) > 0 {
		a.logger.Info("config file reloaded", "file", a.configFile, "applied", applied)
	}
	if len(restart) > 0 {
		a.logger.Warn("config file changed keys that apply only at restart; restart the agent (kubectl rollout restart daemonset/fluxgate-agent)", "file", a.configFile, "keys", restart)
	}
	return applied, restart
}

// environOrOS is environ, or the process environment when nil.
func environOrOS(environ []string) []string {
	if environ == nil {
		return os.Environ()
	}
	return environ
}
