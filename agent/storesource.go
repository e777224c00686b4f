package agent

import (
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/fluxgate/fluxgate/policies"
)

// SourceObject is one object of a policy source other than the policy
// directory: a Kubernetes custom resource, for example.
type SourceObject struct {
	// ID names the object in entries (PolicyEntry.File), errors and logs,
	// and is unique within its source; for example
	// "kubernetes:policies.fluxgate.io/default/checkout".
	ID string
	// YAML holds one policy document, parsed and validated as a file's
	// documents are (the store's Check hook included).
	YAML []byte
}

// AddSource declares a policy source besides the directory. Until its
// first SetSource the store is not Loaded, so the agent is not ready: it
// does not decide without the source's policies. Adding a name twice is
// a no-op.
func (s *PolicyStore) AddSource(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.sources[name]; ok {
		return
	}
	s.sources[name] = nil // nil: not reported yet
	s.pending.Add(1)
}

// SetSource replaces every object of the named source (added by
// AddSource) and publishes a new snapshot if anything changed. Objects
// whose YAML did not change are not parsed again. An object that fails to
// parse or validate is an error of the snapshot and serves nothing: unlike
// a file, a refused object has no last good version here, since its
// source (the API server) already validated the schema and holds the
// object as written.
func (s *PolicyStore) SetSource(name string, objs []SourceObject) {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev, ok := s.sources[name]
	if !ok {
		s.logger.Error("policy source was not added; objects ignored", "source", name)
		return
	}
	if prev == nil {
		s.pending.Add(-1)
	}
	cur := make(map[string]*fileState, len(objs))
	for _, o := range objs {
		h := hashBytes(o.YAML)
		if st := prev[o.ID]; st != nil && st.hash == h {
			cur[o.ID] = st
			continue
		}
		st := &fileState{hash: h, modified: time.Now()}
		docs, err := s.parse(o.ID, o.YAML)
		if err != nil {
			st.err = err
			s.reloadErrors.Inc()
			s.logger.Error("policy object refused", "source", name, "object", o.ID, "err", err.Error())
		} else {
			st.docs = docs
		}
		cur[o.ID] = st
	}
	s.sources[name] = cur
	s.publishLocked()
}

// addSourcesLocked adds the sources' objects to entries, after the
// directory's, and returns how many were shadowed by an existing key.
func (s *PolicyStore) addSourcesLocked(old *PolicySnapshot, entries map[policies.Key]*PolicyEntry, errs *[]FileError) int {
	names := make([]string, 0, len(s.sources))
	for n := range s.sources {
		names = append(names, n)
	}
	sort.Strings(names)
	clashes := 0
	for _, src := range names {
		objs := s.sources[src]
		ids := make([]string, 0, len(objs))
		for id := range objs {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids {
			st := objs[id]
			if st.err != nil {
				*errs = append(*errs, FileError{File: id, Err: st.err})
			}
			for _, d := range st.docs {
				hdr := d.Object.ObjectHeader()
				key := hdr.Key()
				if prev, dup := entries[key]; dup {
					clashes++
					err := fmt.Errorf("%s: policy %s is not served: %s defines it too and takes precedence", id, key, describeEntry(prev))
					if !slices.ContainsFunc(old.Errors, func(fe FileError) bool { return fe.Err.Error() == err.Error() }) {
						s.logger.Warn("policy name clash: object shadowed", "object", id, "policy", key.String(), "served_from", describeEntry(prev))
					}
					*errs = append(*errs, FileError{File: id, Err: err})
					continue
				}
				e := &PolicyEntry{Key: key, Kind: hdr.Kind, Object: d.Object, Source: d.Source, File: id, Origin: src, Hash: hashBytes(d.Source), LoadedAt: time.Now(), Warnings: warningTexts(d)}
				if o := old.Entries[key]; o != nil && o.Hash == e.Hash && o.File == e.File && o.Kind == e.Kind {
					e = o
				}
				entries[key] = e
			}
		}
	}
	return clashes
}

// describeEntry names where an entry comes from, for clash messages.
func describeEntry(e *PolicyEntry) string {
	if e.Origin == "" {
		return "policy file " + e.File
	}
	return e.File
}
