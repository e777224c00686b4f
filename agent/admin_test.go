package agent

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fluxgate/fluxgate/api"
	"github.com/fluxgate/fluxgate/policies"
)

func TestAdminPolicyLifecycle(t *testing.T) {
	dir := t.TempDir()
	a := startAgent(t, testConfig(dir))
	url := a.testURL("/v1/policies/prod/limits")

	r := adminRequest(t, "PUT", url, policyYAML("prod", "limits", "1s"), nil)
	if r.code != 201 {
		t.Fatalf("PUT new = %d %s", r.code, r.body)
	}
	file := filepath.Join(dir, "prod_limits.yaml")
	if b, err := os.ReadFile(file); err != nil || !strings.Contains(string(b), "name: limits") {
		t.Fatalf("policy not persisted to %s: %v %q", file, err, b)
	}
	if leftovers, _ := filepath.Glob(filepath.Join(dir, ".fluxgate-*")); len(leftovers) != 0 {
		t.Fatalf("temporary files left behind: %v", leftovers)
	}

	r = adminRequest(t, "PUT", url, policyYAML("prod", "limits", "2s"), nil)
	if r.code != 200 {
		t.Fatalf("PUT update = %d %s", r.code, r.body)
	}
	r = adminRequest(t, "GET", url, "", nil)
	var pi api.PolicyInfo
	if err := json.Unmarshal([]byte(r.body), &pi); err != nil {
		t.Fatal(err)
	}
	if pi.Kind != "Policy" || pi.File != "prod_limits.yaml" || !strings.Contains(pi.Source, "evaluation_interval: 2s") {
		t.Fatalf("GET = %+v", pi)
	}
	if r := adminRequest(t, "GET", url, "", map[string]string{"Accept": "application/yaml"}); !strings.HasPrefix(r.body, "apiVersion: fluxgate.io/v1beta1") {
		t.Fatalf("GET yaml = %q", r.body)
	}

	l := listPolicies(t, a, nil)
	if len(l.Policies) != 1 || l.Policies[0].Namespace != "prod" || l.Policies[0].Name != "limits" {
		t.Fatalf("list = %+v", l)
	}

	if r := adminRequest(t, "DELETE", url, "", nil); r.code != 204 {
		t.Fatalf("DELETE = %d %s", r.code, r.body)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Fatalf("file still present after delete: %v", err)
	}
	if r := adminRequest(t, "GET", url, "", nil); r.code != 404 {
		t.Fatalf("GET after delete = %d", r.code)
	}
	if r := adminRequest(t, "DELETE", url, "", nil); r.code != 404 {
		t.Fatalf("second DELETE = %d", r.code)
	}
}

func TestAdminRefusesBadPolicies(t *testing.T) {
	dir := t.TempDir()
	a := startAgent(t, testConfig(dir))
	tests := []struct {
		name, url, body string
		code            int
		want            string
	}{
		{"bad duration", "/v1/policies/default/demo", policyYAML("default", "demo", "soon"), 400, "body:8:26:"},
		{"name differs from URL", "/v1/policies/default/other", policyYAML("default", "demo", "1s"), 400, "request names default/other"},
		{"namespace differs from URL", "/v1/policies/prod/demo", policyYAML("default", "demo", "1s"), 400, "request names prod/demo"},
		{"two documents", "/v1/policies/default/demo", policyYAML("default", "demo", "1s") + "---\n" + policyYAML("default", "x", "1s"), 400, "exactly one policy document"},
		{"empty body", "/v1/policies/default/demo", "", 400, "exactly one policy document"},
		// Issue 14: a 4 MB policy took RSS to 1 GB.
		{"over 512 KiB", "/v1/policies/default/demo", policyYAML("default", "demo", "1s") + "# " + strings.Repeat("x", 512<<10) + "\n", 413, "request body too large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := adminRequest(t, "PUT", a.testURL(tt.url), tt.body, nil)
			if r.code != tt.code || !strings.Contains(r.body, tt.want) {
				t.Fatalf("PUT = %d %s; want %d containing %q", r.code, r.body, tt.code, tt.want)
			}
		})
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("refused policies left files: %v", ents)
	}
}

func TestAdminConflictsWithSharedFiles(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "bundle.yaml"), policyYAML("default", "one", "1s")+"---\n"+policyYAML("default", "two", "1s"))
	a := startAgent(t, testConfig(dir))
	if r := adminRequest(t, "PUT", a.testURL("/v1/policies/default/one"), policyYAML("default", "one", "2s"), nil); r.code != 409 {
		t.Fatalf("PUT into a shared file = %d %s", r.code, r.body)
	}
	if r := adminRequest(t, "DELETE", a.testURL("/v1/policies/default/one"), "", nil); r.code != 409 {
		t.Fatalf("DELETE from a shared file = %d %s", r.code, r.body)
	}
	if n := len(a.Store().Snapshot().Entries); n != 2 {
		t.Fatalf("policies after refused writes = %d", n)
	}
}

// BenchmarkReloadLatency measures how long a policy file change takes to be
// served, through the watcher (fsnotify + debounce + parse + swap).
func BenchmarkReloadLatency(b *testing.B) {
	dir := b.TempDir()
	path := filepath.Join(dir, "demo.yaml")
	if err := os.WriteFile(path, []byte(policyYAML("default", "demo", "1s")), 0o644); err != nil {
		b.Fatal(err)
	}
	cfg := testConfig(dir)
	a, err := New(Options{Config: cfg})
	if err != nil {
		b.Fatal(err)
	}
	if err := a.Start(b.Context()); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = a.Stop(b.Context()) }()
	key := policies.Key{Namespace: "default", Name: "demo"}
	var worst time.Duration
	for i := 0; b.Loop(); i++ {
		start := time.Now()
		interval := time.Duration(i%1000+1) * time.Millisecond * 10
		if err := os.WriteFile(path, []byte(policyYAML("default", "demo", interval.String())), 0o644); err != nil {
			b.Fatal(err)
		}
		for intervalOf(a.Store(), key) != interval {
			time.Sleep(100 * time.Microsecond)
		}
		if d := time.Since(start); d > worst {
			worst = d
		}
	}
	b.ReportMetric(float64(worst.Microseconds())/1000, "worst-ms")
}
