package fluxgate

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/fluxgate/fluxgate/agent"
	"github.com/fluxgate/fluxgate/gateway"
)

// WatcherOptions configures NewWatcher.
type WatcherOptions struct {
	// Path is the fluxgate.yaml the program started from.
	Path string
	// Environ overrides the file as at start (Load). Nil means
	// os.Environ().
	Environ []string
	// Logger receives the watcher's logs. Nil means silent.
	Logger *slog.Logger
	// Agent receives its part of every change that loads
	// (Agent.ApplyConfig). Nil: no agent.
	Agent *agent.Agent
	// Gateway receives the gateway section of every change that loads
	// (Service.ApplyConfig), and the errors of one that does not
	// (Service.RefuseConfig). Nil: no gateway.
	Gateway *gateway.Service
	// Debounce coalesces bursts of file events. Default 50ms.
	Debounce time.Duration
	// Resync re-reads the file even without an event, as a safety net for
	// file systems that drop events. Default 10s.
	Resync time.Duration
}

// Watcher is the program's one watcher of fluxgate.yaml: on every change
// it loads the file once (Load) and hands each part its section. A file
// that is gone (deleted, or between an editor's rename and its write)
// changes nothing: it is not read as the embedded defaults. A file that
// does not load is logged with its file:line:col errors and changes
// nothing either. It watches the file's directory, not the file: editors
// and ConfigMap volumes replace it by rename (a ConfigMap volume swaps its
// ..data symlink to a new timestamped directory, and fluxgate.yaml is a
// symlink through ..data), which a watch on the file itself would lose.
//
// Its methods are safe for concurrent use.
type Watcher struct {
	opts   WatcherOptions
	logger *slog.Logger

	mu      sync.Mutex // serializes Reload; guards missing
	missing bool       // the file was not there when last read
}

// NewWatcher returns a Watcher of opts.Path; Run watches. When the file
// is not there yet, its absence is not logged until it has come and gone.
func NewWatcher(opts WatcherOptions) *Watcher {
	if opts.Environ == nil {
		opts.Environ = os.Environ()
	}
	if opts.Debounce <= 0 {
		opts.Debounce = 50 * time.Millisecond
	}
	if opts.Resync <= 0 {
		opts.Resync = 10 * time.Second
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	// A program started without the file runs on the embedded defaults:
	// the file's absence is not news, only its arrival (it is then
	// loaded) or a later departure.
	_, err := os.Stat(opts.Path)
	return &Watcher{opts: opts, logger: logger, missing: errors.Is(err, fs.ErrNotExist)}
}

// Run reloads the file (Reload) whenever it changes, until ctx is done.
// A file system that cannot be watched is logged (changes then need a
// restart) and is not an error of the program: Run then waits for ctx.
func (w *Watcher) Run(ctx context.Context) error {
	path := filepath.Clean(w.opts.Path)
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		w.logger.Error("config file not watched; changes need a restart", "file", path, "err", err)
		<-ctx.Done()
		return nil
	}
	defer func() { _ = fw.Close() }()
	if err := fw.Add(filepath.Dir(path)); err != nil {
		w.logger.Error("config file not watched; changes need a restart", "file", path, "err", err)
		<-ctx.Done()
		return nil
	}
	w.reload() // changes made before the watch was in place have no event
	resync := time.NewTicker(w.opts.Resync)
	defer resync.Stop()
	var debounce <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-fw.Events:
			if !ok {
				return nil
			}
			if ev.Op != fsnotify.Chmod && concerns(path, ev.Name) && debounce == nil {
				debounce = time.After(w.opts.Debounce)
			}
		case err, ok := <-fw.Errors:
			if !ok {
				return nil
			}
			w.logger.Warn("config file watch error", "file", path, "err", err)
		case <-debounce:
			debounce = nil
			w.reload()
		case <-resync.C:
			w.reload()
		}
	}
}

// concerns reports whether an event on name can change the file at
// path: the file itself, or a ConfigMap volume's ..data symlink.
func concerns(path, name string) bool {
	name = filepath.Clean(name)
	return name == path || filepath.Base(name) == "..data"
}

// reload is Reload for Run, which logs the error.
func (w *Watcher) reload() {
	if err := w.Reload(); err != nil {
		w.logger.Error("config file change refused; the running configuration stays", "file", w.opts.Path, "err", err.Error())
	}
}

// Reload reads the file once and hands the parts their sections. It
// returns the file's load error, every problem with its file:line:col,
// and then changes nothing but the gateway's record of the refusal
// (Service.RefuseConfig); nil when the file loaded or is gone.
func (w *Watcher) Reload() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	path := w.opts.Path
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		if !w.missing {
			w.logger.Warn("config file not found; the running configuration stays", "file", path)
		}
		w.missing = true
		return nil
	}
	w.missing = false
	f, _, err := Load(path, w.opts.Environ)
	if err != nil {
		if w.opts.Gateway != nil {
			w.opts.Gateway.RefuseConfig(err)
		}
		return err
	}
	if w.opts.Agent != nil {
		w.opts.Agent.ApplyConfig(f.Config)
	}
	if w.opts.Gateway != nil {
		if _, err := w.opts.Gateway.ApplyConfig(f.Gateway); err != nil {
			w.logger.Error("gateway config change refused; the running routing keeps serving", "file", path, "err", err.Error())
		}
	}
	return nil
}
