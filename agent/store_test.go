package agent

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/fluxgate/fluxgate/api"
	"github.com/fluxgate/fluxgate/internal/policytest"
	"github.com/fluxgate/fluxgate/policies"
)

// waitFor polls cond until it holds, failing the test after a generous
// deadline. It returns how long the condition took, for logs; speed is
// measured by BenchmarkReloadLatency, not asserted here.
func waitFor(t *testing.T, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for deadline := start.Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		if cond() {
			return time.Since(start)
		}
	}
	t.Fatalf("timed out waiting for %s", what)
	return 0
}

// intervalOf returns the evaluation interval of the loaded policy key, or 0.
func intervalOf(s *PolicyStore, key policies.Key) time.Duration {
	e := s.Snapshot().Entries[key]
	if e == nil {
		return 0
	}
	return e.Object.(*policies.Policy).Spec.Circuit.EvaluationInterval
}

func listPolicies(t *testing.T, a *Agent, header map[string]string) api.PolicyList {
	t.Helper()
	r := adminRequest(t, "GET", a.testURL("/v1/policies"), "", header)
	if r.code != 200 {
		t.Fatalf("GET /v1/policies = %d %s", r.code, r.body)
	}
	var l api.PolicyList
	if err := json.Unmarshal([]byte(r.body), &l); err != nil {
		t.Fatal(err)
	}
	return l
}

func TestHotReloadThroughAPI(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "demo.yaml")
	writeFile(t, path, policyYAML("default", "demo", "1s"))
	a := startAgent(t, testConfig(dir))
	key := policies.Key{Namespace: "default", Name: "demo"}
	if got := intervalOf(a.Store(), key); got != time.Second {
		t.Fatalf("initial interval = %v", got)
	}
	first := a.Store().Snapshot().Entries[key]

	// A valid change shows through the admin API.
	writeFile(t, path, policyYAML("default", "demo", "250ms"))
	took := waitFor(t, "the valid change to load", func() bool {
		r := adminRequest(t, "GET", a.testURL("/v1/policies/default/demo?format=yaml"), "", nil)
		return strings.Contains(r.body, "evaluation_interval: 250ms")
	})
	t.Logf("valid change visible through the API after %v", took)
	second := a.Store().Snapshot().Entries[key]
	if second == first {
		t.Fatal("changed policy kept its old entry")
	}

	// An invalid change is refused: the old version keeps running, and
	// the error shows in health, the list and the metric.
	writeFile(t, path, policyYAML("default", "demo", "soon"))
	waitFor(t, "the refused change to be reported", func() bool {
		return len(a.Store().Snapshot().Errors) == 1
	})
	if got := intervalOf(a.Store(), key); got != 250*time.Millisecond {
		t.Fatalf("after an invalid change interval = %v, want the last good 250ms", got)
	}
	if a.Store().Snapshot().Entries[key] != second {
		t.Fatal("a refused change replaced the running entry")
	}
	l := listPolicies(t, a, nil)
	if len(l.Policies) != 1 || len(l.Errors) != 1 || !strings.Contains(l.Errors[0], "demo.yaml:8:") {
		t.Fatalf("list after refused change = %+v", l)
	}
	r := doRequest(t, "GET", a.testURL("/v1/monitoring/health"), "", nil)
	if r.code != 200 || !strings.Contains(r.body, `"degraded"`) || !strings.Contains(r.body, "demo.yaml:8:") {
		t.Fatalf("health after refused change = %d %s", r.code, r.body)
	}
	if n := testutil.ToFloat64(a.Store().reloadErrors); n != 1 {
		t.Fatalf("reload errors = %v, want 1", n)
	}
	// Periodic resyncs of the same bad content do not count it again.
	for i := 0; i < 3; i++ {
		if err := a.Store().Reload(); err != nil {
			t.Fatal(err)
		}
	}
	if n := testutil.ToFloat64(a.Store().reloadErrors); n != 1 {
		t.Fatalf("reload errors after resyncs = %v, want 1", n)
	}

	// Fixing the file clears the error.
	writeFile(t, path, policyYAML("default", "demo", "2s"))
	waitFor(t, "the fix to load", func() bool { return intervalOf(a.Store(), key) == 2*time.Second })
	if errs := a.Store().Snapshot().Errors; len(errs) != 0 {
		t.Fatalf("errors after fix = %v", errs)
	}

	// Removing the file removes the policy.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the removal", func() bool { return len(a.Store().Snapshot().Entries) == 0 })
}

func TestUnchangedPoliciesKeepTheirEntries(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.yaml"), policyYAML("default", "a", "1s"))
	writeFile(t, filepath.Join(dir, "b.yml"), policyYAML("default", "b", "1s"))
	writeFile(t, filepath.Join(dir, "notes.txt"), "not a policy")
	s, err := NewPolicyStore(StoreOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	var calls int
	s.Subscribe(func(old, cur *PolicySnapshot) { calls++ })
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	snap := s.Snapshot()
	if len(snap.Entries) != 2 || calls != 1 {
		t.Fatalf("entries = %d, notifications = %d", len(snap.Entries), calls)
	}
	a := snap.Entries[policies.Key{Namespace: "default", Name: "a"}]

	// Nothing changed: no new snapshot, no notification.
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if s.Snapshot() != snap || calls != 1 {
		t.Fatalf("a no-op reload published a snapshot (calls %d)", calls)
	}

	writeFile(t, filepath.Join(dir, "b.yml"), policyYAML("default", "b", "3s"))
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	cur := s.Snapshot()
	if cur.Version != snap.Version+1 || calls != 2 {
		t.Fatalf("version %d→%d, calls %d", snap.Version, cur.Version, calls)
	}
	if cur.Entries[policies.Key{Namespace: "default", Name: "a"}] != a {
		t.Fatal("unchanged policy a got a new entry; its runtime state would be lost")
	}
}

func TestDuplicatePolicyAcrossFilesIsRefused(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.yaml"), policyYAML("default", "same", "1s"))
	writeFile(t, filepath.Join(dir, "b.yaml"), policyYAML("default", "same", "2s"))
	s, err := NewPolicyStore(StoreOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	snap := s.Snapshot()
	e := snap.Entries[policies.Key{Namespace: "default", Name: "same"}]
	if e == nil || e.File != "a.yaml" {
		t.Fatalf("entry = %+v, want the one from a.yaml", e)
	}
	if len(snap.Errors) != 1 || !strings.Contains(snap.Errors[0].Err.Error(), "already defined in a.yaml") {
		t.Fatalf("errors = %v", snap.Errors)
	}
}

// A Kubernetes ConfigMap volume holds ..<timestamp>/ directories, a ..data
// symlink to the current one, and per-key symlinks through ..data. An
// update writes a new timestamped directory and renames a new ..data link
// over the old one.
func TestConfigMapSymlinkSwap(t *testing.T) {
	dir := t.TempDir()
	v1 := filepath.Join(dir, "..2026_11_22_10_00_00.1")
	if err := os.Mkdir(v1, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(v1, "demo.yaml"), policyYAML("default", "demo", "1s"))
	mustSymlink(t, filepath.Base(v1), filepath.Join(dir, "..data"))
	mustSymlink(t, filepath.Join("..data", "demo.yaml"), filepath.Join(dir, "demo.yaml"))

	a := startAgent(t, testConfig(dir))
	key := policies.Key{Namespace: "default", Name: "demo"}
	if got := intervalOf(a.Store(), key); got != time.Second {
		t.Fatalf("initial interval = %v", got)
	}
	if n := len(a.Store().Snapshot().Entries); n != 1 {
		t.Fatalf("loaded %d policies; ..data entries must not be loaded twice", n)
	}

	v2 := filepath.Join(dir, "..2026_11_22_10_05_00.2")
	if err := os.Mkdir(v2, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(v2, "demo.yaml"), policyYAML("default", "demo", "500ms"))
	mustSymlink(t, filepath.Base(v2), filepath.Join(dir, "..data_tmp"))
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(v1); err != nil {
		t.Fatal(err)
	}
	took := waitFor(t, "the ConfigMap swap to load", func() bool {
		return intervalOf(a.Store(), key) == 500*time.Millisecond
	})
	t.Logf("ConfigMap swap picked up after %v", took)
}

func mustSymlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func TestMissingDirectoryIsWatchedForCreation(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "later")
	a := startAgent(t, testConfig(dir))
	if !a.Ready() || len(a.Store().Snapshot().Entries) != 0 {
		t.Fatal("agent with a missing policy directory should be ready and empty")
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "demo.yaml"), policyYAML("default", "demo", "1s"))
	waitFor(t, "the new directory's policy", func() bool { return len(a.Store().Snapshot().Entries) == 1 })
}

func TestStoreMetricsRegistered(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := NewPolicyStore(StoreOptions{Dir: t.TempDir(), Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := NewPolicyStore(StoreOptions{Dir: t.TempDir(), Registerer: reg}); err == nil {
		t.Fatal("a second store on the same registry must fail to register, not panic")
	}
}

// A policy directory deleted under a running store keeps the last good
// policies running and degrades health with the reason, until it
// comes back; a directory absent from the start is an empty set.
func TestDeletedDirectoryKeepsLastGoodPolicies(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "policies")
	s, err := NewPolicyStore(StoreOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if h := s.Health(); h.Status != StatusHealthy || len(s.Snapshot().Entries) != 0 {
		t.Fatalf("absent from the start: %+v, %d policies; want healthy and empty", h, len(s.Snapshot().Entries))
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "demo.yaml"), policyYAML("default", "demo", "1s"))
	if err := s.Reload(); err != nil || len(s.Snapshot().Entries) != 1 {
		t.Fatalf("reload: %v, %d policies", err, len(s.Snapshot().Entries))
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if n := len(s.Snapshot().Entries); n != 1 {
		t.Errorf("after the directory was deleted: %d policies, want the last good 1", n)
	}
	h := s.Health()
	if h.Status != StatusDegraded || !strings.Contains(h.Message, "does not exist") {
		t.Errorf("after the directory was deleted: health %+v, want degraded saying it does not exist", h)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if h := s.Health(); h.Status != StatusHealthy || len(s.Snapshot().Entries) != 0 {
		t.Errorf("directory back, empty: %+v, %d policies; want healthy and empty", h, len(s.Snapshot().Entries))
	}
}

// An Aperture policy whose constructs FluxGate ignores loads, and the
// agent says so in its log, as `fluxgate policy validate` does.
func TestStoreLogsApertureWarnings(t *testing.T) {
	dir := t.TempDir()
	src, err := os.ReadFile("../policies/testdata/aperture/auto-scale.yaml")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "auto-scale.yaml"), string(src))
	var buf bytes.Buffer
	s, err := NewPolicyStore(StoreOptions{Dir: dir, Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if n := len(s.Snapshot().Entries); n != 1 {
		t.Fatalf("%d policies loaded, want the Aperture policy", n)
	}
	if out := buf.String(); !strings.Contains(out, "policy loaded with a warning") || !strings.Contains(out, "auto_scale.auto_scaler is ignored") {
		t.Fatalf("log:\n%s\nwant the ignored auto_scale named", out)
	}
}

// A reload that raises max_flow_duration past its bound is refused with
// the file's position, and the last good version keeps running.
func TestMaxFlowDurationOverTheBoundKeepsLastGood(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "protect.yaml")
	maxFlow := func(s *PolicyStore) time.Duration {
		e := s.Snapshot().Entries[policies.Key{Namespace: "default", Name: "one-slot"}]
		if e == nil {
			return 0
		}
		return e.Object.(*policies.Policy).Spec.Circuit.Components[0].Spec.(*policies.AdaptiveConcurrency).Parameters.MaxFlowDuration
	}
	writeFile(t, path, policytest.OneSlotExpiring("api", 5*time.Minute))
	s, err := NewPolicyStore(StoreOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err != nil || maxFlow(s) != 5*time.Minute {
		t.Fatalf("first load: %v, max_flow_duration %v, want 5m", err, maxFlow(s))
	}
	writeFile(t, path, policytest.OneSlotExpiring("api", 3*time.Hour))
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := maxFlow(s); got != 5*time.Minute {
		t.Errorf("after a refused change max_flow_duration = %v, want the last good 5m", got)
	}
	errs := s.Snapshot().Errors
	want := "protect.yaml:7:9: flow_control.adaptive_concurrency: parameters.max_flow_duration must be at most 10m0s"
	if len(errs) != 1 || !strings.Contains(errs[0].Err.Error(), want) {
		t.Errorf("errors = %v, want one containing %q", errs, want)
	}
}
