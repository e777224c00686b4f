package controlpoint

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/fluxgate/fluxgate/controlpoint/ratelimit"

	"github.com/fluxgate/fluxgate/controlpoint/controlpointtest"
	"github.com/fluxgate/fluxgate/metricnames"
	"github.com/fluxgate/fluxgate/policies"
)

var t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

// parsePolicy parses one Policy document or fails the test.
func parsePolicy(t testing.TB, src string) *policies.Policy {
	t.Helper()
	docs, err := policies.Parse("test.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != 1 {
		t.Fatalf("want one document, got %d", len(docs))
	}
	return docs[0].Object.(*policies.Policy)
}

func newEngine(t testing.TB, reg prometheus.Registerer, srcs ...string) *Engine {
	t.Helper()
	e, err := New(Options{Registerer: reg, DecisionLogPerSecond: -1})
	if err != nil {
		t.Fatal(err)
	}
	var ps []*policies.Policy
	for _, s := range srcs {
		ps = append(ps, parsePolicy(t, s))
	}
	if err := e.SetPolicies(ps); err != nil {
		t.Fatal(err)
	}
	return e
}

// The policy of issue 3, verbatim.
const perUserLimit = controlpointtest.PerUserLimit

func check(e *Engine, now time.Time, cp string, labels map[string]string) *Decision {
	var d Decision
	e.Check(context.Background(), now, &Request{ControlPoint: cp, Labels: labels}, &d)
	return &d
}

func TestPerUserLimitBurst(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEngine(t, reg, perUserLimit)
	count := func(user, tier string) (accepted int, last *Decision) {
		for i := 0; i < 20; i++ {
			last = check(e, t0.Add(time.Duration(i)*time.Millisecond), "ingress", map[string]string{"user": user, "tier": tier})
			if last.Accepted {
				accepted++
			}
		}
		return accepted, last
	}
	if n, d := count("alice", "free"); n != 5 {
		t.Fatalf("alice: %d accepted, want 5", n)
	} else {
		r := d.Rejector()
		if r == nil || r.PolicyName != "per-user-limit" || r.ComponentID != "0" || r.Reason != ReasonRateLimited || d.StatusCode != 429 || r.LimitKey != "alice" {
			t.Fatalf("rejection = %+v (decision %+v)", r, d)
		}
		if d.Wait <= 0 || d.Wait > 12*time.Second {
			t.Fatalf("wait = %v, want about 12s (one token per 12s)", d.Wait)
		}
	}
	if n, _ := count("bob", "free"); n != 5 {
		t.Fatalf("bob: %d accepted, want his own 5", n)
	}
	if n, d := count("carol", "paid"); n != 20 || len(d.Limiters) != 0 {
		t.Fatalf("paid flows: %d accepted, %d limiters; want all 20 and no limiter", n, len(d.Limiters))
	}
	got := testutil.ToFloat64(e.decisions.WithLabelValues("per-user-limit", "0", "ingress", metricnames.DecisionRejected, "rate_limited"))
	if got != 30 {
		t.Fatalf("rejected counter = %v, want 30", got)
	}
	if got := testutil.ToFloat64(e.decisions.WithLabelValues("", "", "ingress", metricnames.DecisionAccepted, "no_match")); got != 20 {
		t.Fatalf("no_match counter = %v, want 20 (carol's flows)", got)
	}
}

func TestUnknownControlPointAcceptedAndCounted(t *testing.T) {
	e := newEngine(t, nil, perUserLimit)
	d := check(e, t0, "egress", map[string]string{"a": "b"})
	if !d.Accepted || len(d.Limiters) != 0 {
		t.Fatalf("decision = %+v", d)
	}
	if got := testutil.ToFloat64(e.decisions.WithLabelValues("", "", "egress", metricnames.DecisionAccepted, "no_match")); got != 1 {
		t.Fatalf("no_match = %v", got)
	}
	cps := e.ControlPoints()
	if len(cps) != 1 || cps[0].Name != "egress" || cps[0].Checks != 1 || strings.Join(cps[0].LabelKeys, ",") != "a" {
		t.Fatalf("control points = %+v", cps)
	}
}

func TestControlPointCardinalityCap(t *testing.T) {
	e, err := New(Options{MaxControlPoints: 3, DecisionLogPerSecond: -1})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		check(e, t0, fmt.Sprint("cp-", i), nil)
	}
	cps := e.ControlPoints()
	if len(cps) != 4 || cps[0].Name != OtherControlPoint || cps[0].Checks != 47 {
		t.Fatalf("control points = %+v", cps)
	}
	if n := testutil.CollectAndCount(e.decisions); n != 4 {
		t.Fatalf("%d no_match series, want 3 + overflow", n)
	}
}

const twoLimiters = `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: chain}
spec:
  circuit:
    components:
      - flow_control:
          rate_limiter:
            selectors: [{control_point: api}]
            in_ports:
              bucket_capacity: {constant_signal: {value: 10}}
              fill_amount: {constant_signal: {value: 0}}
            parameters: {interval: 1s}
      - flow_control:
          rate_limiter:
            dry_run: %v
            selectors: [{control_point: api}]
            in_ports:
              bucket_capacity: {constant_signal: {value: 2}}
              fill_amount: {constant_signal: {value: 0}}
            parameters: {interval: 1s}
      - flow_control:
          rate_limiter:
            selectors: [{control_point: api}]
            in_ports:
              bucket_capacity: {constant_signal: {value: 3}}
              fill_amount: {constant_signal: {value: 0}}
            parameters: {interval: 1s}
`

func TestRejectionReturnsEarlierTokens(t *testing.T) {
	e := newEngine(t, nil, fmt.Sprintf(twoLimiters, false))
	accepted := 0
	for i := 0; i < 6; i++ {
		d := check(e, t0, "api", nil)
		if d.Accepted {
			accepted++
		} else if d.Rejector().ComponentID != "1" {
			t.Fatalf("rejected by %s, want component 1", d.Rejector().ComponentID)
		}
	}
	if accepted != 2 {
		t.Fatalf("accepted %d, want 2", accepted)
	}
	// Component 0 gave back the tokens of the 4 rejected flows: 10-2 left.
	x := e.Explain(context.Background(), t0, &Request{ControlPoint: "api"})
	if x.Components[0].Remaining != 7 || x.Components[1].Remaining != 0 {
		t.Fatalf("explain = %+v", x.Components)
	}
}

func TestDryRunCountsAndNeverStopsTheChain(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEngine(t, reg, fmt.Sprintf(twoLimiters, true))
	accepted := 0
	var last *Decision
	for i := 0; i < 6; i++ {
		last = check(e, t0, "api", nil)
		if last.Accepted {
			accepted++
		}
	}
	// The dry-run component (capacity 2) rejects nothing; component 2
	// (capacity 3) still enforces.
	if accepted != 3 {
		t.Fatalf("accepted %d, want 3", accepted)
	}
	if r := last.Rejector(); r == nil || r.ComponentID != "2" {
		t.Fatalf("last rejection = %+v", r)
	}
	if !last.Limiters[1].Dropped || !last.Limiters[1].DryRun {
		t.Fatalf("dry-run decision = %+v", last.Limiters[1])
	}
	if got := testutil.ToFloat64(e.decisions.WithLabelValues("chain", "1", "api", metricnames.DecisionAccepted, "dry_run_rate_limited")); got != 4 {
		t.Fatalf("dry-run would-reject counter = %v, want 4", got)
	}
}

const samplerPolicy = `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: sample}
spec:
  circuit:
    components:
      - flow_control:
          sampler:
            selectors: [{control_point: ingress}]
            in_ports: {accept_percentage: {constant_signal: {value: %v}}}
            parameters: {session_label_key: %s}
`

func TestSamplerIsStickyPerSession(t *testing.T) {
	e := newEngine(t, nil, fmt.Sprintf(samplerPolicy, 30, "session"))
	admitted := 0
	for s := 0; s < 2000; s++ {
		labels := map[string]string{"session": fmt.Sprint("s-", s)}
		first := check(e, t0, "ingress", labels).Accepted
		for i := 0; i < 3; i++ {
			if check(e, t0, "ingress", labels).Accepted != first {
				t.Fatalf("session s-%d got different answers", s)
			}
		}
		if first {
			admitted++
		}
	}
	// 30% of 2000 sessions, with a generous binomial tolerance (σ ≈ 20).
	if admitted < 500 || admitted > 700 {
		t.Fatalf("admitted %d of 2000 sessions, want about 600", admitted)
	}
	var d *Decision
	for i := 0; i < 100; i++ {
		if d = check(e, t0, "ingress", map[string]string{"session": fmt.Sprint("probe-", i)}); !d.Accepted {
			break
		}
	}
	if d.Accepted || d.Reason != ReasonNotSampled || d.StatusCode != 403 {
		t.Fatalf("sampler rejection = %+v", d)
	}
}

func TestSamplerWithoutSessionKey(t *testing.T) {
	e := newEngine(t, nil, fmt.Sprintf(samplerPolicy, 50, `""`))
	admitted := 0
	for i := 0; i < 4000; i++ {
		if check(e, t0, "ingress", nil).Accepted {
			admitted++
		}
	}
	if admitted < 1800 || admitted > 2200 {
		t.Fatalf("admitted %d of 4000 at 50%%", admitted)
	}
}

func TestSignalPortsPassThroughUntilWritten(t *testing.T) {
	src := strings.Replace(perUserLimit, "bucket_capacity: {constant_signal: {value: 5}}", "bucket_capacity: {signal_name: CAPACITY}", 1)
	e := newEngine(t, nil, src)
	for i := 0; i < 10; i++ {
		d := check(e, t0, "ingress", map[string]string{"user": "alice", "tier": "free"})
		if !d.Accepted || !d.Limiters[0].PassThrough {
			t.Fatalf("flow %d with no capacity signal = %+v", i, d)
		}
	}
}

func TestReloadKeepsBucketsAndClampsNewLimit(t *testing.T) {
	e := newEngine(t, nil, perUserLimit)
	for i := 0; i < 3; i++ {
		check(e, t0, "ingress", map[string]string{"user": "alice", "tier": "free"})
	}
	// Same component, capacity lowered from 5 to 1: alice's bucket (2 left)
	// is clamped to 1 at once.
	lowered := strings.Replace(perUserLimit, "bucket_capacity: {constant_signal: {value: 5}}", "bucket_capacity: {constant_signal: {value: 1}}", 1)
	if err := e.SetPolicies([]*policies.Policy{parsePolicy(t, lowered)}); err != nil {
		t.Fatal(err)
	}
	if d := check(e, t0, "ingress", map[string]string{"user": "alice", "tier": "free"}); !d.Accepted || d.Limiters[0].Remaining != 0 {
		t.Fatalf("after reload = %+v", d.Limiters)
	}
	if d := check(e, t0, "ingress", map[string]string{"user": "alice", "tier": "free"}); d.Accepted {
		t.Fatal("clamped bucket admitted a second flow")
	}
	// A different limit key is a different bucket space: state is dropped.
	rekeyed := strings.Replace(perUserLimit, "limit_by_label_key: user", "limit_by_label_key: org", 1)
	if err := e.SetPolicies([]*policies.Policy{parsePolicy(t, rekeyed)}); err != nil {
		t.Fatal(err)
	}
	if d := check(e, t0, "ingress", map[string]string{"user": "alice", "tier": "free"}); !d.Accepted || d.Limiters[0].Remaining != 4 {
		t.Fatalf("after re-keying = %+v", d.Limiters)
	}
}

func TestUnchangedPolicyObjectIsNotRecompiled(t *testing.T) {
	e := newEngine(t, nil)
	p := parsePolicy(t, perUserLimit)
	if err := e.SetPolicies([]*policies.Policy{p}); err != nil {
		t.Fatal(err)
	}
	before := e.compiled[p.Key()]
	if err := e.SetPolicies([]*policies.Policy{p}); err != nil {
		t.Fatal(err)
	}
	if e.compiled[p.Key()] != before {
		t.Fatal("the same policy object was compiled again")
	}
}

func TestRemovedPolicyDropsItsSeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEngine(t, reg, perUserLimit)
	check(e, t0, "ingress", map[string]string{"user": "a", "tier": "free"})
	if err := e.SetPolicies(nil); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "policy_name" && l.GetValue() == "per-user-limit" {
					t.Fatalf("series of a removed policy remain: %v", m)
				}
			}
		}
	}
}

func TestExplainTakesNothing(t *testing.T) {
	e := newEngine(t, nil, perUserLimit)
	req := &Request{ControlPoint: "ingress", Labels: map[string]string{"user": "alice", "tier": "free"}}
	for i := 0; i < 10; i++ {
		x := e.Explain(context.Background(), t0, req)
		if !x.Accepted || len(x.Components) != 1 || !x.Components[0].Matched || x.Components[0].Remaining != 4 {
			t.Fatalf("explain %d = %+v", i, x)
		}
	}
	paid := e.Explain(context.Background(), t0, &Request{ControlPoint: "ingress", Labels: map[string]string{"tier": "paid"}})
	if paid.Components[0].Matched {
		t.Fatal("paid flow reported as matched")
	}
	if x := e.Explain(context.Background(), t0, &Request{ControlPoint: "nowhere"}); !x.NoPolicy {
		t.Fatal("unknown control point not reported")
	}
}

// BenchmarkCheck is issue 3's target: 50 loaded policies, one matching
// rate limiter, 8 labels.
func BenchmarkCheck(b *testing.B) {
	var srcs []string
	for i := 0; i < 49; i++ {
		srcs = append(srcs, strings.NewReplacer("per-user-limit", fmt.Sprint("other-", i), "control_point: ingress", fmt.Sprint("control_point: cp-", i)).Replace(perUserLimit))
	}
	srcs = append(srcs, strings.Replace(perUserLimit, "value: 5}", "value: 1e12}", 2))
	e := newEngine(b, prometheus.NewRegistry(), srcs...)
	labels := map[string]string{"user": "alice", "tier": "free", "http.method": "GET", "http.target": "/api/items",
		"http.host": "example.com", "http.scheme": "https", "region": "eu", "app": "shop"}
	req := &Request{ControlPoint: "ingress", Labels: labels}
	var d Decision
	now := time.Now()
	e.Check(context.Background(), now, req, &d)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		e.Check(context.Background(), now, req, &d)
	}
	if !d.Accepted || len(d.Limiters) != 1 {
		b.Fatalf("decision = %+v", d)
	}
}

func TestInvalidUTF8ControlPointDoesNotPanic(t *testing.T) {
	e := newEngine(t, prometheus.NewRegistry(), perUserLimit)
	if d := check(e, t0, "bad\xff", nil); !d.Accepted {
		t.Fatalf("decision = %+v", d)
	}
	if got := testutil.ToFloat64(e.decisions.WithLabelValues("", "", OtherControlPoint, metricnames.DecisionAccepted, "no_match")); got != 1 {
		t.Fatalf("overflow no_match = %v", got)
	}
}

func TestSignalDrivenInputsApplyAtOnce(t *testing.T) {
	src := strings.Replace(perUserLimit, "bucket_capacity: {constant_signal: {value: 5}}", "bucket_capacity: {signal_name: CAPACITY}", 1)
	e := newEngine(t, nil, src)
	key := policies.Key{Namespace: "default", Name: "per-user-limit"}
	if err := e.SetComponentInput(key, 0, "bucket_capacity", 2); err != nil {
		t.Fatal(err)
	}
	flow := map[string]string{"user": "alice", "tier": "free"}
	var accepted int
	for i := 0; i < 5; i++ {
		if check(e, t0, "ingress", flow).Accepted {
			accepted++
		}
	}
	if accepted != 2 {
		t.Fatalf("accepted %d with a capacity signal of 2", accepted)
	}
	// An invalid value falls back to pass-through.
	if err := e.SetComponentInput(key, 0, "bucket_capacity", math.NaN()); err != nil {
		t.Fatal(err)
	}
	if d := check(e, t0, "ingress", flow); !d.Accepted || !d.Limiters[0].PassThrough {
		t.Fatalf("with an invalid capacity = %+v", d)
	}
	for _, bad := range []struct {
		key  policies.Key
		comp int
		port string
	}{{policies.Key{Namespace: "default", Name: "nope"}, 0, "bucket_capacity"}, {key, 3, "bucket_capacity"}, {key, 0, "volume"}} {
		if err := e.SetComponentInput(bad.key, bad.comp, bad.port, 1); err == nil {
			t.Errorf("SetComponentInput(%v, %d, %q) accepted", bad.key, bad.comp, bad.port)
		}
	}
}

func TestSweepDropsIdleBuckets(t *testing.T) {
	src := strings.Replace(perUserLimit, "parameters: {limit_by_label_key: user, interval: 60s}", "parameters: {limit_by_label_key: user, interval: 60s, max_idle_time: 10m}", 1)
	e := newEngine(t, nil, src)
	for i := 0; i < 100; i++ {
		check(e, t0, "ingress", map[string]string{"user": fmt.Sprint("u", i), "tier": "free"})
	}
	if n := e.Sweep(t0.Add(time.Minute)); n != 0 {
		t.Fatalf("swept %d buckets that were not idle yet", n)
	}
	if n := e.Sweep(t0.Add(11 * time.Minute)); n != 100 {
		t.Fatalf("swept %d idle buckets, want 100", n)
	}
}

// An agent with Redis sweeps every minute: Redis-backed limiters, whose
// local bucket may not exist, must not break it.
func TestSweepWithRedisLimiters(t *testing.T) {
	unused := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer func() { _ = unused.Close() }()
	rb, err := ratelimit.NewRedisBackend(ratelimit.RedisOptions{Client: unused})
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(Options{Redis: rb, DecisionLogPerSecond: -1})
	if err != nil {
		t.Fatal(err)
	}
	var ps []*policies.Policy
	for i, params := range []string{"backend: redis", "backend: redis, failure_mode: local_fallback", "backend: redis, lazy_sync: {enabled: true}"} {
		src := strings.NewReplacer("per-user-limit", fmt.Sprint("redis-", i), "interval: 60s}", "interval: 60s, "+params+"}").Replace(perUserLimit)
		ps = append(ps, parsePolicy(t, src))
	}
	if err := e.SetPolicies(ps); err != nil {
		t.Fatal(err)
	}
	e.Sweep(t0.Add(time.Hour))
}

func TestRateLimiterQuotaMetrics(t *testing.T) {
	e := newEngine(t, prometheus.NewRegistry(), perUserLimit)
	for i := 0; i < 7; i++ {
		check(e, t0, "ingress", map[string]string{"user": "alice", "tier": "free"})
	}
	if got := testutil.ToFloat64(e.hits.WithLabelValues("per-user-limit", "0", "ingress")); got != 2 {
		t.Fatalf("rate limit hits = %v, want 2", got)
	}
	check(e, t0, "ingress", map[string]string{"user": "bob", "tier": "free"})
	if got := testutil.ToFloat64(e.remaining.WithLabelValues("per-user-limit", "0", "ingress")); got != 4 {
		t.Fatalf("remaining tokens = %v, want bob's 4", got)
	}
	if err := e.SetPolicies(nil); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(e.hits) + testutil.CollectAndCount(e.remaining); n != 0 {
		t.Fatalf("%d quota series left after the policy went away", n)
	}
}
