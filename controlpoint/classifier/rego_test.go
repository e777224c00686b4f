package classifier

import (
	"context"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/fluxgate/fluxgate/policies"
)

func regoClassifier(module string, labels ...string) *policies.Classifier {
	rl := map[string]*policies.RegoLabel{}
	for _, l := range labels {
		rl[l] = &policies.RegoLabel{}
	}
	return &policies.Classifier{Selectors: sels, Rego: &policies.Rego{Module: module, Labels: rl}}
}

func newRego(t testing.TB, module string, labels ...string) *Classifier {
	t.Helper()
	c, err := New(regoClassifier(module, labels...))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

const tiersModule = `package fluxgate.tiers

default tier := "free"

tier := "gold" if input.labels["http.request.header.x_plan"] == "gold"

user.kind := "bot" if contains(input.labels["http.request.header.user_agent"], "bot")

point := sprintf("%s/%s", [input.control_point, input.labels["http.method"]])

# A helper that is not a label.
is_admin if input.labels.role == "admin"

admin := is_admin
`

func TestRego(t *testing.T) {
	c := newRego(t, tiersModule, "tier", "user.kind", "point", "admin")
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   map[string]string
	}{
		{
			name:   "computed from input.labels and control_point",
			labels: map[string]string{"http.request.header.x_plan": "gold", "http.request.header.user_agent": "a-bot/1", "http.method": "GET"},
			want:   map[string]string{"tier": "gold", "user.kind": "bot", "point": "ingress/GET"},
		},
		{
			name:   "undefined rules give no label",
			labels: map[string]string{"http.method": "PUT", "role": "admin"},
			want:   map[string]string{"tier": "free", "point": "ingress/PUT", "admin": "true"},
		},
		{
			name:   "no labels at all",
			labels: nil,
			want:   map[string]string{"tier": "free"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := c.Classify(context.Background(), "ingress", tc.labels)
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestRegoValues(t *testing.T) {
	c := newRego(t, `package p
num := 42
float := 1.5
yes := true
nothing := null
arr := [1, "a", {"k": false}]
obj := {"b": 2, "a": 1}
ids contains x if some x in ["z", "y"]
str := "plain"
`, "num", "float", "yes", "nothing", "arr", "obj", "ids", "str")
	got, err := c.Classify(context.Background(), "cp", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"num": "42", "float": "1.5", "yes": "true", "nothing": "null",
		"arr": `[1,"a",{"k":false}]`, "obj": `{"a":1,"b":2}`, "ids": `["y","z"]`, "str": "plain",
	}
	if !maps.Equal(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
}

func TestRegoEvalErrors(t *testing.T) {
	for _, tc := range []struct {
		name, module string
		labels       map[string]string
		want         string
	}{
		{
			name: "conflicting values",
			module: `package p
tier = "gold" if input.labels.a
tier = "silver" if input.labels.b
`,
			labels: map[string]string{"a": "1", "b": "1"},
			want:   `classifier: rego: tier.rego:3: eval_conflict_error: rule data.p.tier produced conflicting values`,
		},
		{
			name:   "strict builtin error",
			module: "package p\ntier := to_number(input.labels.n)\n",
			labels: map[string]string{"n": "many"},
			want:   `classifier: rego: tier.rego:2: eval_builtin_error: to_number: strconv.ParseFloat: parsing "many": invalid syntax`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newRego(t, tc.module, "tier")
			got, err := c.Classify(context.Background(), "cp", tc.labels)
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("error %v, want one starting %q", err, tc.want)
			}
			if len(got) != 0 || got == nil {
				t.Errorf("labels %#v, want an empty map", got)
			}
		})
	}
}

// runawayModule needs about 10^10 iterations: hours, far beyond any
// timeout.
const runawayModule = `package p
slow := count([1 | some i in numbers.range(1, 100000); some j in numbers.range(1, 100000)])
`

// TestRegoTimeout: the time budget cuts a runaway module. That the call
// returns at all with the budget's error shows it was cut (the module
// would otherwise run for hours); how soon after the 50 ms it returns is
// measured by BenchmarkClassifyRegoRunaway.
func TestRegoTimeout(t *testing.T) {
	c := newRego(t, runawayModule, "slow")
	_, err := c.Classify(context.Background(), "cp", nil)
	if err == nil || !strings.Contains(err.Error(), "evaluation took longer than 50ms") {
		t.Errorf("error %v", err)
	}

	// A caller's earlier deadline wins, and is not blamed on the module.
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	_, err = c.Classify(ctx, "cp", nil)
	if err == nil || strings.Contains(err.Error(), "took longer") || !strings.Contains(err.Error(), "cancel") {
		t.Errorf("error %v", err)
	}
}

func TestRegoLoadErrors(t *testing.T) {
	for _, tc := range []struct {
		name, module string
		labels       []string
		want         string
	}{
		{
			name:   "parse error with position",
			module: "package p\n\ntier := 1 +\n",
			labels: []string{"tier", "user"},
			want:   `classifier: rego: tier,user.rego:4:0: rego_parse_error: unexpected eof token`,
		},
		{
			name:   "parse error mid-line",
			module: "package p\n\ntier := {1 2}\n",
			labels: []string{"tier"},
			want:   `classifier: rego: tier.rego:3:12: rego_parse_error: unexpected number token: non-terminated set`,
		},
		{
			name:   "unsafe var with position",
			module: "package p\n\ntier := x\n",
			labels: []string{"tier"},
			want:   `classifier: rego: tier.rego:3:9: rego_unsafe_var_error: var x is unsafe`,
		},
		{
			name:   "rego v0 syntax",
			module: "package p\n\ntier = \"a\" { true }\n",
			labels: []string{"tier"},
			want:   "classifier: rego: tier.rego:3:1: rego_parse_error: `if` keyword is required before rule body",
		},
		{
			name: "http.send refused",
			module: `package p
tier := http.send({"method": "GET", "url": "http://127.0.0.1:1/"}).body.tier
`,
			labels: []string{"tier"},
			want:   `classifier: rego: tier.rego:2:9: rego_type_error: builtin http.send is not allowed in classifiers: their Rego gets no network, file or non-deterministic builtins`,
		},
		{
			name:   "net.lookup_ip_addr refused",
			module: "package p\ntier := net.lookup_ip_addr(\"example.com\")\n",
			labels: []string{"tier"},
			want:   `classifier: rego: tier.rego:2:9: rego_type_error: builtin net.lookup_ip_addr is not allowed in classifiers`,
		},
		{
			name:   "opa.runtime refused",
			module: "package p\ntier := opa.runtime().env.HOME\n",
			labels: []string{"tier"},
			want:   `builtin opa.runtime is not allowed in classifiers`,
		},
		{
			name:   "time.now_ns refused",
			module: "package p\ntier := time.now_ns()\n",
			labels: []string{"tier"},
			want:   `builtin time.now_ns is not allowed in classifiers`,
		},
		{
			name:   "non-deterministic builtin refused",
			module: "package p\ntier := uuid.rfc4122(\"x\")\n",
			labels: []string{"tier"},
			want:   `builtin uuid.rfc4122 is not allowed in classifiers`,
		},
		{
			name:   "label without a rule",
			module: "package fluxgate.p\ntier := 1\n",
			labels: []string{"tier", "user.kind"},
			want:   `classifier: rego: label "user.kind" has no rule user in package fluxgate.p`,
		},
		{
			name:   "label naming a function",
			module: "package p\ntier(x) := x\n",
			labels: []string{"tier"},
			want:   `classifier: rego: label "tier": tier is a function; a label needs a rule without arguments`,
		},
		{
			name:   "invalid label name",
			module: "package p\n",
			labels: []string{"user-agent"},
			want:   `classifier: rego.labels.user-agent: invalid rego label name "user-agent"`,
		},
		{
			name:   "empty module",
			module: "",
			labels: []string{"tier"},
			want:   `classifier: rego.module: missing required field "module" in rego`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(regoClassifier(tc.module, tc.labels...))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, %v; want an error containing %q", c, err, tc.want)
			}
		})
	}
}

// A module can still use ordinary builtins, including ones near the
// refused ones by name.
func TestRegoAllowedBuiltins(t *testing.T) {
	c := newRego(t, `package p
tier := "internal" if net.cidr_contains("10.0.0.0/8", input.labels["source.address"])
day := time.weekday(0)
claims := io.jwt.decode(input.labels.token)[1].sub
`, "tier", "day", "claims")
	got, err := c.Classify(context.Background(), "cp", map[string]string{
		"source.address": "10.1.2.3",
		"token":          "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"tier": "internal", "day": "Thursday", "claims": "alice"}
	if !maps.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

// Under one WithBudget context, modules share RegoTimeout: the second of
// two slow modules gets what the first left, here nothing.
func TestRegoBudgetShared(t *testing.T) {
	c := newRego(t, `package p
slow := count([1 | some i in numbers.range(1, 100000); some j in numbers.range(1, 100000)])
`, "slow")
	ctx := WithBudget(context.Background())
	// The second module's "not evaluated" shows the budget was shared
	// (a wall-clock bound here flaked on a loaded machine).
	_, err1 := c.Classify(ctx, "cp", nil)
	_, err2 := c.Classify(ctx, "cp", nil)
	if err1 == nil || !strings.Contains(err1.Error(), "took longer than the 50ms Rego budget of its check") {
		t.Errorf("first module: %v", err1)
	}
	if err2 == nil || !strings.Contains(err2.Error(), "not evaluated") {
		t.Errorf("second module: %v", err2)
	}
}
