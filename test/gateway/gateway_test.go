package gateway

import (
	"encoding/json"
	"math"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/fluxgate/fluxgate/controlpoint"
	"github.com/fluxgate/fluxgate/gateway"
	"github.com/fluxgate/fluxgate/policies"
)

// Weighted round-robin 80/20 over 10,000 requests lands within ±2% of
// each weight.
func TestWeightsHonoured(t *testing.T) {
	eachEngine(t, func(t *testing.T, engine string) {
		a, b := newBackend(t, "a"), newBackend(t, "b")
		u := gateway.UpstreamConfig{Name: "checkout", Algorithm: gateway.AlgorithmWeightedRoundRobin,
			Targets: []gateway.TargetConfig{{Address: a.addr(), Weight: 80}, {Address: b.addr(), Weight: 20}}}
		h := start(t, engine, oneRoute(u), nil)
		const n = 10_000
		byBackend, byStatus := h.load(t, n, 8, "/checkout")
		if byStatus[200] != n {
			t.Fatalf("statuses %v, want %d × 200", byStatus, n)
		}
		for name, want := range map[string]float64{"a": 0.8, "b": 0.2} {
			got := float64(byBackend[name]) / n
			t.Logf("%s: %.4f of requests (weight %.2f)", name, got, want)
			if math.Abs(got-want) > 0.02 {
				t.Errorf("%s got %.4f of requests, want %.2f ± 0.02", name, got, want)
			}
		}
	})
}

// A killed target is drained by active health checks within interval ×
// unhealthy_threshold + one interval, and retries on connection errors
// keep every client request successful meanwhile.
func TestKilledTargetDrained(t *testing.T) {
	eachEngine(t, func(t *testing.T, engine string) {
		bs := []*backend{newBackend(t, "a"), newBackend(t, "b"), newBackend(t, "c")}
		const interval, threshold = 100 * time.Millisecond, 3
		u := gateway.UpstreamConfig{Name: "svc", Algorithm: gateway.AlgorithmRoundRobin, Targets: targets(bs...),
			HealthCheck: &gateway.HealthCheckConfig{Path: "/healthz", Interval: interval, Timeout: 50 * time.Millisecond, UnhealthyThreshold: threshold, HealthyThreshold: 2}}
		h := start(t, engine, oneRoute(u), nil)
		time.Sleep(2 * interval) // first checks done

		stop := make(chan struct{})
		var wg sync.WaitGroup
		var mu sync.Mutex
		statuses := map[int]int{}
		for range 4 {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					st, _ := h.get(t, "/", nil)
					mu.Lock()
					statuses[st]++
					mu.Unlock()
				}
			})
		}
		time.Sleep(100 * time.Millisecond)
		bs[1].kill()
		took, ok := waitFor(2*time.Second, func() bool { return !h.target(t, "svc", bs[1].addr()).Healthy })
		time.Sleep(200 * time.Millisecond) // and traffic keeps flowing after
		close(stop)
		wg.Wait()
		limit := interval*threshold + interval
		t.Logf("drained after %s (limit %s); client statuses %v", took, limit, statuses)
		if !ok || took > limit+50*time.Millisecond { // 50ms: scheduling slack on a shared 2-core machine
			t.Errorf("killed target drained after %s, want within %s", took, limit)
		}
		if len(statuses) != 1 || statuses[200] == 0 {
			t.Errorf("client statuses %v, want only 200", statuses)
		}
	})
}

// A target whose p95 latency exceeds the outlier limit is drained, and
// readmitted once eject_for has passed and it is fast again.
func TestSlowTargetDrainedAndReadmitted(t *testing.T) {
	eachEngine(t, func(t *testing.T, engine string) {
		bs := []*backend{newBackend(t, "a"), newBackend(t, "b"), newBackend(t, "slow")}
		u := gateway.UpstreamConfig{Name: "svc", Algorithm: gateway.AlgorithmRoundRobin, Targets: targets(bs...),
			OutlierDetection: &gateway.OutlierDetectionConfig{P95Latency: 40 * time.Millisecond, ErrorRate: 0.025, Window: time.Second, MinRequests: 5, EjectFor: 300 * time.Millisecond}}
		h := start(t, engine, oneRoute(u), nil)
		slow := bs[2]
		slow.delay.Store(int64(80 * time.Millisecond))
		_, ejected := waitFor(3*time.Second, func() bool {
			h.load(t, 12, 4, "/")
			return h.target(t, "svc", slow.addr()).Ejected
		})
		if !ejected {
			t.Fatal("slow target was not drained by outlier detection")
		}
		before := slow.served.Load()
		byBackend, _ := h.load(t, 60, 4, "/")
		if byBackend["slow"] != 0 {
			t.Errorf("drained target served %d of 60 requests", byBackend["slow"])
		}
		slow.delay.Store(0)
		_, back := waitFor(2*time.Second, func() bool { return !h.target(t, "svc", slow.addr()).Ejected })
		if !back {
			t.Fatal("target was not readmitted")
		}
		byBackend, _ = h.load(t, 60, 4, "/")
		if byBackend["slow"] == 0 || slow.served.Load() == before {
			t.Errorf("readmitted target served nothing: %v", byBackend)
		}
		if h.target(t, "svc", slow.addr()).Ejected {
			t.Error("fast readmitted target was drained again")
		}
	})
}

// A half-open breaker in front of a hanging upstream lets at most
// half_open_probes requests reach it; the rest get 503 breaker_open.
func TestBreakerHalfOpenHangingUpstream(t *testing.T) {
	eachEngine(t, func(t *testing.T, engine string) {
		b := newBackend(t, "hang")
		const probes = 3
		u := gateway.UpstreamConfig{Name: "svc", Targets: targets(b),
			CircuitBreaker: &gateway.CircuitBreakerConfig{ErrorRate: 0.5, MinRequests: 5, OpenFor: 200 * time.Millisecond, HalfOpenProbes: probes}}
		h := start(t, engine, oneRoute(u), nil)
		b.status.Store(500)
		for range 5 {
			h.get(t, "/", nil)
		}
		if got := h.breaker("svc"); got != "open" {
			t.Fatalf("breaker %s after 5 failures, want open", got)
		}
		req, _ := http.NewRequest(http.MethodGet, h.url+"/", nil)
		resp, err := h.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != 503 || body["error"] != "breaker_open" || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("open breaker answered %d %v Retry-After %q", resp.StatusCode, body, resp.Header.Get("Retry-After"))
		}

		b.hang.Store(true)
		time.Sleep(250 * time.Millisecond) // open_for passes
		served := b.served.Load()
		client := &http.Client{Timeout: 700 * time.Millisecond}
		var wg sync.WaitGroup
		var mu sync.Mutex
		statuses := map[int]int{}
		for range 20 {
			wg.Go(func() {
				resp, err := client.Get(h.url + "/")
				st := 0
				if err == nil {
					st = resp.StatusCode
					resp.Body.Close()
				}
				mu.Lock()
				statuses[st]++
				mu.Unlock()
			})
		}
		wg.Wait()
		got := b.served.Load() - served
		t.Logf("hanging upstream received %d requests; client statuses %v (0 = timed out)", got, statuses)
		if got > probes || got == 0 {
			t.Errorf("hanging upstream received %d requests in half-open, want 1..%d", got, probes)
		}
		if statuses[503] != 20-int(got) {
			t.Errorf("statuses %v, want %d × 503", statuses, 20-got)
		}
	})
}

// The canary is forced by header and otherwise gets its percentage.
func TestCanary(t *testing.T) {
	eachEngine(t, func(t *testing.T, engine string) {
		v1, v2 := newBackend(t, "v1"), newBackend(t, "v2")
		cfg := gateway.Config{
			Listen: "127.0.0.1:0",
			Upstreams: []gateway.UpstreamConfig{
				{Name: "checkout", Targets: targets(v1)},
				{Name: "checkout-v2", Targets: targets(v2)},
			},
			Routes: []gateway.RouteConfig{{ID: "checkout", Match: gateway.RouteMatch{PathPrefix: "/checkout"}, Upstream: "checkout",
				Canary: &gateway.CanaryConfig{Upstream: "checkout-v2", Weight: 10,
					Match: []gateway.CanaryMatch{{Header: &gateway.NameValue{Name: "x-canary", Value: "true"}}, {Cookie: &gateway.NameValue{Name: "canary", Value: "1"}}}}}},
		}
		h := start(t, engine, cfg, nil)
		for range 20 {
			if _, be := h.get(t, "/checkout", map[string]string{"x-canary": "true"}); be != "v2" {
				t.Fatalf("x-canary: true went to %q", be)
			}
			if _, be := h.get(t, "/checkout", map[string]string{"Cookie": "canary=1"}); be != "v2" {
				t.Fatalf("cookie canary=1 went to %q", be)
			}
		}
		const n = 2000
		byBackend, _ := h.load(t, n, 4, "/checkout")
		share := float64(byBackend["v2"]) / n
		t.Logf("canary share %.4f of %d (weight 10%%)", share, n)
		if math.Abs(share-0.10) > 0.01 {
			t.Errorf("canary got %.4f of requests, want 0.10 ± 0.01", share)
		}
		if err := h.gw.SetCanaryWeight("checkout", 0); err != nil {
			t.Fatal(err)
		}
		byBackend, _ = h.load(t, 200, 4, "/checkout")
		if byBackend["v2"] != 0 {
			t.Errorf("canary at weight 0 got %d requests", byBackend["v2"])
		}
	})
}

const rateLimitPolicy = `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: gateway-limit, namespace: default}
spec:
` + rateLimitPolicyBody

// rateLimitPolicyBody is a policy spec's circuit: 5 requests a minute on
// route checkout at control point ingress.
const rateLimitPolicyBody = `  circuit:
    components:
      - flow_control:
          rate_limiter:
            selectors:
              - control_point: ingress
                label_matcher: {match_labels: {route_id: checkout}}
            in_ports:
              bucket_capacity: {constant_signal: {value: 5}}
              fill_amount: {constant_signal: {value: 5}}
            parameters: {interval: 60s}
`

// A rate limiter at the route's control point rejects through the gateway
// with 429, Retry-After and a JSON body naming the reason.
func TestRateLimitAtControlPoint(t *testing.T) {
	eachEngine(t, func(t *testing.T, engine string) {
		e, err := controlpoint.New(controlpoint.Options{})
		if err != nil {
			t.Fatal(err)
		}
		docs, err := policies.Parse("policy.yaml", []byte(rateLimitPolicy))
		if err != nil {
			t.Fatal(err)
		}
		if err := e.SetPolicies([]*policies.Policy{docs[0].Object.(*policies.Policy)}); err != nil {
			t.Fatal(err)
		}
		b := newBackend(t, "a")
		cfg := oneRoute(gateway.UpstreamConfig{Name: "checkout", Targets: targets(b)})
		cfg.Routes[0].ID = "checkout"
		cfg.Routes[0].ControlPoint = "ingress"
		h := start(t, engine, cfg, controlpoint.NewLocalChecker(e))
		for i := range 5 {
			if st, _ := h.get(t, "/checkout", nil); st != 200 {
				t.Fatalf("request %d: %d, want 200", i, st)
			}
		}
		resp, err := h.hc.Get(h.url + "/checkout")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&body)
		if resp.StatusCode != http.StatusTooManyRequests || body["error"] != "rate_limited" || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("6th request: %d %v Retry-After %q", resp.StatusCode, body, resp.Header.Get("Retry-After"))
		}
		if got := b.served.Load(); got != 5 {
			t.Errorf("upstream served %d requests, want 5", got)
		}
	})
}
