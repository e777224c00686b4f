package gateway

import (
	"strings"
	"testing"

	"github.com/fluxgate/fluxgate/policies"
)

func parseTraffic(t *testing.T, doc string) *policies.TrafficPolicy {
	t.Helper()
	docs, err := policies.Parse("tp.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return docs[0].Object.(*policies.TrafficPolicy)
}

const tpDoc = `apiVersion: fluxgate.io/v1beta1
kind: TrafficPolicy
metadata: {name: %s, namespace: payments}
spec:
  targetRef: {name: %s}
  rateLimit: {requestsPerSecond: 10, keyExtractor: %s}
  canary: {enabled: %s, weight: 7, metrics: {targetErrorRate: 0.02, minSamples: 5}}
`

func TestTrafficCompile(t *testing.T) {
	mk := func(name, target, key, enabled string) *policies.TrafficPolicy {
		doc := tpDoc
		for _, v := range []string{name, target, key, enabled} {
			doc = strings.Replace(doc, "%s", v, 1)
		}
		return parseTraffic(t, doc)
	}
	base := Config{
		Upstreams: []UpstreamConfig{
			{Name: "checkout", Targets: []TargetConfig{{Address: "127.0.0.1:1"}}},
			{Name: "checkout-canary", Targets: []TargetConfig{{Address: "127.0.0.1:2"}}},
			{Name: "v2", Targets: []TargetConfig{{Address: "127.0.0.1:3"}}},
			{Name: "lonely", Targets: []TargetConfig{{Address: "127.0.0.1:4"}}},
		},
		Routes: []RouteConfig{
			{ID: "a", Upstream: "checkout"},
			{ID: "b", Upstream: "checkout", ControlPoint: "edge", Canary: &CanaryConfig{Upstream: "v2", Weight: 1, Sticky: true}},
		},
	}
	var tc trafficCompiler
	good := mk("good", "checkout", "header.X-Client-Id", "true")
	cfg, ps, errs := tc.compile(base, []*policies.TrafficPolicy{
		good,
		mk("dup", "checkout", "ip", "true"),
		mk("missing", "nope", "ip", "true"),
		mk("norute", "lonely", "ip", "true"),
	})
	if len(errs) != 3 {
		t.Fatalf("errors %v, want 3 (dup, missing, no route)", errs)
	}
	for i, want := range []string{"already managed by trafficpolicy payments/good", `no gateway upstream named "nope"`, `no gateway route sends to upstream "lonely"`} {
		if !strings.Contains(errs[i].Error(), want) {
			t.Errorf("error %d %q, want it to contain %q", i, errs[i], want)
		}
	}
	if a := cfg.Routes[0].Canary; a == nil || a.Upstream != "checkout-canary" || a.Weight != 7 || a.Metrics.MinSamples != 5 || a.Metrics.TargetErrorRate != 0.02 {
		t.Errorf("route a canary %+v, want checkout-canary at 7 judged", a)
	}
	if b := cfg.Routes[1].Canary; b == nil || b.Upstream != "v2" || b.Weight != 7 || !b.Sticky {
		t.Errorf("route b canary %+v, want its own v2, sticky, at 7", b)
	}
	if base.Routes[0].Canary != nil || base.Routes[1].Canary.Weight != 1 {
		t.Errorf("compile wrote into the base config")
	}
	if len(ps) != 1 {
		t.Fatalf("%d policies, want 1", len(ps))
	}
	lim := ps[0].Spec.Circuit.Components[0].Spec.(*policies.RateLimiter)
	if lim.Parameters.LimitByLabelKey != "http.request.header.x_client_id" || len(lim.Selectors) != 2 ||
		lim.Selectors[0].ControlPoint != "ingress" || lim.Selectors[1].ControlPoint != "edge" ||
		lim.Selectors[1].LabelMatcher.MatchLabels[LabelRouteID] != "b" {
		t.Errorf("rate limiter %+v", lim)
	}
	if c, _ := lim.InPorts.BucketCapacity.Constant(); c != 10 {
		t.Errorf("bucket capacity %v without burstSize, want requestsPerSecond 10", c)
	}
	// Unchanged TrafficPolicy and routes: the same Policy, so the engine
	// keeps its buckets as they are.
	_, ps2, _ := tc.compile(base, []*policies.TrafficPolicy{good})
	if len(ps2) != 1 || ps2[0] != ps[0] {
		t.Errorf("recompiling an unchanged TrafficPolicy built a new Policy")
	}
	// enabled: false removes the canaries.
	cfg, _, errs = tc.compile(base, []*policies.TrafficPolicy{mk("off", "checkout", "ip", "false")})
	if len(errs) != 0 || cfg.Routes[0].Canary != nil || cfg.Routes[1].Canary != nil {
		t.Errorf("canary enabled false: errs %v, canaries %+v %+v", errs, cfg.Routes[0].Canary, cfg.Routes[1].Canary)
	}
	for ext, want := range map[string]string{"ip": "source.address", "label.user": "user", "": "", "header.X-Api-Key": "http.request.header.x_api_key"} {
		if got := keyLabel(ext); got != want {
			t.Errorf("keyLabel(%q) = %q, want %q", ext, got, want)
		}
	}
}
