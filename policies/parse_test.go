package policies

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/fluxgate/fluxgate/policies/strictyaml"
)

// expectedErrors pairs every testdata/*.bad.yaml file with the exact
// problems Parse must report, in order.
var expectedErrors = map[string][]string{
	"adaptive-concurrency.bad.yaml": {
		`adaptive-concurrency.bad.yaml:8:9: flow_control.adaptive_concurrency: parameters.max_flow_duration must be at most 10m0s (a flow whose end is never reported holds its slot that long), got 2h0m0s`,
		`adaptive-concurrency.bad.yaml:12:9: flow_control.adaptive_concurrency: parameters.latency_tolerance must be at least 1 (target = no-load latency × latency_tolerance), got 0.5`,
	},
	"schedulers.bad.yaml": {
		`schedulers.bad.yaml:8:9: flow_control.quota_scheduler: in_ports.fill_amount is required`,
		`schedulers.bad.yaml:8:9: flow_control.quota_scheduler: in_ports.bucket_capacity.constant_signal must not be negative, got -1`,
		`schedulers.bad.yaml:8:9: flow_control.quota_scheduler: rate_limiter.interval is required and must be positive`,
		`schedulers.bad.yaml:8:9: flow_control.quota_scheduler: scheduler.workloads[0].parameters.priority must be within 0..255, got 300`,
		`schedulers.bad.yaml:8:9: flow_control.quota_scheduler: scheduler.workloads[1].parameters.tokens must be a finite number ≥ 0, got -1`,
		`schedulers.bad.yaml:8:9: flow_control.quota_scheduler: scheduler.workloads[1].name: "a" is used twice`,
		`schedulers.bad.yaml:18:9: flow_control.concurrency_limiter: in_ports.max_concurrency is required`,
		`schedulers.bad.yaml:18:9: flow_control.concurrency_limiter: request_parameters.denied_response_status_code: 99 is not an HTTP status code`,
		`schedulers.bad.yaml:28:35: unknown field "max_inflight" in spec.circuit.components[2].flow_control.concurrency_scheduler.concurrency_limiter; valid fields: limit_by_label_key, max_inflight_duration`,
	},
	"aperture-values.bad.yaml": {
		`aperture-values.bad.yaml:3:12: this is the values file of Aperture's blueprint "rate-limiting/base", not a policy: render it with aperturectl blueprints generate and load the Policy it writes (Aperture's format loads as it is), or start from a FluxGate blueprint (fluxgate blueprints list)`,
	},
	"bad-apiversion.bad.yaml": {
		`bad-apiversion.bad.yaml:1:13: unsupported apiVersion "fluxgate.io/v1"; want fluxgate.io/v1beta1`,
	},
	"bad-duration.bad.yaml": {
		`bad-duration.bad.yaml:6:26: invalid duration "fast": want a number with a unit, such as 100ms or 1m30s`,
		`bad-duration.bad.yaml:14:26: evaluation_interval must be at least 10ms, got 1ms`,
		`bad-duration.bad.yaml:23:29: invalid duration "-1s": must not be negative`,
	},
	"bad-kind.bad.yaml": {
		`bad-kind.bad.yaml:2:7: unsupported kind "Flow"; want Policy or TrafficPolicy`,
		`bad-kind.bad.yaml:3:18: invalid name "Bad_Name": must be lowercase letters, digits, '-' and '.', start and end with a letter or digit, at most 253 characters`,
		`bad-kind.bad.yaml:6:1: missing required field "apiVersion"`,
		`bad-kind.bad.yaml:6:1: missing required field "kind"`,
	},
	"bad-name.bad.yaml": {
		`bad-name.bad.yaml:4:9: invalid name "Checkout_Policy": must be lowercase letters, digits, '-' and '.', start and end with a letter or digit, at most 253 characters`,
		`bad-name.bad.yaml:5:14: invalid namespace "../etc": must be lowercase letters, digits, '-' and '.', start and end with a letter or digit, at most 253 characters`,
	},
	"bad-nesting.bad.yaml": {
		`bad-nesting.bad.yaml:7:9: component kind "test_group.nested" must be written nested: test_group: {nested: ...}`,
		`bad-nesting.bad.yaml:8:21: test_group must have exactly one key, the component kind; got 2: nested, extra`,
		`bad-nesting.bad.yaml:9:9: a component must have exactly one key, the component kind; got 2: test_kind, test_group`,
		`bad-nesting.bad.yaml:11:21: expected test_group to be a mapping with one key, the component kind; got sequence`,
		`bad-nesting.bad.yaml:12:9: expected a component to be a mapping with one key, the component kind; got string "just-a-string"`,
		`bad-nesting.bad.yaml:13:9: test_kind: gain must not be negative, got -1`,
		`bad-nesting.bad.yaml:14:29: expected string, got int 5`,
		`bad-nesting.bad.yaml:15:9: component must not be empty`,
	},
	"bad-regex.bad.yaml": {
		"bad-regex.bad.yaml:12:53: invalid regex \"([a-z\": error parsing regexp: missing closing ]: `[a-z`",
	},
	"buckets.bad.yaml": {
		`buckets.bad.yaml:9:35: buckets must be strictly increasing; bucket 2 (5) is not greater than bucket 1 (5)`,
		`buckets.bad.yaml:11:9: at most one of static_buckets, linear_buckets, exponential_buckets, exponential_buckets_range may be set; got linear_buckets, exponential_buckets`,
		`buckets.bad.yaml:15:20: at least one selector is required`,
		`buckets.bad.yaml:16:38: start must be greater than 0, got 0`,
		`buckets.bad.yaml:16:49: factor must be greater than 1, got 1`,
		`buckets.bad.yaml:16:59: count must be between 1 and 1000, got 0`,
		`buckets.bad.yaml:18:9: invalid flux meter name "bad name": must be letters, digits, '_', '-', '.' and '/', start and end with a letter or digit, at most 253 characters`,
		`buckets.bad.yaml:20:9: a classifier needs rules or rego`,
		`buckets.bad.yaml:20:69: operator In needs at least one value`,
		`buckets.bad.yaml:20:112: unknown operator "Maybe"; want In, NotIn, Exists or DoesNotExist`,
		`buckets.bad.yaml:21:9: classifier must not be empty`,
	},
	"classifier.bad.yaml": {
		`classifier.bad.yaml:10:24: an extractor must set exactly one of from, json, address, path_templates; got none`,
		`classifier.bad.yaml:12:24: an extractor must set exactly one of from, json, address, path_templates; got from, address`,
		`classifier.bad.yaml:14:53: invalid JSON pointer "user/id": must be empty or start with '/'`,
		`classifier.bad.yaml:16:53: invalid JSON pointer "/a~2b": '~' must be followed by 0 or 1`,
		`classifier.bad.yaml:18:31: missing required field "from" in spec.resources.classifiers[0].rules.no-from.extractor.json`,
		`classifier.bad.yaml:20:34: missing required field "from" in spec.resources.classifiers[0].rules.addr.extractor.address`,
		`classifier.bad.yaml:22:13: invalid label name "bad_label!": must be letters, digits, '_', '-' and '.', start and end with a letter or digit, at most 253 characters`,
		`classifier.bad.yaml:27:31: invalid path template "users/{id}": must start with '/'`,
		`classifier.bad.yaml:28:26: invalid path template "/a//b": empty segment`,
		`classifier.bad.yaml:29:27: invalid path template "/a/*/b": '*' must be the last segment`,
		`classifier.bad.yaml:30:26: invalid path template "/a/x*": '*' must be a whole segment`,
		`classifier.bad.yaml:31:27: invalid path template "/a/{id": invalid parameter {id: want {name}, name made of letters, digits and '_'`,
		`classifier.bad.yaml:32:28: invalid path template "/a/{1d}": invalid parameter {1d}: want {name}, name made of letters, digits and '_'`,
		`classifier.bad.yaml:33:28: invalid path template "/a/b{c}": '{' and '}' may only enclose a whole segment`,
		`classifier.bad.yaml:34:27: invalid path template "/a?x=1": must not contain '?' or '#'`,
		`classifier.bad.yaml:36:32: path template "/u/{name}/x" matches the same paths as "/u/{id}/x"`,
		`classifier.bad.yaml:38:59: template_values needs at least one template`,
		`classifier.bad.yaml:40:41: missing required field "template_values" in spec.resources.classifiers[0].rules.missing-templates.extractor.path_templates`,
		`classifier.bad.yaml:47:19: label "tier" is computed by both a rule and rego`,
		`classifier.bad.yaml:48:25: invalid rego label name "user-agent": must be a Rego rule name (letters, digits and '_', not starting with a digit), or several joined by '.'`,
		`classifier.bad.yaml:49:21: invalid rego label name "9lives": must be a Rego rule name (letters, digits and '_', not starting with a digit), or several joined by '.'`,
		`classifier.bad.yaml:52:11: missing required field "module" in spec.resources.classifiers[2].rego`,
		`classifier.bad.yaml:55:17: rule "bare" needs an extractor`,
		`classifier.bad.yaml:56:15: rego needs at least one label`,
	},
	"duplicate-document.bad.yaml": {
		`duplicate-document.bad.yaml:9:9: duplicate object shop/p, first defined at line 1`,
	},
	"duplicate-key.bad.yaml": {
		`duplicate-key.bad.yaml:5:3: duplicate key "name", first defined at line 4`,
	},
	"missing-required.bad.yaml": {
		`missing-required.bad.yaml:4:3: missing required field "name" in metadata`,
		`missing-required.bad.yaml:10:13: missing required field "control_point" in spec.resources.flux_meters.m.selectors[0]`,
	},
	"not-mapping.bad.yaml": {
		`not-mapping.bad.yaml:1:1: expected a mapping with apiVersion, kind, metadata and spec, got sequence`,
	},
	"redis-limiter.bad.yaml": {
		`redis-limiter.bad.yaml:7:9: flow_control.rate_limiter: parameters.backend: "memcached" is not one of local, redis`,
		`redis-limiter.bad.yaml:7:9: flow_control.rate_limiter: parameters.algorithm: "leaky_bucket" is not one of token_bucket, sliding_window`,
		`redis-limiter.bad.yaml:7:9: flow_control.rate_limiter: parameters.failure_mode: "fail_maybe" is not one of fail_open, fail_closed, local_fallback`,
		`redis-limiter.bad.yaml:7:9: flow_control.rate_limiter: parameters.redis_timeout: must be within 0..1s, got 2s`,
		`redis-limiter.bad.yaml:12:9: flow_control.rate_limiter: parameters.algorithm: sliding_window needs backend: redis`,
		`redis-limiter.bad.yaml:12:9: flow_control.rate_limiter: parameters.failure_mode: applies only to backend: redis`,
		`redis-limiter.bad.yaml:12:9: flow_control.rate_limiter: parameters.redis_timeout: applies only to backend: redis`,
		`redis-limiter.bad.yaml:17:9: flow_control.rate_limiter: parameters.local_fallback_share: applies only to failure_mode: local_fallback`,
		`redis-limiter.bad.yaml:22:9: flow_control.rate_limiter: parameters.local_fallback_share: must be within (0, 1], got 1.5`,
	},
	"ratelimit-keys.bad.yaml": {
		`ratelimit-keys.bad.yaml:7:9: flow_control.rate_limiter: parameters: set at most one of limit_by_label_key and key_extractor`,
		`ratelimit-keys.bad.yaml:7:9: flow_control.rate_limiter: parameters.key_extractor: invalid key_extractor "cookie.session"; want "header.<Name>", "ip", "api_key" or "label.<key>"`,
		`ratelimit-keys.bad.yaml:7:9: flow_control.rate_limiter: parameters.trusted_proxies: applies only to key_extractor: ip`,
		`ratelimit-keys.bad.yaml:12:9: flow_control.rate_limiter: parameters.key_extractor: invalid key_extractor "header.X Client": bad header name; want "header.<Name>", "ip", "api_key" or "label.<key>"`,
		`ratelimit-keys.bad.yaml:12:9: flow_control.rate_limiter: parameters.trusted_proxies: must be within 0..32, got -1`,
		`ratelimit-keys.bad.yaml:17:9: flow_control.rate_limiter: parameters.key_extractor: invalid key_extractor "ip.v6"; want "header.<Name>", "ip", "api_key" or "label.<key>"`,
		`ratelimit-keys.bad.yaml:22:9: flow_control.rate_limiter: parameters.lazy_sync: applies only to backend: redis`,
		`ratelimit-keys.bad.yaml:27:9: flow_control.rate_limiter: parameters.lazy_sync: needs algorithm: token_bucket`,
		`ratelimit-keys.bad.yaml:32:9: flow_control.rate_limiter: parameters.failure_mode: does not apply with lazy_sync, which always decides locally`,
		`ratelimit-keys.bad.yaml:37:9: flow_control.rate_limiter: parameters.lazy_sync.num_sync: must be within 1..1000, got 1001`,
		`ratelimit-keys.bad.yaml:42:9: flow_control.rate_limiter: parameters.lazy_sync.num_sync: interval/num_sync must be at least 1ms, got 500µs`,
	},
	"several.bad.yaml": {
		`several.bad.yaml:5:14: missing required field "name" in spec.targetRef`,
		`several.bad.yaml:7:16: unknown algorithm "random"; want round-robin, weighted-round-robin, least-request, adaptive`,
		`several.bad.yaml:9:34: requestsPerSecond must be a positive number, got 0`,
		`several.bad.yaml:9:48: burstSize must not be negative, got -1`,
		`several.bad.yaml:9:66: invalid keyExtractor "cookie.session"; want "header.<Name>", "ip" or "label.<key>"`,
		`several.bad.yaml:11:13: weight must be between 0 and 100, got 120`,
		`several.bad.yaml:13:9: a match must set exactly one of header, cookie`,
		`several.bad.yaml:14:9: a match must set exactly one of header, cookie`,
		`several.bad.yaml:15:32: targetErrorRate must be between 0 and 1, got 1.5`,
	},
	"syntax.bad.yaml": {
		`syntax.bad.yaml:2: syntax error: did not find expected ',' or '}'`,
	},
	"unknown-component.bad.yaml": {
		`unknown-component.bad.yaml:7:9: unknown component kind "ema"; registered kinds: flow_control.adaptive_concurrency, flow_control.concurrency_limiter, flow_control.concurrency_scheduler, flow_control.load_scheduler, flow_control.quota_scheduler, flow_control.rate_limiter, flow_control.sampler, test_group.nested, test_kind`,
		`unknown-component.bad.yaml:8:22: unknown component kind "test_group.other"; registered kinds: flow_control.adaptive_concurrency, flow_control.concurrency_limiter, flow_control.concurrency_scheduler, flow_control.load_scheduler, flow_control.quota_scheduler, flow_control.rate_limiter, flow_control.sampler, test_group.nested, test_kind`,
	},
	"unknown-field.bad.yaml": {
		`unknown-field.bad.yaml:5:3: unknown field "nmespace" in metadata; valid fields: labels, name, namespace`,
		`unknown-field.bad.yaml:9:5: unknown field "evaluaton_interval" in spec.circuit; valid fields: components, evaluation_interval`,
	},
	"wrong-type.bad.yaml": {
		`wrong-type.bad.yaml:4:9: expected string, got int 5`,
		`wrong-type.bad.yaml:8:14: expected bool, got string "yes"`,
		`wrong-type.bad.yaml:9:13: expected int, got string "ten"`,
		`wrong-type.bad.yaml:10:14: expected mapping, got sequence`,
	},
}

func TestParseBadFiles(t *testing.T) {
	files, err := filepath.Glob("testdata/*.bad.yaml")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, path := range files {
		name := filepath.Base(path)
		seen[name] = true
		t.Run(name, func(t *testing.T) {
			want, ok := expectedErrors[name]
			if !ok {
				t.Fatalf("no expectedErrors entry for %s", name)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			docs, err := Parse(name, data)
			if docs != nil {
				t.Errorf("got %d documents with errors", len(docs))
			}
			var list strictyaml.ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("error %v (%T) is not a strictyaml.ErrorList", err, err)
			}
			var got []string
			for _, e := range list {
				got = append(got, e.Error())
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("errors:\n got:\n\t%s\nwant:\n\t%s", strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
			}
		})
	}
	for name := range expectedErrors {
		if !seen[name] {
			t.Errorf("expectedErrors has %s, which is not in testdata", name)
		}
	}
}

func parseFile(t *testing.T, path string) []*Document {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	docs, err := Parse(path, data)
	if err != nil {
		t.Fatalf("Parse(%s): %v", path, err)
	}
	return docs
}

// clearPositions zeroes component positions, which change when a document
// is re-encoded.
func clearPositions(o Object) Object {
	if p, ok := o.(*Policy); ok {
		for _, c := range p.Spec.Circuit.Components {
			c.Line, c.Column = 0, 0
		}
	}
	return o
}

func TestParseFull(t *testing.T) {
	docs := parseFile(t, "testdata/full.yaml")
	if len(docs) != 2 {
		t.Fatalf("got %d documents, want 2", len(docs))
	}
	header := func(kind, ns, name string) Header {
		return Header{APIVersion: APIVersion, Kind: kind, Metadata: Metadata{Name: name, Namespace: ns}}
	}
	wantPolicy := &Policy{
		Header: header(KindPolicy, "shop", "service-protection"),
		Spec: PolicySpec{
			Resources: Resources{
				FluxMeters: map[string]*FluxMeter{
					"checkout-latency": {
						Selectors: []Selector{{
							ControlPoint: "ingress",
							Service:      "checkout.shop.svc.cluster.local",
							AgentGroup:   "default",
							LabelMatcher: &LabelMatcher{
								MatchLabels: map[string]string{"http.method": "GET"},
								MatchList: []MatchRequirement{
									{Key: "tier", Operator: OpIn, Values: []string{"gold", "silver"}},
									{Key: "bot", Operator: OpDoesNotExist},
								},
								Expression: &MatchExpression{Any: &MatchExpressionList{Of: []*MatchExpression{
									{LabelExists: "user"},
									{LabelEquals: &EqualsMatchExpression{Label: "region", Value: "eu"}},
									{LabelMatches: &MatchesMatchExpression{Label: "path", Regex: "^/api/"}},
									{Not: &MatchExpression{LabelExists: "internal"}},
								}}},
							},
						}},
						AttributeKey:       DefaultAttributeKey,
						ExponentialBuckets: &ExponentialBuckets{Start: 1, Factor: 2, Count: 4},
					},
					"defaults": {
						Selectors:    []Selector{{ControlPoint: "egress", AgentGroup: "edge"}},
						AttributeKey: DefaultAttributeKey,
					},
				},
				Classifiers: []*Classifier{
					{
						Selectors: []Selector{{ControlPoint: "ingress", AgentGroup: "default"}},
						Rules: map[string]*Rule{"user-agent": {
							Extractor: &Extractor{From: "request.http.headers.user-agent"},
							Telemetry: true,
						}},
					},
					{
						Selectors: []Selector{{ControlPoint: "ingress", AgentGroup: "default"}},
						Rego: &Rego{
							Module: "package fluxgate.example\ntier := \"gold\"\n",
							Labels: map[string]*RegoLabel{"tier": {Telemetry: true}},
						},
					},
				},
			},
			Circuit: Circuit{
				EvaluationInterval: 500 * time.Millisecond,
				Components: []*Component{
					{Kind: "test_kind", Spec: &testKind{Signal: "a", Gain: 2}, Line: 46, Column: 9},
					{Kind: "test_group.nested", Spec: &testNested{Signal: "b"}, Line: 47, Column: 9},
				},
			},
		},
	}
	wantPolicy.Metadata.Labels = map[string]string{"team": "checkout"}
	if got := docs[0].Object; !reflect.DeepEqual(got, wantPolicy) {
		g, _ := json.MarshalIndent(got, "", " ")
		w, _ := json.MarshalIndent(wantPolicy, "", " ")
		t.Errorf("policy:\n got %s\nwant %s", g, w)
	}
	if docs[0].Line != 2 || docs[1].Line != 50 || docs[0].File != "testdata/full.yaml" {
		t.Errorf("positions: %s:%d, %d", docs[0].File, docs[0].Line, docs[1].Line)
	}

	wantTraffic := &TrafficPolicy{
		Header: header(KindTrafficPolicy, "default", "minimal"),
		Spec: TrafficPolicySpec{
			TargetRef: TargetRef{Name: "web"},
			LoadBalancing: &LoadBalancing{
				Algorithm:   RoundRobin,
				HealthCheck: &HealthCheck{Interval: DefaultHealthCheckInterval, UnhealthyThreshold: DefaultUnhealthyThreshold},
			},
		},
	}
	if got := docs[1].Object; !reflect.DeepEqual(got, wantTraffic) {
		t.Errorf("traffic policy:\n got %#v\nwant %#v", got, wantTraffic)
	}
	if key := docs[1].Object.ObjectHeader().Key(); key.String() != "default/minimal" {
		t.Errorf("key %v", key)
	}

	fm := wantPolicy.Spec.Resources.FluxMeters
	if got := fm["checkout-latency"].Buckets(); !reflect.DeepEqual(got, []float64{1, 2, 4, 8}) {
		t.Errorf("exponential buckets %v", got)
	}
	if got := fm["defaults"].Buckets(); !reflect.DeepEqual(got, DefaultBuckets) {
		t.Errorf("default buckets %v", got)
	}
}

func TestBuckets(t *testing.T) {
	for _, tt := range []struct {
		fm   FluxMeter
		want []float64
	}{
		{FluxMeter{StaticBuckets: &StaticBuckets{Buckets: []float64{1, 3}}}, []float64{1, 3}},
		{FluxMeter{LinearBuckets: &LinearBuckets{Start: 10, Width: 5, Count: 3}}, []float64{10, 15, 20}},
		{FluxMeter{ExponentialBucketsRange: &ExponentialBucketsRange{Min: 1, Max: 100, Count: 3}}, []float64{1, 10, 100}},
		{FluxMeter{}, []float64{5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000}},
	} {
		got := tt.fm.Buckets()
		if len(got) != len(tt.want) {
			t.Errorf("%+v: got %v, want %v", tt.fm, got, tt.want)
			continue
		}
		for i := range got {
			if d := got[i] - tt.want[i]; d > 1e-9 || d < -1e-9 {
				t.Errorf("%+v: got %v, want %v", tt.fm, got, tt.want)
			}
		}
	}
}

// policyExamples are the examples that use only the component kinds this
// package registers. Examples with circuits need the circuit package's
// kinds; cmd/fluxgate's TestPolicyValidateExamples checks every example
// with the agent's full set of kinds and compile checks.
var policyExamples = []string{"examples/placeholder.yaml", "examples/checkout-traffic.yaml", "examples/per-user-limit.yaml"}

func TestExamples(t *testing.T) {
	files := policyExamples
	var traffic *TrafficPolicy
	for _, f := range files {
		for _, d := range parseFile(t, f) {
			if tp, ok := d.Object.(*TrafficPolicy); ok {
				traffic = tp
			}
		}
	}
	want := &TrafficPolicy{
		Header: Header{APIVersion: APIVersion, Kind: KindTrafficPolicy,
			Metadata: Metadata{Name: "checkout-service-policy", Namespace: "payments"}},
		Spec: TrafficPolicySpec{
			TargetRef: TargetRef{APIGroup: "apps/v1", Kind: "Deployment", Name: "checkout-service"},
			LoadBalancing: &LoadBalancing{Algorithm: WeightedRoundRobin,
				HealthCheck: &HealthCheck{Interval: 200 * time.Millisecond, UnhealthyThreshold: 3}},
			RateLimit: &RateLimit{RequestsPerSecond: 1200, BurstSize: 150, KeyExtractor: "header.X-Client-Id"},
			Canary: &Canary{Enabled: true, Weight: 10,
				Match:   []CanaryMatch{{Header: &NameValueMatch{Name: "x-canary", Value: "true"}}},
				Metrics: &CanaryMetrics{TargetErrorRate: 0.01, TargetP99Latency: 300 * time.Millisecond}},
		},
	}
	if !reflect.DeepEqual(traffic, want) {
		t.Errorf("got %#v\nwant %#v", traffic, want)
	}
}

func TestPlaceholder(t *testing.T) {
	docs := parseFile(t, "examples/placeholder.yaml")
	p := docs[0].Object.(*Policy)
	if p.Key() != (Key{"default", "placeholder"}) || p.Spec.Circuit.EvaluationInterval != time.Second ||
		p.Spec.Circuit.Components == nil || len(p.Spec.Circuit.Components) != 0 {
		t.Errorf("got %#v", p)
	}
}

func TestEmptyFile(t *testing.T) {
	for _, in := range []string{"", "# nothing\n", "---\n---\n"} {
		docs, err := Parse("e.yaml", []byte(in))
		if docs != nil || err != nil {
			t.Errorf("%q: %v, %v", in, docs, err)
		}
	}
}

func TestSourceRoundTrip(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, f := range append(files, policyExamples...) {
		if strings.HasSuffix(f, ".bad.yaml") {
			continue
		}
		for _, d := range parseFile(t, f) {
			again, err := Parse(f, d.Source)
			if err != nil || len(again) != 1 {
				t.Fatalf("%s: re-parse of Source: %v\n%s", f, err, d.Source)
			}
			if !reflect.DeepEqual(clearPositions(again[0].Object), clearPositions(d.Object)) {
				t.Errorf("%s: Source parses to a different object:\n%s", f, d.Source)
			}
		}
	}
	docs := parseFile(t, "testdata/full.yaml")
	if src := string(docs[0].Source); !strings.Contains(src, "# Two objects in one file") ||
		!strings.Contains(src, "\n  resources:\n    flux_meters:\n") {
		t.Errorf("Source lost comments or is not 2-space indented:\n%s", src)
	}
}

func TestComponentMarshalYAML(t *testing.T) {
	p := &Policy{Spec: PolicySpec{Circuit: Circuit{Components: []*Component{
		{Kind: "test_kind", Spec: &testKind{Signal: "s", Gain: 3}},
		{Kind: "test_group.nested", Spec: &testNested{Signal: "n"}},
	}}}}
	var buf strings.Builder
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(p.Spec.Circuit.Components); err != nil {
		t.Fatal(err)
	}
	out := []byte(buf.String())
	want := "- test_kind:\n    signal: s\n    gain: 3\n- test_group:\n    nested:\n      signal: \"n\"\n"
	if string(out) != want {
		t.Errorf("got\n%s\nwant\n%s", out, want)
	}
	var back []*Component
	if err := strictyaml.Unmarshal("", out, &back); err != nil {
		t.Fatal(err)
	}
	for _, c := range back {
		c.Line, c.Column = 0, 0
	}
	if !reflect.DeepEqual(back, p.Spec.Circuit.Components) {
		t.Errorf("round trip: got %#v", back)
	}
}

func TestRegistry(t *testing.T) {
	want := []string{"flow_control.adaptive_concurrency", "flow_control.concurrency_limiter", "flow_control.concurrency_scheduler", "flow_control.load_scheduler", "flow_control.quota_scheduler", "flow_control.rate_limiter", "flow_control.sampler", "test_group.nested", "test_kind"}
	if got := ComponentKinds(); !reflect.DeepEqual(got, want) {
		t.Errorf("ComponentKinds() = %v, want %v", got, want)
	}
	newSpec := func() any { return &testNested{} }
	for _, kind := range []string{"test_kind", "test_group", "test_kind.sub", "", "a.b.c", ".x", "x."} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("RegisterComponent(%q) did not panic", kind)
				}
			}()
			RegisterComponent(kind, newSpec)
		}()
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Errorf("RegisterComponent with a non-pointer spec did not panic")
			}
		}()
		RegisterComponent("fresh_kind", func() any { return testNested{} })
	}()
	if got := len(ComponentKinds()); got != len(want) {
		t.Errorf("failed registrations changed the registry: %v", ComponentKinds())
	}
}

func TestValidateInGo(t *testing.T) {
	p := &Policy{Spec: PolicySpec{Circuit: Circuit{Components: []*Component{
		{Kind: "test_kind", Spec: &testKind{Signal: "forbidden", Gain: -2}},
		{Kind: "nope", Spec: &testKind{}},
		{Kind: "test_group.nested", Spec: &testKind{}},
		nil,
	}}}}
	p.Metadata.Name = "p"
	p.SetDefaults()
	err := p.Validate()
	var got []string
	for _, e := range unjoin(err) {
		var fe *FieldError
		if !errors.As(e, &fe) {
			t.Fatalf("%v is not a *FieldError", e)
		}
		got = append(got, fe.Error())
	}
	want := []string{
		"spec.circuit.components[0]: test_kind: gain must not be negative, got -2",
		"spec.circuit.components[0]: test_kind: signal name is forbidden",
		`spec.circuit.components[1]: unknown component kind "nope"; registered kinds: flow_control.adaptive_concurrency, flow_control.concurrency_limiter, flow_control.concurrency_scheduler, flow_control.load_scheduler, flow_control.quota_scheduler, flow_control.rate_limiter, flow_control.sampler, test_group.nested, test_kind`,
		"spec.circuit.components[2]: test_group.nested: spec has type *policies.testKind, want *policies.testNested",
		"spec.circuit.components[3]: component must not be empty",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got\n\t%s\nwant\n\t%s", strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
	}

	tp := &TrafficPolicy{Spec: TrafficPolicySpec{TargetRef: TargetRef{Name: "x"}}}
	tp.Metadata.Name = "t"
	tp.SetDefaults()
	if err := tp.Validate(); err != nil {
		t.Errorf("valid traffic policy: %v", err)
	}
	tp.Spec.RateLimit = &RateLimit{RequestsPerSecond: 1, KeyExtractor: "label."}
	if err := tp.Validate(); err == nil || !strings.Contains(err.Error(), `spec.rateLimit.keyExtractor: invalid keyExtractor "label."`) {
		t.Errorf("got %v", err)
	}
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	if err == nil {
		return nil
	}
	return []error{err}
}

func TestKeyExtractor(t *testing.T) {
	for in, ok := range map[string]bool{
		"": true, "ip": true, "header.X-Client-Id": true, "label.user": true,
		"header.": false, "header.bad name": false, "label.": false, "cookie.x": false, "IP": false,
	} {
		if got := checkKeyExtractor(in) == ""; got != ok {
			t.Errorf("checkKeyExtractor(%q) ok = %v, want %v", in, got, ok)
		}
	}
}

func FuzzParse(f *testing.F) {
	testdata, _ := filepath.Glob("testdata/*.yaml")
	aperture, _ := filepath.Glob("testdata/aperture/*.yaml")
	for _, files := range [][]string{testdata, aperture, policyExamples} {
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		docs, err := Parse("f.yaml", data)
		if err != nil {
			return
		}
		for _, d := range docs {
			again, err := Parse("f.yaml", d.Source)
			if err != nil {
				t.Fatalf("Source of a valid document does not parse: %v\ninput:\n%s\nsource:\n%s", err, data, d.Source)
			}
			if len(again) != 1 {
				t.Fatalf("Source holds %d documents, want 1", len(again))
			}
		}
	})
}
