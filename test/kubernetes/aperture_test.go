package kubernetes

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/fluxgate/fluxgate/agent"
	"github.com/fluxgate/fluxgate/agent/agenttest"
	"github.com/fluxgate/fluxgate/kube"
	"github.com/fluxgate/fluxgate/test/kubernetes/kubetest"
)

// aperturePolicy is an Aperture Policy object whose rate limiter
// (capacity 0) rejects every flow at controlPoint, in Aperture's own
// layout (resources.flow_control, parameters.limit_by_label_key).
func aperturePolicy(name, controlPoint string) string {
	return `apiVersion: fluxninja.com/v1alpha1
kind: Policy
metadata: {name: ` + name + `, namespace: aperture-controller}
spec:
  resources:
    flow_control:
      flux_meters:
        latency: {selectors: [{control_point: ` + controlPoint + `}]}
  circuit:
    evaluation_interval: 1s
    components:
      - flow_control:
          rate_limiter:
            selectors: [{control_point: ` + controlPoint + `}]
            in_ports:
              bucket_capacity: {constant_signal: {value: 0}}
              fill_amount: {constant_signal: {value: 0}}
            parameters: {limit_by_label_key: user, interval: 1s}
`
}

// With kubernetes.aperture_policies, an agent serves Aperture's Policy
// objects as it does Aperture policy files: the unchanged object rejects
// flows at its control point, its status.status says what the agent
// group made of it, an object the agent refuses says why, and deleting
// the object lifts its limit.
func TestAgentServesAperturePolicyCustomResources(t *testing.T) {
	c := kubetest.Start(t)
	dyn := dynamicClient(t, c)
	installCRDs(t, c, dyn)
	kubetest.Kubectl(t, c, "apply", "-f", "../../deploy/kubernetes/aperture/crd-aperture-policy.yaml")
	kubetest.Kubectl(t, c, "wait", "--for=condition=Established", "--timeout=30s", "crd/policies.fluxninja.com")
	createNamespace(t, dyn, "aperture-controller")
	res := dyn.Resource(kube.AperturePolicyResource).Namespace("aperture-controller")
	ctx := context.Background()
	eventually(t, 30*time.Second, "the Aperture resource to be served", func() bool {
		_, err := res.List(ctx, metav1.ListOptions{})
		return err == nil
	})

	cfg := agenttest.Config(t)
	cfg.Kubernetes = agent.KubernetesConfig{Enabled: true, Kubeconfig: c.Kubeconfig, AperturePolicies: true, Status: true, LeaseNamespace: "default"}
	a := agenttest.Start(t, cfg)
	eventually(t, 60*time.Second, "the agent to become ready", a.Ready)

	if _, err := res.Create(ctx, yamlObject(t, []byte(aperturePolicy("block", "aperture-cp"))), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	bad := yamlObject(t, []byte(aperturePolicy("bad", "aperture-bad")))
	if err := unstructured.SetNestedField(bad.Object, "not-a-duration", "spec", "circuit", "evaluation_interval"); err != nil {
		t.Fatal(err)
	}
	if _, err := res.Create(ctx, bad, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the Aperture object's limit at the control point", func() bool { return rejects(a, "aperture-cp") })
	if rejects(a, "other") {
		t.Error("a flow at another control point is rejected")
	}
	status := func(name string) string {
		u, err := res.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return ""
		}
		s, _, _ := unstructured.NestedString(u.Object, "status", "status")
		return s
	}
	eventually(t, 15*time.Second, "status.status of the served object", func() bool {
		return strings.HasPrefix(status("block"), "programmed by 1 of 1 agents")
	})
	var got string
	deadline := time.Now().Add(15 * time.Second)
	for got = status("bad"); !strings.HasPrefix(got, "invalid: ") || !strings.Contains(got, "not-a-duration"); got = status("bad") {
		if time.Now().After(deadline) {
			t.Fatalf("status.status of the refused object: %q, want invalid: and the bad value", got)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("status.status: block %q; bad %q", status("block"), status("bad"))

	if err := res.Delete(ctx, "block", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the limit to go with the object", func() bool { return !rejects(a, "aperture-cp") })
}
