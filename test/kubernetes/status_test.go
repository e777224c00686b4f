package kubernetes

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/fluxgate/fluxgate/agent"
	"github.com/fluxgate/fluxgate/agent/agenttest"
	"github.com/fluxgate/fluxgate/policies"
	"github.com/fluxgate/fluxgate/test/kubernetes/kubetest"
)

var leaseResource = schema.GroupVersionResource{Group: "coordination.k8s.io", Version: "v1", Resource: "leases"}

// condition returns the status and message of a status condition of obj.
func condition(obj *unstructured.Unstructured, typ string) (status, reason, message string, observed int64) {
	conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == typ {
			status, _ = m["status"].(string)
			reason, _ = m["reason"].(string)
			message, _ = m["message"].(string)
			observed, _ = m["observedGeneration"].(int64)
		}
	}
	return status, reason, message, observed
}

// statusLine summarises what the test asserts of an object's status.
func statusLine(t *testing.T, dyn dynamic.Interface, namespace, name string) (string, *unstructured.Unstructured) {
	t.Helper()
	obj, err := dyn.Resource(fluxgateResources[policies.KindPolicy]).Namespace(namespace).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	og, _, _ := unstructured.NestedInt64(obj.Object, "status", "observedGeneration")
	total, _, _ := unstructured.NestedInt64(obj.Object, "status", "agents", "total")
	prog, _, _ := unstructured.NestedInt64(obj.Object, "status", "agents", "programmed")
	acc, accReason, _, accGen := condition(obj, "Accepted")
	p, pReason, _, _ := condition(obj, "Programmed")
	return fmt.Sprintf("generation=%d observed=%d/%d accepted=%s/%s programmed=%s/%s agents=%d/%d",
		obj.GetGeneration(), og, accGen, acc, accReason, p, pReason, prog, total), obj
}

func startAgent(t *testing.T, cfg agent.Config) *agent.Agent {
	t.Helper()
	a, err := agent.New(agent.Options{Config: cfg, ShutdownTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return a
}

// Two agents of one group watch the same objects: exactly one holds the
// group's Lease and writes each object's status — Accepted and Programmed
// with the generation they describe and how many agents program it, the
// positioned errors for a refused spec — and when it stops, the other
// takes over and counts one agent. Every agent exports its own view.
func TestAgentGroupWritesPolicyStatus(t *testing.T) {
	c := kubetest.Start(t)
	dyn := dynamicClient(t, c)
	installCRDs(t, c, dyn)
	createNamespace(t, dyn, "team")
	createPolicy(t, dyn, blockPolicy("team", "good", "{}", "good"))
	bad := yamlObject(t, []byte(blockPolicy("team", "bad", "{}", "bad")))
	if err := unstructured.SetNestedSlice(bad.Object, []any{map[string]any{"no_such_component": map[string]any{}}}, "spec", "circuit", "components"); err != nil {
		t.Fatal(err)
	}
	if _, err := dyn.Resource(fluxgateResources[policies.KindPolicy]).Namespace("team").Create(context.Background(), bad, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	cfg := func() agent.Config {
		cfg := agenttest.Config(t)
		cfg.Agent.AgentGroup = "edge"
		cfg.Kubernetes = agent.KubernetesConfig{Enabled: true, Kubeconfig: c.Kubeconfig, Status: true, LeaseNamespace: "default"}
		return cfg
	}
	agents := []*agent.Agent{startAgent(t, cfg()), startAgent(t, cfg())}
	stopped := make([]bool, 2)
	t.Cleanup(func() {
		for i, a := range agents {
			if !stopped[i] {
				_ = a.Stop(context.Background())
			}
		}
	})

	var line string
	eventually(t, 60*time.Second, "the good policy's status from both agents", func() bool {
		line, _ = statusLine(t, dyn, "team", "good")
		return line == "generation=1 observed=1/1 accepted=True/Accepted programmed=True/Programmed agents=2/2"
	})
	eventually(t, 10*time.Second, "the bad policy's status", func() bool {
		line, _ = statusLine(t, dyn, "team", "bad")
		return line == "generation=1 observed=1/1 accepted=False/Invalid programmed=False/Invalid agents=0/2"
	})
	_, obj := statusLine(t, dyn, "team", "bad")
	if _, _, msg, _ := condition(obj, "Accepted"); !strings.Contains(msg, "kubernetes:policies.fluxgate.io/team/bad:") || !strings.Contains(msg, "no_such_component") {
		t.Fatalf("Accepted message of the bad policy does not hold the positioned error: %q", msg)
	} else {
		t.Logf("Accepted message of the bad policy: %s", msg)
	}

	// Exactly one agent leads, and the Lease names it.
	leader := -1
	for i, a := range agents {
		if a.KubernetesStatus().Leader() {
			if leader >= 0 {
				t.Fatal("both agents lead")
			}
			leader = i
		}
	}
	if leader < 0 {
		t.Fatal("no agent leads")
	}
	r := agents[leader].KubernetesStatus()
	lease, err := dyn.Resource(leaseResource).Namespace("default").Get(context.Background(), r.LeaseName(), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if holder, _, _ := unstructured.NestedString(lease.Object, "spec", "holderIdentity"); holder != r.Identity() || r.LeaseName() != "fluxgate-edge" {
		t.Fatalf("lease %s held by %q, want the leader %q", r.LeaseName(), holder, r.Identity())
	}
	for i, a := range agents {
		if got := labelledGauge(t, a, "fluxgate_kubernetes_status_leader", ""); (got == 1) != (i == leader) {
			t.Errorf("agent %d: fluxgate_kubernetes_status_leader = %v", i, got)
		}
		for state, want := range map[string]float64{"programmed": 1, "invalid": 1, "conflicted": 0} {
			if got := labelledGauge(t, a, "fluxgate_kubernetes_policies", state); got != want {
				t.Errorf("agent %d: fluxgate_kubernetes_policies{state=%q} = %v, want %v", i, state, got, want)
			}
		}
	}

	// A new spec is a new generation; the status follows.
	_, obj = statusLine(t, dyn, "team", "good")
	comps, _, _ := unstructured.NestedSlice(obj.Object, "spec", "circuit", "components")
	rl := comps[0].(map[string]any)["flow_control"].(map[string]any)["rate_limiter"].(map[string]any)
	rl["parameters"] = map[string]any{"interval": "2s"}
	if err := unstructured.SetNestedSlice(obj.Object, comps, "spec", "circuit", "components"); err != nil {
		t.Fatal(err)
	}
	if _, err := dyn.Resource(fluxgateResources[policies.KindPolicy]).Namespace("team").Update(context.Background(), obj, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the status of generation 2", func() bool {
		line, _ = statusLine(t, dyn, "team", "good")
		return line == "generation=2 observed=2/2 accepted=True/Accepted programmed=True/Programmed agents=2/2"
	})

	// The leader stops: it releases the Lease and deletes its own; the
	// other agent takes over and counts itself alone.
	if err := agents[leader].Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	stopped[leader] = true
	other := agents[1-leader]
	eventually(t, 30*time.Second, "the other agent to lead", other.KubernetesStatus().Leader)
	eventually(t, 20*time.Second, "the status to count one agent", func() bool {
		line, _ = statusLine(t, dyn, "team", "good")
		return line == "generation=2 observed=2/2 accepted=True/Accepted programmed=True/Programmed agents=1/1"
	})
}

// labelledGauge reads a gauge of the agent's registry: the series whose
// only label has value, or the unlabelled one when value is "".
func labelledGauge(t *testing.T, a *agent.Agent, name, value string) float64 {
	t.Helper()
	mfs, err := a.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if (value == "" && len(m.GetLabel()) == 0) || (len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == value) {
				return m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("metric %s{%s} not found", name, value)
	return 0
}
