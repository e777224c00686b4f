package classifier

import (
	"context"
	"strings"
	"testing"

	"github.com/fluxgate/fluxgate/policies"
)

func templates(t testing.TB, from string, tv map[string]string) *Classifier {
	t.Helper()
	return one(t, &policies.Extractor{PathTemplates: &policies.PathTemplateMatcher{From: from, TemplateValues: tv}})
}

func TestPathTemplates(t *testing.T) {
	c := templates(t, "", map[string]string{
		"/":                       "root",
		"/users/{id}":             "user",
		"/users/me":               "me",
		"/users/{id}/orders/{o}":  "order",
		"/users/me/orders/{o}":    "my-order",
		"/users/{id}/orders/last": "last-order",
		"/api/*":                  "api",
		"/api/v1/{name}":          "api-v1",
		"/api/v1/health":          "health",
		"/static/{file}/*":        "static",
		"/static/{file}":          "file",
	})
	l := func(target string) map[string]string { return map[string]string{"http.target": target} }
	runExtract(t, c, []extractCase{
		{name: "root", labels: l("/"), want: "root", ok: true},
		{name: "root with query", labels: l("/?a=b"), want: "root", ok: true},
		{name: "param", labels: l("/users/42"), want: "user", ok: true},
		{name: "literal beats param", labels: l("/users/me"), want: "me", ok: true},
		{name: "query stripped", labels: l("/users/me?x=/users/1"), want: "me", ok: true},
		{name: "fragment stripped", labels: l("/users/7#top"), want: "user", ok: true},
		{name: "empty segments ignored", labels: l("//users//42/"), want: "user", ok: true},
		{name: "first difference decides", labels: l("/users/me/orders/last"), want: "my-order", ok: true},
		{name: "backtrack to param", labels: l("/users/9/orders/last"), want: "last-order", ok: true},
		{name: "params all the way", labels: l("/users/9/orders/3"), want: "order", ok: true},
		{name: "star matches nothing", labels: l("/api"), want: "api", ok: true},
		{name: "star matches rest", labels: l("/api/v2/x/y"), want: "api", ok: true},
		{name: "param beats star", labels: l("/api/v1/things"), want: "api-v1", ok: true},
		{name: "literal beats param beats star", labels: l("/api/v1/health"), want: "health", ok: true},
		{name: "literal miss falls back to star", labels: l("/api/v1"), want: "api", ok: true},
		{name: "star after deeper literal miss", labels: l("/api/v1/health/deep"), want: "api", ok: true},
		{name: "param then star", labels: l("/static/css/a/b.css"), want: "static", ok: true},
		{name: "end beats star", labels: l("/static/css"), want: "file", ok: true},
		{name: "end beats star, trailing slash", labels: l("/static/css/"), want: "file", ok: true},
		{name: "absolute form", labels: l("http://example.com/users/me?q"), want: "me", ok: true},
		{name: "absolute form without path", labels: l("https://example.com"), want: "root", ok: true},
		{name: "no match", labels: l("/orders/1")},
		{name: "too deep", labels: l("/users/1/2")},
		{name: "case sensitive", labels: l("/USERS/me/orders/x")},
		{name: "percent-encoded slash is one segment", labels: l("/users/a%2Fb"), want: "user", ok: true},
		{name: "asterisk form", labels: l("*")},
		{name: "authority form", labels: l("example.com:443")},
		{name: "empty target", labels: l("")},
		{name: "absent", labels: map[string]string{"http.method": "GET"}},
	})

	// No "/" template: the root path matches only a leading "*".
	star := templates(t, "path", map[string]string{"/*": "any", "/a": "a"})
	runExtract(t, star, []extractCase{
		{name: "from other label", labels: map[string]string{"path": "/a", "http.target": "/b"}, want: "a", ok: true},
		{name: "root matches star", labels: map[string]string{"path": "/"}, want: "any", ok: true},
		{name: "default label not read", labels: map[string]string{"http.target": "/a"}},
	})
}

func TestPathTemplatesInvalid(t *testing.T) {
	for tmpl, want := range map[string]string{
		"users":          `invalid path template "users": must start with '/'`,
		"/a/":            `invalid path template "/a/": empty segment`,
		"/*/a":           `invalid path template "/*/a": '*' must be the last segment`,
		"/a/{b":          `invalid path template "/a/{b": invalid parameter {b`,
		"/{a}/x*":        `'*' must be a whole segment`,
		"/a?b":           `must not contain '?' or '#'`,
		"":               `invalid path template "": must start with '/'`,
		"/x/{a-b}/{c}/d": `invalid parameter {a-b}`,
	} {
		_, err := New(&policies.Classifier{Selectors: sels, Rules: map[string]*policies.Rule{"out": {Extractor: &policies.Extractor{
			PathTemplates: &policies.PathTemplateMatcher{TemplateValues: map[string]string{tmpl: "v"}}}}}})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("template %q: error %v, want one containing %q", tmpl, err, want)
		}
	}
	_, err := New(&policies.Classifier{Selectors: sels, Rules: map[string]*policies.Rule{"out": {Extractor: &policies.Extractor{
		PathTemplates: &policies.PathTemplateMatcher{TemplateValues: map[string]string{"/a/{x}": "1", "/a/{y}": "2"}}}}}})
	if want := `rules.out.extractor.path_templates.template_values./a/{y}: path template "/a/{y}" matches the same paths as "/a/{x}"`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("duplicate shapes: error %v, want %q", err, want)
	}
}

// segKind ranks what a template has at one position of a path it matches:
// higher is more specific.
func segKind(tmpl []string, i int) int {
	switch {
	case i >= len(tmpl):
		return 1 // end
	case tmpl[i] == "*":
		return 0
	case strings.HasPrefix(tmpl[i], "{"):
		return 2
	}
	return 3
}

// naiveMatch matches one template against the path's segments, with no
// trie.
func naiveMatch(tmpl, path []string) bool {
	for i, s := range tmpl {
		switch {
		case s == "*":
			return true
		case i >= len(path):
			return false
		case strings.HasPrefix(s, "{"):
		case s != path[i]:
			return false
		}
	}
	return len(tmpl) == len(path)
}

func splitNonEmpty(s string) []string {
	var out []string
	for _, seg := range strings.Split(s, "/") {
		if seg != "" {
			out = append(out, seg)
		}
	}
	return out
}

// naiveBest is the specification of template precedence written
// directly: among matching templates, compare segment kinds from the left.
func naiveBest(tv map[string]string, path string) (string, bool) {
	segs := splitNonEmpty(path)
	var best []string
	var bestValue string
	found := false
	for tmpl, v := range tv {
		ts := splitNonEmpty(tmpl)
		if !naiveMatch(ts, segs) {
			continue
		}
		if !found {
			best, bestValue, found = ts, v, true
			continue
		}
		for i := 0; i <= len(segs); i++ {
			a, b := segKind(ts, i), segKind(best, i)
			if a != b {
				if a > b {
					best, bestValue = ts, v
				}
				break
			}
		}
	}
	return bestValue, found
}

// FuzzPathTemplate checks that a template that passes validation compiles,
// that matching never panics, and that the trie picks what the naive
// specification picks.
func FuzzPathTemplate(f *testing.F) {
	f.Add("/users/{id}", "/users/42?x=1")
	f.Add("/api/*", "/api")
	f.Add("/a/{b}/*", "//a//b/c/")
	f.Add("/", "http://h")
	f.Add("/{x}/me", "/users/me")
	f.Add("/users/me/*", "/users/me/x")
	base := map[string]string{
		"/":               "root",
		"/users/{id}":     "user",
		"/users/me":       "me",
		"/api/*":          "api",
		"/api/v1/{name}":  "api-v1",
		"/{a}/{b}/*":      "two-params",
		"/users/{id}/x/*": "user-x",
		"/users/{id}/x":   "user-x-end",
	}
	f.Fuzz(func(t *testing.T, tmpl, target string) {
		tv := map[string]string{tmpl: "fuzzed"}
		for k, v := range base {
			if _, dup := tv[k]; !dup {
				tv[k] = v
			}
		}
		pc := &policies.Classifier{Selectors: sels, Rules: map[string]*policies.Rule{"out": {Extractor: &policies.Extractor{
			PathTemplates: &policies.PathTemplateMatcher{TemplateValues: tv}}}}}
		valid := pc.Validate() == nil
		c, err := New(pc)
		if valid != (err == nil) {
			t.Fatalf("Validate ok %v but New error %v", valid, err)
		}
		if !valid {
			return
		}
		got, err := c.Classify(context.Background(), "cp", map[string]string{"http.target": target})
		if err != nil {
			t.Fatalf("Classify: %v", err)
		}
		v, ok := got["out"]
		path, isPath := requestPath(target)
		if !isPath {
			if ok {
				t.Fatalf("target %q is not a path, got %q", target, v)
			}
			return
		}
		want, wantOK := naiveBest(tv, path)
		if v != want || ok != wantOK {
			t.Fatalf("templates %v, target %q: got %q (%v), want %q (%v)", tv, target, v, ok, want, wantOK)
		}
	})
}
