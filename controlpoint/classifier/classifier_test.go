package classifier

import (
	"context"
	"fmt"
	"maps"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/fluxgate/fluxgate/policies"
)

// parsedClassifiers compiles the classifiers of the policy language's
// good test file.
func parsedClassifiers(t testing.TB) []*Classifier {
	t.Helper()
	const file = "../../policies/testdata/classifier.yaml"
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	docs, err := policies.Parse(file, data)
	if err != nil {
		t.Fatal(err)
	}
	var out []*Classifier
	for _, pc := range docs[0].Object.(*policies.Policy).Spec.Resources.Classifiers {
		c, err := New(pc)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

func TestParsedPolicy(t *testing.T) {
	cs := parsedClassifiers(t)
	if len(cs) != 2 {
		t.Fatalf("got %d classifiers", len(cs))
	}
	got, err := cs[0].Classify(context.Background(), "ingress", map[string]string{
		"http.method":       "POST",
		"http.target":       "/users/me?verbose=1",
		"http.request.body": `{"user": {"id": 17}}`,
		"source.address":    "[::1]:1234",
		"egress.path":       "/v1/carts/items",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"method": "POST", "route": "me", "user": "17", "doc": `{"user":{"id":17}}`,
		"client-ip": "::1", "egress-route": "items",
	}
	if !maps.Equal(got, want) {
		t.Errorf("extractors: got %v, want %v", got, want)
	}

	got, err = cs[1].Classify(context.Background(), "egress", map[string]string{
		"http.request.header.x_plan": "gold", "http.request.header.user_agent": "googlebot",
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"tier": "gold", "user.kind": "bot"}; !maps.Equal(got, want) {
		t.Errorf("rego: got %v, want %v", got, want)
	}
}

func TestRulesAndRego(t *testing.T) {
	c, err := New(&policies.Classifier{
		Selectors: sels,
		Rules:     map[string]*policies.Rule{"method": {Extractor: &policies.Extractor{From: "http.method"}}},
		Rego: &policies.Rego{
			Module: "package p\n# Rego sees the flow's labels, not the rules' output.\nseen := object.get(input.labels, \"method\", \"unset\")\n",
			Labels: map[string]*policies.RegoLabel{"seen": {}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Classify(context.Background(), "cp", map[string]string{"http.method": "GET"})
	if want := map[string]string{"method": "GET", "seen": "unset"}; err != nil || !maps.Equal(got, want) {
		t.Errorf("got %v, %v; want %v", got, err, want)
	}
}

func TestNewErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    *policies.Classifier
		want string
	}{
		{"nil", nil, "classifier: nil classifier"},
		{"empty", &policies.Classifier{Selectors: sels}, "classifier: a classifier needs rules or rego"},
		{"no selectors", &policies.Classifier{Rules: map[string]*policies.Rule{"a": {Extractor: &policies.Extractor{From: "x"}}}},
			"classifier: selectors: at least one selector is required"},
		{"nil rule", &policies.Classifier{Selectors: sels, Rules: map[string]*policies.Rule{"a": nil}},
			`classifier: rules.a: rule "a" needs an extractor`},
		{"two forms", &policies.Classifier{Selectors: sels, Rules: map[string]*policies.Rule{"a": {Extractor: &policies.Extractor{
			From: "x", JSON: &policies.JSONExtractor{From: "y"}}}}},
			"classifier: rules.a.extractor: an extractor must set exactly one of from, json, address, path_templates; got from, json"},
		{"bad pointer", &policies.Classifier{Selectors: sels, Rules: map[string]*policies.Rule{"a": {Extractor: &policies.Extractor{
			JSON: &policies.JSONExtractor{From: "y", Pointer: "/a~"}}}}},
			`classifier: rules.a.extractor.json.pointer: invalid JSON pointer "/a~": '~' must be followed by 0 or 1`},
		{"bad label", &policies.Classifier{Selectors: sels, Rules: map[string]*policies.Rule{"a b": {Extractor: &policies.Extractor{From: "x"}}}},
			`classifier: rules.a b: invalid label name "a b"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(tc.c)
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("New = %v, %v; want error %q", c, err, tc.want)
			}
		})
	}
}

// TestConcurrentClassify runs one classifier from several goroutines; each
// flow must get its own answer. (Run with -race where the machine allows.)
func TestConcurrentClassify(t *testing.T) {
	c, err := New(&policies.Classifier{
		Selectors: sels,
		Rules: map[string]*policies.Rule{
			"user":  {Extractor: &policies.Extractor{JSON: &policies.JSONExtractor{From: "body", Pointer: "/user"}}},
			"route": {Extractor: &policies.Extractor{PathTemplates: &policies.PathTemplateMatcher{TemplateValues: map[string]string{"/u/{id}": "u", "/u/0": "zero"}}}},
		},
		Rego: &policies.Rego{
			Module: "package p\ndouble := 2 * to_number(input.labels.n)\n",
			Labels: map[string]*policies.RegoLabel{"double": {}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	const goroutines, flows = 8, 200
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			for i := range flows {
				n := g*flows + i
				labels := map[string]string{
					"n":           strconv.Itoa(n),
					"body":        fmt.Sprintf(`{"user": "u%d"}`, n),
					"http.target": "/u/" + strconv.Itoa(n),
				}
				got, err := c.Classify(context.Background(), "cp", labels)
				route := "u"
				if n == 0 {
					route = "zero"
				}
				want := map[string]string{"user": "u" + strconv.Itoa(n), "route": route, "double": strconv.Itoa(2 * n)}
				if err != nil || !maps.Equal(got, want) {
					errs <- fmt.Errorf("flow %d: got %v, %w; want %v", n, got, err, want)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func ExampleClassifier_Classify() {
	c, err := New(&policies.Classifier{
		Selectors: []policies.Selector{{ControlPoint: "ingress"}},
		Rules: map[string]*policies.Rule{
			"route": {Extractor: &policies.Extractor{PathTemplates: &policies.PathTemplateMatcher{
				TemplateValues: map[string]string{"/users/{id}": "user", "/users/me": "me", "/*": "other"},
			}}},
			"client": {Extractor: &policies.Extractor{Address: &policies.AddressExtractor{From: "source.address"}}},
		},
		Rego: &policies.Rego{
			Module: `package fluxgate.example
tier := "gold" if input.labels["http.request.header.x_plan"] == "gold"
`,
			Labels: map[string]*policies.RegoLabel{"tier": {}},
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	labels, err := c.Classify(context.Background(), "ingress", map[string]string{
		"http.target":                "/users/42?full=1",
		"source.address":             "[::ffff:10.0.0.7]:51000",
		"http.request.header.x_plan": "gold",
	})
	fmt.Println(labels["route"], labels["client"], labels["tier"], err)
	// Output: user 10.0.0.7 gold <nil>
}
