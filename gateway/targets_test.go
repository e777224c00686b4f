package gateway

import (
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

// Targets set at run time replace a group's configured targets, survive a
// config update, and go back to the configured ones when dropped; an
// empty list leaves the group without targets.
func TestSetUpstreamTargetsRoutesTraffic(t *testing.T) {
	server := func(name string) string {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, name) }))
		t.Cleanup(s.Close)
		return strings.TrimPrefix(s.URL, "http://")
	}
	static, a, b := server("static"), server("a"), server("b")
	cfg := Config{
		Upstreams: []UpstreamConfig{{Name: "u", Targets: []TargetConfig{{Address: static}}}},
		Routes:    []RouteConfig{{ID: "r", Match: RouteMatch{PathPrefix: "/"}, Upstream: "u"}},
	}
	g, err := New(Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(g)
	t.Cleanup(front.Close)
	answers := func() string {
		seen := map[string]bool{}
		var out []string
		for range 4 {
			resp, err := http.Get(front.URL)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			k := resp.Status[:3] + ":" + string(body)
			if resp.StatusCode != http.StatusOK {
				k = resp.Status[:3]
			}
			if !seen[k] {
				seen[k] = true
				out = append(out, k)
			}
		}
		slices.Sort(out)
		return strings.Join(out, ",")
	}
	steps := []struct {
		name string
		do   func() error
		want string
	}{
		{"configured", func() error { return nil }, "200:static"},
		{"discovered", func() error {
			return g.SetUpstreamTargets(map[string][]TargetConfig{"u": {{Address: a}, {Address: b}}, "nope": {{Address: a}}})
		}, "200:a,200:b"},
		{"config update keeps them", func() error { return g.Update(cfg) }, "200:a,200:b"},
		{"one left", func() error { return g.SetUpstreamTargets(map[string][]TargetConfig{"u": {{Address: b}}}) }, "200:b"},
		{"none ready", func() error { return g.SetUpstreamTargets(map[string][]TargetConfig{"u": {}}) }, "503"},
		{"dropped", func() error { return g.SetUpstreamTargets(nil) }, "200:static"},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if got := answers(); got != s.want {
			t.Fatalf("%s: answers %s, want %s", s.name, got, s.want)
		}
	}
}
