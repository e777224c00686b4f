package agent

import (
	"context"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Run watches the policy directory and reloads on every change until ctx is
// done. Bursts of events are coalesced (StoreOptions.Debounce), and the
// directory is re-read every ResyncInterval even without events. A
// directory that does not exist yet is watched for as soon as it appears.
//
// Kubernetes ConfigMap volumes update by creating a new timestamped
// directory and renaming the ..data symlink over the old one; that rename
// is an event in the watched directory, so it triggers a reload like any
// other change.
func (s *PolicyStore) Run(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer func() { _ = w.Close() }()

	// Changes made before the watch was in place have no event: read the
	// directory once more now that it is (unchanged files are not parsed).
	watching := s.tryWatch(w)
	if watching {
		s.reloadLogged()
	}
	resync := time.NewTicker(s.opts.ResyncInterval)
	defer resync.Stop()
	retry := time.NewTicker(time.Second)
	defer retry.Stop()
	var debounce <-chan time.Time

	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if ev.Op == fsnotify.Chmod {
				continue
			}
			if ev.Op.Has(fsnotify.Remove) && filepath.Clean(ev.Name) == filepath.Clean(s.Dir()) {
				watching = false
			}
			if debounce == nil {
				debounce = time.After(s.opts.Debounce)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			s.logger.Warn("policy directory watch error", "dir", s.Dir(), "err", err)
		case <-debounce:
			debounce = nil
			s.reloadLogged()
		case <-retry.C:
			if !watching {
				if watching = s.tryWatch(w); watching {
					s.reloadLogged()
				}
			}
		case <-resync.C:
			s.reloadLogged()
		case <-s.dirChanged:
			for _, old := range w.WatchList() {
				_ = w.Remove(old)
			}
			watching = s.tryWatch(w)
		}
	}
}

func (s *PolicyStore) tryWatch(w *fsnotify.Watcher) bool {
	if err := w.Add(s.Dir()); err != nil {
		s.logger.Debug("policy directory not watchable yet", "dir", s.Dir(), "err", err)
		return false
	}
	return true
}

func (s *PolicyStore) reloadLogged() {
	if err := s.Reload(); err != nil {
		s.logger.Error("policy reload failed", "dir", s.Dir(), "err", err)
	}
}
