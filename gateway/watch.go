package gateway

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

// configResync re-reads the config file even without an event, as a
// safety net for file systems that drop events.
const configResync = 10 * time.Second

// watchConfig watches the directory of the config file (editors and
// ConfigMap mounts replace files by rename, which a watch on the file
// itself would lose) and reloads on every change until ctx is done.
func (s *Service) watchConfig(ctx context.Context) {
	path := filepath.Clean(s.opts.ConfigFile)
	w, err := fsnotify.NewWatcher()
	if err != nil {
		s.logger.Error("gateway config not watched; changes need a restart", "file", path, "err", err)
		return
	}
	defer func() { _ = w.Close() }()
	if err := w.Add(filepath.Dir(path)); err != nil {
		s.logger.Error("gateway config not watched; changes need a restart", "file", path, "err", err)
		return
	}
	s.ReloadConfig() // changes made before the watch was in place have no event
	resync := time.NewTicker(configResync)
	defer resync.Stop()
	var debounce <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			name := filepath.Clean(ev.Name)
			if ev.Op == fsnotify.Chmod || (name != path && filepath.Base(name) != "..data") {
				continue
			}
			if debounce == nil {
				debounce = time.After(s.opts.Debounce)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			s.logger.Warn("gateway config watch error", "file", path, "err", err)
		case <-debounce:
			debounce = nil
			s.ReloadConfig()
		case <-resync.C:
			s.ReloadConfig()
		}
	}
}

// ReloadConfig reads ServiceOptions.ConfigFile and applies its gateway
// section when it changed. A file that does not load (every problem is
// logged with its file:line:col) or a gateway that refuses the section
// leaves the running routing as it is. Requests in flight finish on the
// state they started with. It reports whether a change was applied.
func (s *Service) ReloadConfig() bool {
	if s.opts.ConfigFile == "" || s.opts.LoadConfig == nil {
		return false
	}
	path := s.opts.ConfigFile
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		s.logger.Warn("gateway config file is gone; the running routing keeps serving", "file", path)
		return false
	}
	cfg, err := s.opts.LoadConfig(path, s.opts.Environ)
	s.recMu.Lock()
	defer s.recMu.Unlock()
	if err == nil && reflect.DeepEqual(cfg, s.base) {
		return false
	}
	if err == nil {
		if cfg.Listen != s.base.Listen {
			s.logger.Warn("gateway.listen changed; it applies at the next restart", "file", path, "listening", s.base.Listen, "configured", cfg.Listen)
			cfg.Listen = s.base.Listen
		}
		if cfg.TLS != s.base.TLS || cfg.H2C != s.base.H2C {
			s.logger.Warn("gateway.tls or gateway.h2c changed; it applies at the next restart (the certificate files themselves reload live)", "file", path)
			cfg.TLS, cfg.H2C = s.base.TLS, s.base.H2C
		}
		old := s.base
		s.base = cfg
		if err = s.reconcileLocked("config file changed"); err != nil {
			s.base = old
		}
	}
	if err != nil {
		s.reloads.WithLabelValues("failure").Inc()
		s.logger.Error("gateway config change refused; the running routing keeps serving", "file", path, "err", err.Error())
		s.fileErr = err.Error()
		return false
	}
	s.fileErr = ""
	s.reloads.WithLabelValues("success").Inc()
	return true
}
