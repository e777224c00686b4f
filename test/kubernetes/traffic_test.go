package kubernetes

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fluxgate/fluxgate"
	"github.com/fluxgate/fluxgate/agent"
	"github.com/fluxgate/fluxgate/agent/agenttest"
	"github.com/fluxgate/fluxgate/gateway"
	"github.com/fluxgate/fluxgate/policies"
	"github.com/fluxgate/fluxgate/test/kubernetes/kubetest"
)

// checkoutTraffic is seed 003's TrafficPolicy with a tight per-client
// limit (3 requests, then 429) and without the canary.
const checkoutTraffic = `apiVersion: fluxgate.io/v1beta1
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
    requestsPerSecond: 0.01
    burstSize: 3
    keyExtractor: header.X-Client-Id
`

// A kubectl apply of a TrafficPolicy custom resource reaches the built-in
// gateway: seed 003's per-client rate limit applies to the route that
// sends to the targetRef's upstream, and deleting the object takes it
// back — the cluster is the source of the routing policy, as the seed
// promises.
func TestGatewayServesTrafficPolicyCustomResources(t *testing.T) {
	c := kubetest.Start(t)
	dyn := dynamicClient(t, c)
	installCRDs(t, c, dyn)
	createNamespace(t, dyn, "payments")

	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") }))
	t.Cleanup(app.Close)
	cfg := agenttest.Config(t)
	cfg.Kubernetes = agent.KubernetesConfig{Enabled: true, Kubeconfig: c.Kubeconfig}
	gw := gateway.Config{
		Listen:    "127.0.0.1:0",
		Upstreams: []gateway.UpstreamConfig{{Name: "checkout-service", Targets: []gateway.TargetConfig{{Address: strings.TrimPrefix(app.URL, "http://")}}}},
		Routes:    []gateway.RouteConfig{{ID: "checkout", Match: gateway.RouteMatch{PathPrefix: "/checkout"}, Upstream: "checkout-service", ControlPoint: "ingress"}},
	}
	a := agenttest.Start(t, cfg)
	svc := gateway.NewService(fluxgate.GatewayHost(a), gw, nil)
	if err := svc.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = svc.Stop(ctx)
	})
	eventually(t, 60*time.Second, "the agent to become ready", a.Ready)
	url := "http://" + svc.Addr().String() + "/checkout"
	get := func(client string) int {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set("X-Client-Id", client)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	for i := range 5 {
		if st := get("alice"); st != http.StatusOK {
			t.Fatalf("request %d before the TrafficPolicy: %d, want 200 (no limit)", i, st)
		}
	}

	u := yamlObject(t, []byte(checkoutTraffic))
	res := dyn.Resource(fluxgateResources[policies.KindTrafficPolicy]).Namespace("payments")
	if _, err := res.Create(context.Background(), u, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	created := time.Now()
	// The limit holds from some moment on: a client that starts after it
	// gets 3 requests, then 429.
	eventually(t, 10*time.Second, "the TrafficPolicy's limit at the gateway", func() bool { return get("probe") == http.StatusTooManyRequests })
	t.Logf("TrafficPolicy enforced %v after the API server accepted it", time.Since(created).Round(time.Millisecond))
	for i := range 3 {
		if st := get("bob"); st != http.StatusOK {
			t.Fatalf("bob's request %d: %d, want 200 (burst 3)", i, st)
		}
	}
	if st := get("bob"); st != http.StatusTooManyRequests {
		t.Fatalf("bob's 4th request: %d, want 429", st)
	}

	if err := res.Delete(context.Background(), "checkout-service-policy", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the limit gone with the object", func() bool { return get("bob") == http.StatusOK })
}
