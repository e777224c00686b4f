package kubernetes

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"

	"github.com/fluxgate/fluxgate/agent"
	"github.com/fluxgate/fluxgate/agent/agenttest"
	"github.com/fluxgate/fluxgate/controlpoint"
	"github.com/fluxgate/fluxgate/policies"
	"github.com/fluxgate/fluxgate/test/kubernetes/kubetest"
)

const testLabel = "fluxgate.io/e2e"

// blockPolicy is a Policy whose rate limiter (capacity 0) rejects every
// flow at controlPoint; labels is a flow-style YAML mapping.
func blockPolicy(namespace, name, labels, controlPoint string) string {
	return fmt.Sprintf(`apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: %s, namespace: %s, labels: %s}
spec:
  circuit:
    components:
      - flow_control:
          rate_limiter:
            selectors: [{control_point: %s}]
            in_ports:
              bucket_capacity: {constant_signal: {value: 0}}
              fill_amount: {constant_signal: {value: 0}}
            parameters: {interval: 1s}
`, name, namespace, labels, controlPoint)
}

func createPolicy(t *testing.T, dyn dynamic.Interface, doc string) {
	t.Helper()
	u := yamlObject(t, []byte(doc))
	if _, err := dyn.Resource(fluxgateResources[policies.KindPolicy]).Namespace(u.GetNamespace()).Create(context.Background(), u, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create %s/%s: %v", u.GetNamespace(), u.GetName(), err)
	}
}

// rejects reports whether the agent's engine now rejects a flow at cp.
func rejects(a *agent.Agent, cp string) bool {
	var d controlpoint.Decision
	a.Engine().Check(context.Background(), time.Now(), &controlpoint.Request{ControlPoint: cp}, &d)
	return !d.Accepted
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func entryOrigins(a *agent.Agent) map[string]string {
	out := map[string]string{}
	for _, e := range a.Store().Snapshot().Sorted() {
		out[e.Key.String()] = e.File
	}
	return out
}

// An agent with kubernetes.enabled is not ready until it can list Policy
// objects; it then serves the objects its label selector matches beside
// its file policies, the file winning a name clash; creations, deletions
// and objects it refuses show within moments.
func TestAgentServesPolicyCustomResources(t *testing.T) {
	c := kubetest.Start(t)
	dyn := dynamicClient(t, c)

	cfg := agenttest.Config(t, blockPolicy("default", "shared", "{}", "from-file"))
	cfg.Kubernetes = agent.KubernetesConfig{Enabled: true, Kubeconfig: c.Kubeconfig, LabelSelector: testLabel + "=yes"}
	a := agenttest.Start(t, cfg)

	// No CRD yet: the list fails, and the agent is not ready.
	eventually(t, 30*time.Second, "the failed list in health", func() bool {
		h := a.Health().Report().Components["kubernetes"]
		return h.Status == agent.StatusUnhealthy && strings.Contains(h.Message, "failed")
	})
	if a.Ready() {
		t.Fatal("agent ready before it could list Policy objects")
	}

	installCRDs(t, c, dyn)
	createNamespace(t, dyn, "team")
	createPolicy(t, dyn, blockPolicy("team", "limited", "{"+testLabel+": \"yes\"}", "cr"))
	createPolicy(t, dyn, blockPolicy("team", "unlabelled", "{}", "unlabelled"))
	createPolicy(t, dyn, blockPolicy("default", "shared", "{"+testLabel+": \"yes\"}", "from-cr"))
	// Valid for the CRD schema (components are free-form there), refused
	// by the agent.
	bad := yamlObject(t, []byte(blockPolicy("team", "bad", "{"+testLabel+": \"yes\"}", "bad")))
	if err := unstructured.SetNestedSlice(bad.Object, []any{map[string]any{"no_such_component": map[string]any{}}}, "spec", "circuit", "components"); err != nil {
		t.Fatal(err)
	}
	if _, err := dyn.Resource(fluxgateResources[policies.KindPolicy]).Namespace("team").Create(context.Background(), bad, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	eventually(t, 60*time.Second, "the agent to become ready", a.Ready)
	eventually(t, 10*time.Second, "the labelled object to be served", func() bool { return rejects(a, "cr") })
	want := map[string]string{
		"default/shared": "policy-a.yaml",
		"team/limited":   "kubernetes:policies.fluxgate.io/team/limited",
	}
	eventually(t, 10*time.Second, "the file and the labelled objects", func() bool {
		return fmt.Sprint(entryOrigins(a)) == fmt.Sprint(want)
	})
	if rejects(a, "unlabelled") || rejects(a, "from-cr") || !rejects(a, "from-file") {
		t.Fatal("the unlabelled object or the shadowed one is enforced, or the file policy is not")
	}
	var errs []string
	eventually(t, 10*time.Second, "the clash and the refused object in the snapshot", func() bool {
		errs = errs[:0]
		for _, fe := range a.Store().Snapshot().Errors {
			errs = append(errs, fe.File+": "+fe.Err.Error())
		}
		return len(errs) == 2
	})
	sort.Strings(errs)
	if len(errs) != 2 || !strings.Contains(errs[0], "kubernetes:policies.fluxgate.io/default/shared: policy default/shared is not served: policy file policy-a.yaml defines it too") ||
		!strings.Contains(errs[1], "kubernetes:policies.fluxgate.io/team/bad") || !strings.Contains(errs[1], "no_such_component") {
		t.Fatalf("snapshot errors:\n%s", strings.Join(errs, "\n"))
	}
	if got := gaugeValue(t, a, "fluxgate_policy_name_clashes"); got != 1 {
		t.Fatalf("fluxgate_policy_name_clashes = %v", got)
	}
	if h := a.Health().Report().Components["kubernetes"]; h.Status != agent.StatusHealthy || !strings.Contains(h.Message, "3 objects") {
		t.Fatalf("kubernetes health = %+v", h)
	}

	// Deleting the file lets the object through; deleting the object
	// unloads it.
	if err := os.Remove(filepath.Join(cfg.Policies.Dir, "policy-a.yaml")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "the object to take over from the deleted file", func() bool { return rejects(a, "from-cr") && !rejects(a, "from-file") })
	if err := dyn.Resource(fluxgateResources[policies.KindPolicy]).Namespace("team").Delete(context.Background(), "limited", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the deleted object to be unloaded", func() bool { return !rejects(a, "cr") })
}

// gaugeValue reads a gauge of the agent's registry.
func gaugeValue(t *testing.T, a *agent.Agent, name string) float64 {
	t.Helper()
	mfs, err := a.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}
