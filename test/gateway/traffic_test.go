package gateway

import (
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fluxgate/fluxgate/agent"
	"github.com/fluxgate/fluxgate/gateway"
)

// seedTrafficPolicy is seed 003's TrafficPolicy, verbatim.
const seedTrafficPolicy = `apiVersion: fluxgate.io/v1beta1
kind: TrafficPolicy
metadata:
  name: checkout-service-policy
  namespace: payments
spec:
  targetRef:
    apiGroup: apps/v1
    kind: Deployment
    name: checkout-service
  loadBalancing:
    algorithm: weighted-round-robin
    healthCheck:
      interval: 200ms
      unhealthyThreshold: 3
  rateLimit:
    requestsPerSecond: 1200
    burstSize: 150
    keyExtractor: header.X-Client-Id
  canary:
    enabled: true
    weight: 10
    match:
      - header:
          name: x-canary
          value: "true"
    metrics:
      targetErrorRate: 0.01
      targetP99Latency: 300ms
`

func (s *stack) upstream(t *testing.T, name string) gateway.UpstreamStatus {
	t.Helper()
	for _, u := range s.gw.Status(time.Now()) {
		if u.Name == name {
			return u
		}
	}
	t.Fatalf("no upstream %s", name)
	return gateway.UpstreamStatus{}
}

func (s *stack) canaries() []gateway.CanaryStatus { return s.gw.Canaries() }

// fluxctl apply of seed 003's TrafficPolicy reconciles the gateway before
// the PUT answers: balancing, health checks, canary, and a per-client rate
// limit at the route's control point. A tighter limit applies the same
// way; deleting the TrafficPolicy takes everything back.
func TestTrafficPolicyApply(t *testing.T) {
	a, b, c := newBackend(t, "a"), newBackend(t, "b"), newBackend(t, "canary")
	cfg := gateway.Config{
		Upstreams: []gateway.UpstreamConfig{
			{Name: "checkout-service", Targets: targets(a, b)},
			{Name: "checkout-service-canary", Targets: targets(c)},
		},
		Routes: []gateway.RouteConfig{{ID: "checkout", Match: gateway.RouteMatch{PathPrefix: "/checkout"}, Upstream: "checkout-service", ControlPoint: "ingress"}},
	}
	s := startStack(t, cfg, nil, gateway.ServiceOptions{})
	if u := s.upstream(t, "checkout-service"); u.Algorithm != gateway.AlgorithmRoundRobin || u.HealthCheckInterval != 0 || len(s.canaries()) != 0 {
		t.Fatalf("before apply: %+v, canaries %+v", u, s.canaries())
	}

	began := time.Now()
	st, body := s.put(t, "/v1/policies/payments/checkout-service-policy", "application/yaml", seedTrafficPolicy)
	took := time.Since(began)
	if st != http.StatusCreated {
		t.Fatalf("apply: %d %s", st, body)
	}
	// The store reloads synchronously on PUT, so the gateway must already
	// have reconciled when it answers.
	u := s.upstream(t, "checkout-service")
	cs := s.canaries()
	t.Logf("apply answered after %s (seed 003: reconciled in under 300ms); upstream %+v; canaries %+v", took, u, cs)
	if u.Algorithm != gateway.AlgorithmWeightedRoundRobin || u.HealthCheckInterval != 200*time.Millisecond || u.UnhealthyThreshold != 3 {
		t.Errorf("upstream after apply %+v, want weighted-round-robin, health checks every 200ms, 3 to drain", u)
	}
	if len(cs) != 1 || cs[0].Upstream != "checkout-service-canary" || cs[0].Weight != 10 || cs[0].Verdict != gateway.VerdictNoData {
		t.Fatalf("canaries after apply %+v, want checkout-service-canary at 10%% with no data", cs)
	}
	if took > 300*time.Millisecond {
		t.Logf("NOTE: apply took %s, over seed 003's 300ms (loaded machine?)", took)
	}
	if _, be := s.get(t, "/checkout", map[string]string{"x-canary": "true"}); be != "canary" {
		t.Errorf("x-canary: true went to %q", be)
	}
	// Requests without X-Client-Id share one bucket of burstSize 150.
	byBackend, byStatus := s.load(t, 140, 4, "/checkout")
	if got := float64(byBackend["canary"]) / 140; math.Abs(got-0.1) > 0.02 || byStatus[200] != 140 {
		t.Errorf("canary share %.3f (statuses %v), want 0.10", got, byStatus)
	}

	// A tight limit per X-Client-Id: 3 requests, then 429; other clients
	// have their own bucket.
	tight := strings.Replace(strings.Replace(seedTrafficPolicy, "requestsPerSecond: 1200", "requestsPerSecond: 0.01", 1), "burstSize: 150", "burstSize: 3", 1)
	began = time.Now()
	if st, body := s.put(t, "/v1/policies/payments/checkout-service-policy", "application/yaml", tight); st != http.StatusOK {
		t.Fatalf("apply tight limit: %d %s", st, body)
	}
	t.Logf("second apply answered after %s", time.Since(began))
	for i := range 3 {
		if st, _ := s.get(t, "/checkout", map[string]string{"X-Client-Id": "alice"}); st != 200 {
			t.Fatalf("alice request %d: %d, want 200", i, st)
		}
	}
	if st, _ := s.get(t, "/checkout", map[string]string{"X-Client-Id": "alice"}); st != http.StatusTooManyRequests {
		t.Errorf("alice's 4th request: %d, want 429", st)
	}
	if st, _ := s.get(t, "/checkout", map[string]string{"X-Client-Id": "bob"}); st != 200 {
		t.Errorf("bob's first request: %d, want 200", st)
	}
	if got := gauge(t, s.reg, "fluxgate_canary_weight", map[string]string{"route_id": "checkout"}); got != 10 {
		t.Errorf("fluxgate_canary_weight %v, want 10", got)
	}

	// Delete: back to the file's config, no limit.
	req, _ := http.NewRequest(http.MethodDelete, s.api+"/v1/policies/payments/checkout-service-policy", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := s.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("delete: %d", resp.StatusCode)
	}
	if u := s.upstream(t, "checkout-service"); u.Algorithm != gateway.AlgorithmRoundRobin || len(s.canaries()) != 0 {
		t.Errorf("after delete: %+v, canaries %+v", u, s.canaries())
	}
	if st, _ := s.get(t, "/checkout", map[string]string{"X-Client-Id": "alice"}); st != 200 {
		t.Errorf("alice after delete: %d, want 200", st)
	}
	if !math.IsNaN(gauge(t, s.reg, "fluxgate_canary_weight", map[string]string{"route_id": "checkout"})) {
		t.Errorf("fluxgate_canary_weight still exported after the canary went away")
	}
}

// A TrafficPolicy naming no gateway upstream is reported and applies
// nothing; the agent stays up and the gateway health says why.
func TestTrafficPolicyUnknownTarget(t *testing.T) {
	a := newBackend(t, "a")
	cfg := oneRoute(gateway.UpstreamConfig{Name: "checkout", Targets: targets(a)})
	s := startStack(t, cfg, nil, gateway.ServiceOptions{})
	doc := strings.Replace(seedTrafficPolicy, "name: checkout-service\n", "name: nope\n", 1)
	if st, body := s.put(t, "/v1/policies/payments/checkout-service-policy", "application/yaml", doc); st != http.StatusCreated {
		t.Fatalf("apply: %d %s", st, body)
	}
	h := s.agent.Health().Report()
	t.Logf("health: %+v", h.Components["gateway"])
	if g := h.Components["gateway"]; g.Status != agent.StatusDegraded || len(g.Errors) != 1 || !strings.Contains(g.Errors[0], `no gateway upstream named "nope"`) {
		t.Errorf("gateway health %+v, want degraded naming the missing upstream", g)
	}
	if st, _ := s.get(t, "/x", nil); st != 200 {
		t.Errorf("routing after a bad TrafficPolicy: %d", st)
	}
}
