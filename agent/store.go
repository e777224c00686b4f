package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fluxgate/fluxgate/policies"
	"github.com/fluxgate/fluxgate/policies/strictyaml"
)

// PolicyEntry is one loaded policy document. Entries are immutable: a
// reload that finds a document unchanged hands out the same pointer, so a
// consumer can keep runtime state keyed by *PolicyEntry.
type PolicyEntry struct {
	Key      policies.Key
	Kind     string
	Object   policies.Object
	Source   []byte    // the document's YAML
	File     string    // base name of the file in the policy directory, or the source object's ID
	Origin   string    // "" for the policy directory, else the source's name (AddSource)
	Hash     string    // sha256 of Source, hex
	LoadedAt time.Time // when this version was first loaded
	// Warnings are the positioned warnings of an Aperture document: what
	// FluxGate ignores or matches otherwise (policies.Document.Warnings).
	Warnings []string
}

// warningTexts are a document's warnings as text.
func warningTexts(d *policies.Document) []string {
	var out []string
	for _, w := range d.Warnings {
		out = append(out, w.Error())
	}
	return out
}

// FileError is a policy file whose current content was refused. When the
// file had loaded before, its last good version keeps running.
type FileError struct {
	File string `json:"file"`
	Err  error  `json:"-"`
}

// PolicySnapshot is an immutable view of the loaded policies. Do not modify
// its maps or slices.
type PolicySnapshot struct {
	Version uint64
	Entries map[policies.Key]*PolicyEntry
	// Errors holds the refused files sorted by name, then the refused or
	// shadowed objects of other sources, by source name and object ID.
	Errors []FileError
}

// Sorted returns the entries ordered by namespace and name.
func (s *PolicySnapshot) Sorted() []*PolicyEntry {
	out := make([]*PolicyEntry, 0, len(s.Entries))
	for _, e := range s.Entries {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Key.Namespace != out[j].Key.Namespace {
			return out[i].Key.Namespace < out[j].Key.Namespace
		}
		return out[i].Key.Name < out[j].Key.Name
	})
	return out
}

// StoreOptions configures a PolicyStore.
type StoreOptions struct {
	// Dir is the policy directory. Every *.yaml and *.yml file directly in
	// it is loaded; names starting with "." are ignored (that skips the
	// ..data and ..<timestamp> entries of a Kubernetes ConfigMap mount).
	Dir string
	// Logger receives reload results and refused files. Nil means silent.
	Logger *slog.Logger
	// Registerer receives the store's metrics. Nil means none.
	Registerer prometheus.Registerer
	// ResyncInterval re-reads the directory even without a file event, as a
	// safety net for file systems that drop events. Default 10s.
	ResyncInterval time.Duration
	// Debounce coalesces bursts of file events. Default 20ms.
	Debounce time.Duration
	// Check, when set, vets every parsed policy beyond what the policies
	// package validates (the decision engine compiles it, for example). A
	// policy it refuses is refused like a parse error.
	Check func(policies.Object) error
}

// PolicyStore loads policies from a directory, watches it and publishes
// snapshots. The zero value is not usable; call NewPolicyStore.
//
// Other sources (Kubernetes custom resources) add policies with AddSource
// and SetSource. Every policy is known by its namespace/name, whatever its
// origin, and the policy directory takes precedence: a source object with
// the key of a file policy is shadowed, not served. The clash is an error
// of the snapshot (health degraded), logged when it appears and counted in
// fluxgate_policy_name_clashes. Between two source objects with one key,
// the first by source name, then object ID, wins the same way.
type PolicyStore struct {
	opts   StoreOptions
	logger *slog.Logger
	snap   atomic.Pointer[PolicySnapshot]
	loaded atomic.Bool // the first Reload has finished

	dir        atomic.Pointer[string] // the policy directory; SetDir changes it
	dirChanged chan struct{}          // tells Run to watch the new directory; cap 1

	mu    sync.Mutex            // serializes Reload and admin writes
	putMu sync.Mutex            // one Put parses at a time: a parse costs up to ~200× its body
	files map[string]*fileState // guarded by mu; keyed by base name
	subs  []func(old, cur *PolicySnapshot)
	// listed: the directory has been read at least once; guarded by mu.
	listed bool
	// gone says why the last good policies run without their directory,
	// which was deleted after it was read; nil while it is there.
	gone atomic.Pointer[string]
	// names are the policy files the directory held when last listed;
	// guarded by mu.
	names []string
	// sources hold the objects of other sources by source name; guarded
	// by mu. pending counts the sources that have not called SetSource
	// yet: until they all have, the store is not Loaded.
	sources map[string]map[string]*fileState
	pending atomic.Int32

	reloads      *prometheus.CounterVec
	reloadErrors prometheus.Counter
	loadedGauge  prometheus.Gauge
	lastSuccess  prometheus.Gauge
	clashes      prometheus.Gauge
}

// fileState remembers what a file held the last time it was read.
type fileState struct {
	hash     string               // of the raw bytes last read
	docs     []*policies.Document // last good parse; nil if it never parsed
	err      error                // error of the last read content, nil if good
	modified time.Time
}

// NewPolicyStore returns a store with an empty snapshot. Call Reload to
// load the directory and Run to watch it.
func NewPolicyStore(opts StoreOptions) (*PolicyStore, error) {
	if opts.Dir == "" {
		return nil, errors.New("agent: policy store needs a directory")
	}
	if opts.ResyncInterval <= 0 {
		opts.ResyncInterval = 10 * time.Second
	}
	if opts.Debounce <= 0 {
		opts.Debounce = 20 * time.Millisecond
	}
	s := &PolicyStore{
		opts:       opts,
		dirChanged: make(chan struct{}, 1),
		logger:     opts.Logger,
		files:      make(map[string]*fileState),
		sources:    make(map[string]map[string]*fileState),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fluxgate_policy_reloads_total",
			Help: "Policy directory reloads that changed something, by result (success, failure).",
		}, []string{"result"}),
		reloadErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fluxgate_policy_reload_errors_total",
			Help: "Policy file versions refused because they failed to read, parse or validate.",
		}),
		loadedGauge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "fluxgate_policies_loaded",
			Help: "Policies currently loaded.",
		}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "fluxgate_policy_last_reload_success_timestamp_seconds",
			Help: "When the policy directory last loaded without a refused file.",
		}),
		clashes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "fluxgate_policy_name_clashes",
			Help: "Policies of a source other than the policy directory (Kubernetes) not served because a file policy, or an earlier source object, has the same namespace/name.",
		}),
	}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	s.dir.Store(&opts.Dir)
	s.snap.Store(&PolicySnapshot{Entries: map[policies.Key]*PolicyEntry{}})
	if opts.Registerer != nil {
		for _, c := range []prometheus.Collector{s.reloads, s.reloadErrors, s.loadedGauge, s.lastSuccess, s.clashes} {
			if err := opts.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("agent: register policy store metrics: %w", err)
			}
		}
	}
	return s, nil
}

// Dir is the watched policy directory.
func (s *PolicyStore) Dir() string { return *s.dir.Load() }

// SetDir moves the store to another policy directory, which must exist:
// its files replace the old directory's (the other sources stay), and Run
// watches it from now on. A directory that cannot be read is refused and
// the old one stays.
func (s *PolicyStore) SetDir(dir string) error {
	if dir == "" {
		return errors.New("agent: policy store needs a directory")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if dir == s.Dir() {
		return nil
	}
	if _, err := os.ReadDir(dir); err != nil {
		return fmt.Errorf("agent: policy directory %s: %w", dir, err)
	}
	old := s.Dir()
	s.dir.Store(&dir)
	s.files, s.names, s.listed = make(map[string]*fileState), nil, false
	s.gone.Store(nil)
	select {
	case s.dirChanged <- struct{}{}:
	default:
	}
	s.logger.Info("policy directory changed", "from", old, "to", dir)
	return s.reloadLocked()
}

// Snapshot returns the current snapshot. It never blocks.
func (s *PolicyStore) Snapshot() *PolicySnapshot { return s.snap.Load() }

// Loaded reports whether the directory has been read at least once and
// every source added by AddSource has reported its objects once.
func (s *PolicyStore) Loaded() bool { return s.loaded.Load() && s.pending.Load() == 0 }

// Subscribe registers fn to be called, in the reloading goroutine, after
// every snapshot change. fn must not call back into the store's writers.
func (s *PolicyStore) Subscribe(fn func(old, cur *PolicySnapshot)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.subs = append(s.subs, fn)
}

// Health reports the store for the health endpoint: unhealthy before the
// first load, degraded while some file is refused.
func (s *PolicyStore) Health() ComponentHealth {
	if !s.Loaded() {
		msg := "policies not loaded yet"
		if n := s.pending.Load(); n > 0 {
			msg = fmt.Sprintf("%s: waiting for %d policy sources besides the directory", msg, n)
		}
		return ComponentHealth{Status: StatusUnhealthy, Message: msg}
	}
	snap := s.Snapshot()
	h := ComponentHealth{Status: StatusHealthy, Message: fmt.Sprintf("%d policies loaded from %s", len(snap.Entries), s.Dir())}
	if gone := s.gone.Load(); gone != nil {
		return ComponentHealth{Status: StatusDegraded, Message: *gone}
	}
	if len(snap.Errors) > 0 {
		h.Status = StatusDegraded
		h.Message = fmt.Sprintf("%d policies loaded, %d files or objects refused or shadowed (last good versions keep running)", len(snap.Entries), len(snap.Errors))
		for _, fe := range snap.Errors {
			h.Errors = append(h.Errors, fe.Err.Error())
		}
	}
	return h
}

// Reload reads the directory and publishes a new snapshot if anything
// changed. Files that fail keep their last good version; their errors are
// in the snapshot. Reload returns an error only when the directory itself
// cannot be read. A directory that has never existed is an empty policy
// set; one deleted after it was read keeps the last good policies
// running, and health degraded, until it is back: an unmounted volume or
// a mistaken rm is not an order to unload every policy.
func (s *PolicyStore) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reloadLocked()
}

func (s *PolicyStore) reloadLocked() error {
	names, err := s.listFiles()
	switch {
	case errors.Is(err, fs.ErrNotExist) && s.listed:
		if s.gone.Load() == nil {
			n := len(s.Snapshot().Entries)
			msg := fmt.Sprintf("policy directory %s does not exist: the last good %d policies keep running", s.Dir(), n)
			s.gone.Store(&msg)
			s.logger.Error("policy directory deleted: keeping the last good policies", "dir", s.Dir(), "policies", n)
		}
		s.loaded.Store(true)
		return nil
	case errors.Is(err, fs.ErrNotExist):
		names = nil // never there: no policies yet
	case err != nil:
		s.reloads.WithLabelValues("failure").Inc()
		return err
	default:
		s.listed = true
		if s.gone.Swap(nil) != nil {
			s.logger.Info("policy directory is back", "dir", s.Dir(), "files", len(names))
		}
	}
	seen := make(map[string]bool, len(names))
	for _, name := range names {
		seen[name] = true
		s.readFileLocked(name)
	}
	for name := range s.files {
		if !seen[name] {
			delete(s.files, name)
		}
	}
	s.names = names
	s.publishLocked()
	s.loaded.Store(true)
	return nil
}

func (s *PolicyStore) listFiles() ([]string, error) {
	ents, err := os.ReadDir(s.Dir())
	if err != nil {
		return nil, fmt.Errorf("agent: read policy directory: %w", err)
	}
	var names []string
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, ".") || !isPolicyFile(n) {
			continue
		}
		// Stat follows symlinks: ConfigMap files are links into ..data.
		fi, err := os.Stat(filepath.Join(s.Dir(), n))
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		names = append(names, n)
	}
	sort.Strings(names)
	return names, nil
}

func isPolicyFile(name string) bool {
	ext := filepath.Ext(name)
	return ext == ".yaml" || ext == ".yml"
}

// readFileLocked refreshes the state of one file. Content that has not
// changed since the last read is not parsed again, and a refused version is
// counted once, not on every resync.
func (s *PolicyStore) readFileLocked(name string) {
	path := filepath.Join(s.Dir(), name)
	st := s.files[name]
	if st == nil {
		st = &fileState{}
		s.files[name] = st
	}
	data, err := os.ReadFile(path)
	if err != nil {
		if st.err == nil || st.hash != "" {
			s.reloadErrors.Inc()
			s.logger.Error("policy file refused", "file", path, "err", err)
		}
		st.hash, st.err = "", err
		return
	}
	h := hashBytes(data)
	if h == st.hash {
		return
	}
	st.hash = h
	docs, err := s.parse(path, data)
	if err != nil {
		st.err = err
		s.reloadErrors.Inc()
		s.logger.Error("policy file refused; last good version keeps running", "file", path, "err", err.Error(), "had_good_version", st.docs != nil)
		return
	}
	st.docs, st.err, st.modified = docs, nil, time.Now()
}

// parse parses and validates a file's documents, then runs the Check hook.
func (s *PolicyStore) parse(path string, data []byte) ([]*policies.Document, error) {
	docs, err := policies.Parse(path, data)
	if err == nil {
		for _, d := range docs {
			for _, w := range d.Warnings { // what an Aperture policy holds that FluxGate ignores
				s.logger.Warn("policy loaded with a warning", "file", path, "warning", w.Error())
			}
		}
	}
	if err != nil || s.opts.Check == nil {
		return docs, err
	}
	var errs []error
	for _, d := range docs {
		err := s.opts.Check(d.Object)
		var list strictyaml.ErrorList
		switch {
		case err == nil:
		case errors.As(err, &list):
			for _, e := range list { // positioned in the document: name the file
				if e.File == "" {
					e.File = path
				}
				errs = append(errs, e)
			}
		default:
			errs = append(errs, fmt.Errorf("%s:%d: %w", path, d.Line, err))
		}
	}
	if len(errs) > 0 {
		return docs, fmt.Errorf("%w: %w", ErrInvalid, errors.Join(errs...))
	}
	return docs, nil
}

// publishLocked builds the entry set from the files' last good documents,
// then the other sources' objects, reusing unchanged entries, and swaps the
// snapshot if anything differs.
func (s *PolicyStore) publishLocked() {
	old := s.Snapshot()
	entries := make(map[policies.Key]*PolicyEntry)
	var errs []FileError
	for _, name := range s.names {
		st := s.files[name]
		if st.err != nil {
			errs = append(errs, FileError{File: name, Err: st.err})
		}
		for _, d := range st.docs {
			hdr := d.Object.ObjectHeader()
			key := hdr.Key()
			if prev, dup := entries[key]; dup {
				err := fmt.Errorf("%s:%d: policy %s is already defined in %s", filepath.Join(s.Dir(), name), d.Line, key, prev.File)
				errs = append(errs, FileError{File: name, Err: err})
				continue
			}
			e := &PolicyEntry{Key: key, Kind: hdr.Kind, Object: d.Object, Source: d.Source, File: name, Hash: hashBytes(d.Source), LoadedAt: time.Now(), Warnings: warningTexts(d)}
			if o := old.Entries[key]; o != nil && o.Hash == e.Hash && o.File == e.File && o.Kind == e.Kind {
				e = o
			}
			entries[key] = e
		}
	}
	clashes := s.addSourcesLocked(old, entries, &errs)
	s.clashes.Set(float64(clashes))
	s.loadedGauge.Set(float64(len(entries)))
	if len(errs) == 0 {
		s.lastSuccess.SetToCurrentTime()
	}
	if sameEntries(old.Entries, entries) && sameErrors(old.Errors, errs) {
		return
	}
	cur := &PolicySnapshot{Version: old.Version + 1, Entries: entries, Errors: errs}
	s.snap.Store(cur)
	if len(errs) == 0 {
		s.reloads.WithLabelValues("success").Inc()
	} else {
		s.reloads.WithLabelValues("failure").Inc()
	}
	s.logger.Info("policies reloaded", "version", cur.Version, "policies", len(entries), "refused_files", len(errs))
	for _, fn := range s.subs {
		fn(old, cur)
	}
}

func sameEntries(a, b map[policies.Key]*PolicyEntry) bool {
	if len(a) != len(b) {
		return false
	}
	for k, e := range a {
		if b[k] != e {
			return false
		}
	}
	return true
}

func sameErrors(a, b []FileError) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].File != b[i].File || a[i].Err.Error() != b[i].Err.Error() {
			return false
		}
	}
	return true
}

func hashBytes(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
