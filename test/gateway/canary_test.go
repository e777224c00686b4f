package gateway

import (
	"math"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fluxgate/fluxgate/gateway"
)

// canaryConfig is a route /checkout to v1 with a canary on v2.
func canaryConfig(v1, v2 *backend, weight int, m *gateway.CanaryMetricsConfig) gateway.Config {
	return gateway.Config{
		Listen: "127.0.0.1:0",
		Upstreams: []gateway.UpstreamConfig{
			{Name: "checkout", Targets: targets(v1)},
			{Name: "checkout-v2", Targets: targets(v2)},
		},
		Routes: []gateway.RouteConfig{{ID: "checkout", Match: gateway.RouteMatch{PathPrefix: "/checkout"}, Upstream: "checkout",
			Canary: &gateway.CanaryConfig{Upstream: "checkout-v2", Weight: weight, Metrics: m,
				Match: []gateway.CanaryMatch{{Header: &gateway.NameValue{Name: "x-canary", Value: "true"}}}}}},
	}
}

// gauge returns the value of the gauge or counter name{labels} in reg,
// or NaN.
func gauge(t *testing.T, reg prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue next
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return math.NaN()
}

func (h *harness) canary(t *testing.T, route string) gateway.CanaryStatus {
	t.Helper()
	for _, c := range h.gw.Canaries() {
		if c.Route == route {
			return c
		}
	}
	t.Fatalf("no canary on route %s", route)
	return gateway.CanaryStatus{}
}

func (h *harness) verdictMetric(t *testing.T, route string) string {
	t.Helper()
	cur := ""
	for _, v := range []string{gateway.VerdictPass, gateway.VerdictFail, gateway.VerdictNoData} {
		if gauge(t, h.reg, "fluxgate_canary_verdict", map[string]string{"route_id": route, "verdict": v}) == 1 {
			if cur != "" {
				t.Errorf("verdicts %s and %s are both 1", cur, v)
			}
			cur = v
		}
	}
	return cur
}

// A canary answering 500s fails its error-rate target once it has
// min_samples requests, is rolled back to weight 0 and stays there.
func TestCanaryRollbackOnErrors(t *testing.T) {
	eachEngine(t, func(t *testing.T, engine string) {
		v1, v2 := newBackend(t, "v1"), newBackend(t, "v2")
		v2.status.Store(http.StatusInternalServerError)
		h := start(t, engine, canaryConfig(v1, v2, 50, &gateway.CanaryMetricsConfig{TargetErrorRate: 0.01, TargetP99Latency: 5 * time.Second, MinSamples: 30, Window: 30 * time.Second}), nil)
		if got := gauge(t, h.reg, "fluxgate_canary_weight", map[string]string{"route_id": "checkout"}); got != 50 {
			t.Fatalf("fluxgate_canary_weight %v before any traffic, want 50", got)
		}
		if v := h.verdictMetric(t, "checkout"); v != gateway.VerdictNoData {
			t.Fatalf("verdict %q before any traffic, want no_data", v)
		}
		began := time.Now()
		h.load(t, 100, 4, "/checkout") // 50 to the canary: enough samples
		took, ok := waitFor(3*time.Second, func() bool { return h.canary(t, "checkout").RolledBack })
		if !ok {
			t.Fatalf("canary not rolled back: %+v", h.canary(t, "checkout"))
		}
		t.Logf("rolled back %s after the load began (%s after it ended); canary served %d", time.Since(began), took, v2.served.Load())
		served := v2.served.Load()
		byBackend, byStatus := h.load(t, 200, 4, "/checkout")
		if byBackend["v2"] != 0 || byStatus[200] != 200 {
			t.Errorf("after rollback: backends %v statuses %v, want all 200 from v1", byBackend, byStatus)
		}
		if got := v2.served.Load(); got != served {
			t.Errorf("rolled-back canary served %d more requests", got-served)
		}
		cs := h.canary(t, "checkout")
		if cs.Weight != 0 || cs.Verdict != gateway.VerdictFail {
			t.Errorf("canary %+v, want weight 0, verdict fail", cs)
		}
		if got := gauge(t, h.reg, "fluxgate_canary_weight", map[string]string{"route_id": "checkout"}); got != 0 {
			t.Errorf("fluxgate_canary_weight %v, want 0", got)
		}
		if v := h.verdictMetric(t, "checkout"); v != gateway.VerdictFail {
			t.Errorf("fluxgate_canary_verdict is 1 for %q, want fail", v)
		}
		// A circuit raising the weight does not override the rollback.
		if err := h.gw.SetCanaryWeight("checkout", 80); err != nil {
			t.Fatal(err)
		}
		if cs := h.canary(t, "checkout"); cs.Weight != 0 {
			t.Errorf("weight %d after SetCanaryWeight(80) while rolled back, want 0", cs.Weight)
		}
	})
}

// A canary whose p99 latency exceeds the target is rolled back.
func TestCanaryRollbackOnLatency(t *testing.T) {
	eachEngine(t, func(t *testing.T, engine string) {
		v1, v2 := newBackend(t, "v1"), newBackend(t, "v2")
		v2.delay.Store(int64(150 * time.Millisecond))
		h := start(t, engine, canaryConfig(v1, v2, 50, &gateway.CanaryMetricsConfig{TargetErrorRate: 0.5, TargetP99Latency: 50 * time.Millisecond, MinSamples: 20}), nil)
		h.load(t, 60, 6, "/checkout")
		if _, ok := waitFor(3*time.Second, func() bool { return h.canary(t, "checkout").RolledBack }); !ok {
			t.Fatalf("slow canary not rolled back: %+v", h.canary(t, "checkout"))
		}
		byBackend, _ := h.load(t, 100, 4, "/checkout")
		t.Logf("after rollback: %v", byBackend)
		if byBackend["v2"] != 0 {
			t.Errorf("rolled-back canary got %d requests", byBackend["v2"])
		}
		if v := h.verdictMetric(t, "checkout"); v != gateway.VerdictFail {
			t.Errorf("verdict %q, want fail", v)
		}
	})
}

// Below min_samples the verdict is no_data and the weight stays, even for
// a canary failing every request.
func TestCanaryNoDataHoldsWeight(t *testing.T) {
	eachEngine(t, func(t *testing.T, engine string) {
		v1, v2 := newBackend(t, "v1"), newBackend(t, "v2")
		v2.status.Store(http.StatusInternalServerError)
		h := start(t, engine, canaryConfig(v1, v2, 10, &gateway.CanaryMetricsConfig{TargetErrorRate: 0.01, MinSamples: 1000}), nil)
		const n = 500
		byBackend, _ := h.load(t, n, 4, "/checkout")
		time.Sleep(3 * canaryTick)
		cs := h.canary(t, "checkout")
		t.Logf("canary %+v after %d requests (%d to the canary)", cs, n, byBackend["v2"])
		if cs.Weight != 10 || cs.RolledBack || cs.Verdict != gateway.VerdictNoData {
			t.Errorf("canary %+v, want weight 10, verdict no_data", cs)
		}
		if byBackend["v2"] != n/10 {
			t.Errorf("canary got %d of %d requests, want %d", byBackend["v2"], n, n/10)
		}
		if v := h.verdictMetric(t, "checkout"); v != gateway.VerdictNoData {
			t.Errorf("fluxgate_canary_verdict is 1 for %q, want no_data", v)
		}
	})
}

// A rolled-back canary that serves forced requests well again has its
// rollback lifted (the verdict recovered); setting weight 0 also lifts it.
func TestCanaryRollbackLifts(t *testing.T) {
	eachEngine(t, func(t *testing.T, engine string) {
		v1, v2 := newBackend(t, "v1"), newBackend(t, "v2")
		v2.status.Store(http.StatusInternalServerError)
		h := start(t, engine, canaryConfig(v1, v2, 20, &gateway.CanaryMetricsConfig{TargetErrorRate: 0.2, MinSamples: 10, Window: time.Second}), nil)
		forced := map[string]string{"x-canary": "true"}
		for range 12 {
			h.get(t, "/checkout", forced)
		}
		if _, ok := waitFor(3*time.Second, func() bool { return h.canary(t, "checkout").RolledBack }); !ok {
			t.Fatalf("canary not rolled back: %+v", h.canary(t, "checkout"))
		}
		// Fixed: the failures age out of the 1s window, forced requests pass.
		v2.status.Store(0)
		took, ok := waitFor(5*time.Second, func() bool {
			h.get(t, "/checkout", forced)
			return !h.canary(t, "checkout").RolledBack
		})
		if !ok {
			t.Fatalf("rollback not lifted by a passing verdict: %+v", h.canary(t, "checkout"))
		}
		t.Logf("rollback lifted %s after the fix", took)
		if cs := h.canary(t, "checkout"); cs.Weight != 20 || cs.Verdict != gateway.VerdictPass {
			t.Errorf("canary %+v, want weight 20 and pass", cs)
		}
	})
}

const canaryTick = 100 * time.Millisecond
