package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/fluxgate/fluxgate/policies"
)

// ErrConflict means a write would change a file that also holds other
// policies, or a file the store did not write for this policy.
var ErrConflict = errors.New("conflict")

// ErrNotFound means no loaded policy has the key.
var ErrNotFound = errors.New("not found")

// Put validates one policy document and writes it into the policy
// directory (temporary file + rename, so a watcher never sees half a file),
// then reloads. A policy already loaded from a file of its own is
// overwritten in place; a new one goes to "<namespace>_<name>.yaml". It
// returns the entry now serving and whether it was newly created.
//
// data must hold exactly one document whose key is key. A parse or
// validation failure returns the policies package's positioned errors, and
// nothing is written.
func (s *PolicyStore) Put(key policies.Key, data []byte) (*PolicyEntry, bool, error) {
	s.putMu.Lock() // before s.mu, which reloads and readers' writes need sooner
	defer s.putMu.Unlock()
	docs, err := s.parse("body", data)
	if err != nil {
		return nil, false, err
	}
	if len(docs) != 1 {
		return nil, false, fmt.Errorf("%w: want exactly one policy document, got %d", ErrInvalid, len(docs))
	}
	if got := docs[0].Object.ObjectHeader().Key(); got != key {
		return nil, false, fmt.Errorf("%w: document is policy %s, but the request names %s", ErrInvalid, got, key)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	name, err := s.fileForLocked(key)
	if err != nil {
		return nil, false, err
	}
	_, existed := s.Snapshot().Entries[key]
	if err := writeFileAtomic(filepath.Join(s.Dir(), name), docs[0].Source); err != nil {
		return nil, false, err
	}
	if err := s.reloadLocked(); err != nil {
		return nil, false, err
	}
	e := s.Snapshot().Entries[key]
	if e == nil || e.File != name {
		return nil, false, fmt.Errorf("agent: policy %s was written to %s but did not load; see the policy store errors", key, name)
	}
	return e, !existed, nil
}

// ErrInvalid wraps request problems that are not positioned parse errors.
var ErrInvalid = errors.New("invalid policy")

// Delete removes the file that holds the policy and reloads. A file that
// also defines other policies is left alone (ErrConflict).
func (s *PolicyStore) Delete(key policies.Key) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.Snapshot().Entries[key]
	if e == nil {
		return fmt.Errorf("policy %s: %w", key, ErrNotFound)
	}
	if e.Origin != "" {
		return fmt.Errorf("%w: policy %s comes from %s; delete it there", ErrConflict, key, e.File)
	}
	if st := s.files[e.File]; st != nil && len(st.docs) > 1 {
		return fmt.Errorf("%w: policy %s shares %s with %d other documents; edit that file instead", ErrConflict, key, e.File, len(st.docs)-1)
	}
	if err := os.Remove(filepath.Join(s.Dir(), e.File)); err != nil {
		return fmt.Errorf("agent: delete policy %s: %w", key, err)
	}
	return s.reloadLocked()
}

// fileForLocked picks the file a Put of key writes.
func (s *PolicyStore) fileForLocked(key policies.Key) (string, error) {
	if e := s.Snapshot().Entries[key]; e != nil {
		if e.Origin != "" {
			return "", fmt.Errorf("%w: policy %s comes from %s; change it there", ErrConflict, key, e.File)
		}
		if st := s.files[e.File]; st != nil && len(st.docs) > 1 {
			return "", fmt.Errorf("%w: policy %s shares %s with %d other documents; edit that file instead", ErrConflict, key, e.File, len(st.docs)-1)
		}
		return e.File, nil
	}
	name := key.Namespace + "_" + key.Name + ".yaml"
	if st := s.files[name]; st != nil {
		for _, d := range st.docs {
			if d.Object.ObjectHeader().Key() != key {
				return "", fmt.Errorf("%w: %s already holds other policies", ErrConflict, name)
			}
		}
	}
	return name, nil
}

// writeFileAtomic writes data next to path and renames it into place.
// The temporary name starts with "." so the store never loads it.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("agent: create policy directory: %w", err)
	}
	f, err := os.CreateTemp(dir, ".fluxgate-*.tmp")
	if err != nil {
		return fmt.Errorf("agent: write policy: %w", err)
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Chmod(tmp, 0o644)
	}
	if werr == nil {
		werr = os.Rename(tmp, path)
	}
	if werr != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("agent: write policy: %w", werr)
	}
	return nil
}
