package agent

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/fluxgate/fluxgate/policies"
)

func obj(ns, name, interval string) SourceObject {
	return SourceObject{ID: "kube:" + ns + "/" + name, YAML: []byte(policyYAML(ns, name, interval))}
}

// A source's objects are served beside file policies; the file wins a
// name clash, which is an error of the snapshot and a metric until the
// file goes; the store is not loaded until every source has reported.
func TestSourcePrecedenceAndClashes(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.yaml"), policyYAML("default", "shared", "1s"))
	reg := prometheus.NewRegistry()
	s, err := NewPolicyStore(StoreOptions{Dir: dir, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	s.AddSource("kube")
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if s.Loaded() {
		t.Fatal("store loaded before the source reported")
	}
	if h := s.Health(); h.Status != StatusUnhealthy || !strings.Contains(h.Message, "waiting for 1 policy sources") {
		t.Fatalf("health before the source reported = %+v", h)
	}

	var seen []*PolicySnapshot
	s.Subscribe(func(_, cur *PolicySnapshot) { seen = append(seen, cur) })
	s.SetSource("kube", []SourceObject{obj("default", "shared", "5s"), obj("team", "own", "2s")})
	if !s.Loaded() {
		t.Fatal("store not loaded after the source reported")
	}
	snap := s.Snapshot()
	shared := policies.Key{Namespace: "default", Name: "shared"}
	own := policies.Key{Namespace: "team", Name: "own"}
	if got := intervalOf(s, shared); got != time.Second {
		t.Fatalf("clashing key serves interval %v, want the file's 1s", got)
	}
	if e := snap.Entries[shared]; e.Origin != "" || e.File != "a.yaml" {
		t.Fatalf("clashing key served from %q/%q", e.Origin, e.File)
	}
	if e := snap.Entries[own]; e == nil || e.Origin != "kube" || e.File != "kube:team/own" || intervalOf(s, own) != 2*time.Second {
		t.Fatalf("source object entry = %+v", e)
	}
	if len(snap.Errors) != 1 || snap.Errors[0].File != "kube:default/shared" ||
		!strings.Contains(snap.Errors[0].Err.Error(), "policy file a.yaml defines it too and takes precedence") {
		t.Fatalf("errors = %v", snap.Errors)
	}
	if got := testutil.ToFloat64(s.clashes); got != 1 {
		t.Fatalf("fluxgate_policy_name_clashes = %v, want 1", got)
	}
	if h := s.Health(); h.Status != StatusDegraded {
		t.Fatalf("health with a clash = %+v", h)
	}
	if len(seen) != 1 {
		t.Fatalf("subscribers called %d times, want 1", len(seen))
	}

	// The same objects again publish nothing and keep their entries.
	ownEntry := snap.Entries[own]
	s.SetSource("kube", []SourceObject{obj("team", "own", "2s"), obj("default", "shared", "5s")})
	if len(seen) != 1 || s.Snapshot().Entries[own] != ownEntry {
		t.Fatalf("an unchanged source republished (%d snapshots) or replaced its entry", len(seen))
	}

	// Without the file, the object is served and the clash is gone.
	if err := os.Remove(filepath.Join(dir, "a.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	snap = s.Snapshot()
	if got := intervalOf(s, shared); got != 5*time.Second || snap.Entries[shared].Origin != "kube" {
		t.Fatalf("after the file went: interval %v origin %q", got, snap.Entries[shared].Origin)
	}
	if len(snap.Errors) != 0 || testutil.ToFloat64(s.clashes) != 0 {
		t.Fatalf("errors %v, clashes %v after the file went", snap.Errors, testutil.ToFloat64(s.clashes))
	}

	// An object the store refuses serves nothing and is reported; objects
	// gone from the source are unloaded.
	s.SetSource("kube", []SourceObject{obj("default", "shared", "soon")})
	snap = s.Snapshot()
	if len(snap.Entries) != 0 {
		t.Fatalf("entries after a refused object and a removal: %v", snap.Sorted())
	}
	if len(snap.Errors) != 1 || !strings.Contains(snap.Errors[0].Err.Error(), "soon") {
		t.Fatalf("errors = %v", snap.Errors)
	}
}

// The admin API's writes go to files: they refuse to overwrite or delete
// a policy that a source serves.
func TestSourceEntriesAreNotWrittenAsFiles(t *testing.T) {
	s, err := NewPolicyStore(StoreOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	s.AddSource("kube")
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	s.SetSource("kube", []SourceObject{obj("default", "cr", "1s")})
	key := policies.Key{Namespace: "default", Name: "cr"}
	if err := s.Delete(key); !errors.Is(err, ErrConflict) {
		t.Fatalf("Delete of a source policy = %v, want ErrConflict", err)
	}
	if _, _, err := s.Put(key, []byte(policyYAML("default", "cr", "2s"))); !errors.Is(err, ErrConflict) {
		t.Fatalf("Put over a source policy = %v, want ErrConflict", err)
	}
	if got := intervalOf(s, key); got != time.Second {
		t.Fatalf("source policy changed to %v", got)
	}
}
