package classifier

import (
	"context"
	"testing"

	"github.com/fluxgate/fluxgate/policies"
)

// benchLabels are the labels of a typical HTTP flow.
var benchLabels = map[string]string{
	"http.method":                    "POST",
	"http.target":                    "/api/v1/users/42/orders?limit=10",
	"http.host":                      "shop.example.com",
	"http.scheme":                    "https",
	"http.request.header.user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
	"http.request.header.x_plan":     "gold",
	"http.request.body":              `{"user": {"id": "u-42", "roles": ["admin"]}, "items": [1, 2, 3]}`,
	"source.address":                 "10.1.2.3:51234",
	"tenant":                         "acme",
}

func BenchmarkClassifyExtractors(b *testing.B) {
	c, err := New(&policies.Classifier{Selectors: sels, Rules: map[string]*policies.Rule{
		"method": {Extractor: &policies.Extractor{From: "http.method"}},
		"user":   {Extractor: &policies.Extractor{JSON: &policies.JSONExtractor{From: "http.request.body", Pointer: "/user/id"}}},
		"ip":     {Extractor: &policies.Extractor{Address: &policies.AddressExtractor{From: "source.address"}}},
		"route": {Extractor: &policies.Extractor{PathTemplates: &policies.PathTemplateMatcher{TemplateValues: map[string]string{
			"/":                             "root",
			"/api/*":                        "api",
			"/api/v1/users/{id}":            "user",
			"/api/v1/users/{id}/orders":     "orders",
			"/api/v1/users/{id}/orders/{o}": "order",
			"/api/v1/users/me/orders":       "my-orders",
			"/static/*":                     "static",
		}}}},
	}})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		out, err := c.Classify(ctx, "ingress", benchLabels)
		if err != nil || len(out) != 4 {
			b.Fatal(out, err)
		}
	}
}

func BenchmarkClassifyRego(b *testing.B) {
	c, err := New(&policies.Classifier{Selectors: sels, Rego: &policies.Rego{
		Module: `package fluxgate.bench
default tier := "free"
tier := input.labels["http.request.header.x_plan"] if input.labels["http.request.header.x_plan"] in {"gold", "silver"}
bot if contains(lower(input.labels["http.request.header.user_agent"]), "bot")
tenant := input.labels.tenant
`,
		Labels: map[string]*policies.RegoLabel{"tier": {}, "bot": {}, "tenant": {}},
	}})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		out, err := c.Classify(ctx, "ingress", benchLabels)
		if err != nil || len(out) != 2 {
			b.Fatal(out, err)
		}
	}
}

// BenchmarkClassifyRegoRunaway is what a module that never finishes costs
// a check: RegoTimeout (50ms) and how long the evaluation takes to stop
// after it.
func BenchmarkClassifyRegoRunaway(b *testing.B) {
	c := newRego(b, runawayModule, "slow")
	ctx := context.Background()
	for b.Loop() {
		if _, err := c.Classify(ctx, "ingress", nil); err == nil {
			b.Fatal("a runaway module finished")
		}
	}
}
