package kubernetes

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/fluxgate/fluxgate"
	"github.com/fluxgate/fluxgate/agent"
	"github.com/fluxgate/fluxgate/agent/agenttest"
	"github.com/fluxgate/fluxgate/gateway"
	"github.com/fluxgate/fluxgate/policies"
	"github.com/fluxgate/fluxgate/test/kubernetes/kubetest"
)

var (
	serviceResource    = schema.GroupVersionResource{Version: "v1", Resource: "services"}
	deploymentResource = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
	sliceResource      = schema.GroupVersionResource{Group: "discovery.k8s.io", Version: "v1", Resource: "endpointslices"}
)

// namedServer is a local HTTP server that answers its name.
func namedServer(t *testing.T, name string) (port string) {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, name) }))
	t.Cleanup(s.Close)
	u, err := url.Parse(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Port()
}

func create(t *testing.T, dyn dynamic.Interface, gvr schema.GroupVersionResource, doc string) *unstructured.Unstructured {
	t.Helper()
	u := yamlObject(t, []byte(doc))
	got, err := dyn.Resource(gvr).Namespace(u.GetNamespace()).Create(context.Background(), u, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create %s %s: %v", u.GetKind(), u.GetName(), err)
	}
	return got
}

// endpointSlice is a slice of the Service checkout-svc with one endpoint
// at ip:8080.
func endpointSlice(name, ip string, ready bool) string {
	return fmt.Sprintf(`apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: %s
  namespace: payments
  labels: {kubernetes.io/service-name: checkout-svc}
addressType: IPv4
ports: [{name: metrics, port: 9090, protocol: TCP}, {name: http, port: 8080, protocol: TCP}]
endpoints:
  - addresses: [%s]
    conditions: {ready: %t}
`, name, ip, ready)
}

// A TrafficPolicy whose targetRef names a Deployment gives the gateway's
// upstream group the ready endpoints of the Services that select the
// Deployment's pods, read from EndpointSlices (made by hand: no
// controllers run next to this API server), and follows them as they
// change; without the Deployment the configured target serves. The API
// server refuses loopback endpoint addresses, so the endpoints are
// TEST-NET-1 addresses (RFC 5737) that nothing answers: traffic is
// checked on the configured target here, and to discovered targets in
// package gateway (TestSetUpstreamTargetsRoutesTraffic).
func TestTrafficPolicyTargetRefFollowsEndpointSlices(t *testing.T) {
	c := kubetest.Start(t)
	dyn := dynamicClient(t, c)
	installCRDs(t, c, dyn)
	createNamespace(t, dyn, "payments")
	static := namedServer(t, "static")
	addrA, addrB := "192.0.2.10:8080", "192.0.2.11:8080"

	cfg := agenttest.Config(t)
	cfg.Kubernetes = agent.KubernetesConfig{Enabled: true, Kubeconfig: c.Kubeconfig, Discovery: true}
	gw := gateway.Config{
		Listen:    "127.0.0.1:0",
		Upstreams: []gateway.UpstreamConfig{{Name: "checkout-service", Targets: []gateway.TargetConfig{{Address: "127.0.0.1:" + static}}}},
		Routes:    []gateway.RouteConfig{{ID: "checkout", Match: gateway.RouteMatch{PathPrefix: "/checkout"}, Upstream: "checkout-service"}},
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
	targets := func() string {
		var out []string
		for _, u := range svc.Gateway().Status(time.Now()) {
			if u.Name == "checkout-service" {
				for _, tg := range u.Targets {
					out = append(out, tg.Address)
				}
			}
		}
		slices.Sort(out)
		return strings.Join(out, ",")
	}
	answers := func(n int) string { // the distinct answers of n requests
		seen := map[string]bool{}
		for range n {
			resp, err := http.Get("http://" + svc.Addr().String() + "/checkout")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			seen[fmt.Sprintf("%d:%s", resp.StatusCode, b)] = true
		}
		var out []string
		for k := range seen {
			out = append(out, k)
		}
		slices.Sort(out)
		return strings.Join(out, ",")
	}
	// follow waits for the gateway's targets and logs how long after the
	// API server accepted the change they followed.
	follow := func(what, want string, since time.Time) {
		t.Helper()
		eventually(t, 10*time.Second, what, func() bool { return targets() == want })
		t.Logf("%s: the gateway's targets followed %v after the API server accepted the change", what, time.Since(since).Round(time.Millisecond))
	}

	create(t, dyn, fluxgateResources[policies.KindTrafficPolicy], `apiVersion: fluxgate.io/v1beta1
kind: TrafficPolicy
metadata: {name: checkout, namespace: payments}
spec:
  targetRef: {apiGroup: apps/v1, kind: Deployment, name: checkout-service}
  loadBalancing: {algorithm: round-robin}
`)
	create(t, dyn, serviceResource, `apiVersion: v1
kind: Service
metadata: {name: checkout-svc, namespace: payments}
spec:
  selector: {app: checkout}
  ports: [{name: http, port: 80, targetPort: 8080}]
`)
	create(t, dyn, serviceResource, `apiVersion: v1
kind: Service
metadata: {name: other-svc, namespace: payments}
spec:
  selector: {app: other}
  ports: [{name: http, port: 80}]
`)
	create(t, dyn, sliceResource, endpointSlice("checkout-a", "192.0.2.10", true))
	create(t, dyn, sliceResource, endpointSlice("checkout-b", "192.0.2.11", false))
	other := strings.ReplaceAll(endpointSlice("other", "192.0.2.99", true), "checkout-svc", "other-svc")
	create(t, dyn, sliceResource, other)
	// No Deployment yet: the configured target serves.
	time.Sleep(500 * time.Millisecond) // give a wrong resolution the chance to show
	if got := targets(); got != "127.0.0.1:"+static {
		t.Fatalf("targets before the Deployment exists = %s", got)
	}
	start := time.Now()
	create(t, dyn, deploymentResource, `apiVersion: apps/v1
kind: Deployment
metadata: {name: checkout-service, namespace: payments}
spec:
  selector: {matchLabels: {app: checkout}}
  template:
    metadata: {labels: {app: checkout, tier: web}}
    spec: {containers: [{name: app, image: example.com/checkout:1}]}
`)
	follow("the Deployment's ready endpoint", addrA, start)

	// Endpoint b becomes ready.
	b, err := dyn.Resource(sliceResource).Namespace("payments").Get(context.Background(), "checkout-b", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	eps, _, _ := unstructured.NestedSlice(b.Object, "endpoints")
	eps[0].(map[string]any)["conditions"] = map[string]any{"ready": true}
	if err := unstructured.SetNestedSlice(b.Object, eps, "endpoints"); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if _, err := dyn.Resource(sliceResource).Namespace("payments").Update(context.Background(), b, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	follow("endpoint b ready", addrA+","+addrB, start)

	// Slice a goes away.
	start = time.Now()
	if err := dyn.Resource(sliceResource).Namespace("payments").Delete(context.Background(), "checkout-a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	follow("slice a deleted", addrB, start)

	// The Deployment goes away: back to the configured target.
	start = time.Now()
	if err := dyn.Resource(deploymentResource).Namespace("payments").Delete(context.Background(), "checkout-service", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	follow("Deployment deleted", "127.0.0.1:"+static, start)
	if got := answers(2); got != "200:static" {
		t.Fatalf("answers = %s, want 200:static", got)
	}
}

// A TrafficPolicy whose targetRef names a Service takes that Service's
// endpoints; a Service without ready endpoints leaves the group empty
// (503), not on its configured targets.
func TestTrafficPolicyTargetRefService(t *testing.T) {
	c := kubetest.Start(t)
	dyn := dynamicClient(t, c)
	installCRDs(t, c, dyn)
	createNamespace(t, dyn, "payments")
	static := namedServer(t, "static")
	cfg := agenttest.Config(t)
	cfg.Kubernetes = agent.KubernetesConfig{Enabled: true, Kubeconfig: c.Kubeconfig, Discovery: true}
	gw := gateway.Config{
		Listen:    "127.0.0.1:0",
		Upstreams: []gateway.UpstreamConfig{{Name: "checkout-svc", Targets: []gateway.TargetConfig{{Address: "127.0.0.1:" + static}}}},
		Routes:    []gateway.RouteConfig{{ID: "checkout", Match: gateway.RouteMatch{PathPrefix: "/"}, Upstream: "checkout-svc"}},
	}
	a := agenttest.Start(t, cfg)
	svc := gateway.NewService(fluxgate.GatewayHost(a), gw, nil)
	if err := svc.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop(context.Background()) })
	create(t, dyn, fluxgateResources[policies.KindTrafficPolicy], `apiVersion: fluxgate.io/v1beta1
kind: TrafficPolicy
metadata: {name: checkout, namespace: payments}
spec:
  targetRef: {kind: Service, name: checkout-svc}
`)
	status := func() int {
		resp, err := http.Get("http://" + svc.Addr().String() + "/")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	eventually(t, 60*time.Second, "the agent to become ready", a.Ready)
	if st := status(); st != http.StatusOK {
		t.Fatalf("before the Service exists: %d, want 200 from the configured target", st)
	}
	create(t, dyn, serviceResource, `apiVersion: v1
kind: Service
metadata: {name: checkout-svc, namespace: payments}
spec:
  selector: {app: checkout}
  ports: [{name: http, port: 80}]
`)
	create(t, dyn, sliceResource, endpointSlice("checkout-a", "192.0.2.10", false))
	eventually(t, 10*time.Second, "an empty group", func() bool { return status() == http.StatusServiceUnavailable })
}
