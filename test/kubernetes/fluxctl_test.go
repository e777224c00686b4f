package kubernetes

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/fluxgate/fluxgate/policies"
	"github.com/fluxgate/fluxgate/test/kubernetes/kubetest"
)

// buildFluxctl builds cmd/fluxctl into a temporary directory.
func buildFluxctl(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "fluxctl")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/fluxgate/fluxgate/cmd/fluxctl").CombinedOutput()
	if err != nil {
		t.Fatalf("go build fluxctl: %v\n%s", err, out)
	}
	return bin
}

const fluxctlPolicies = `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: limits}
spec:
  circuit:
    evaluation_interval: 500ms
    components: []
---
apiVersion: fluxgate.io/v1beta1
kind: TrafficPolicy
metadata: {name: checkout, namespace: payments}
spec:
  targetRef: {kind: Deployment, name: checkout-service}
  rateLimit: {requestsPerSecond: 10, burstSize: 20, keyExtractor: ip}
`

// fluxctl apply -f with a kubeconfig (the flag, or KUBECONFIG) writes the
// policies as custom resources with a server-side apply — into their
// metadata.namespace, --namespace, or the context's namespace — and
// reports the API server's refusals with the document's position.
func TestFluxctlAppliesCustomResources(t *testing.T) {
	c := kubetest.Start(t)
	dyn := dynamicClient(t, c)
	installCRDs(t, c, dyn)
	createNamespace(t, dyn, "payments")
	createNamespace(t, dyn, "team")
	bin := buildFluxctl(t)
	file := filepath.Join(t.TempDir(), "policies.yaml")
	write := func(s string) {
		if err := os.WriteFile(file, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fluxctl := func(env []string, args ...string) (string, error) {
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "KUBECONFIG=", "FLUXCTL_AGENT=")
		cmd.Env = append(cmd.Env, env...)
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		return out.String() + errOut.String(), err
	}
	get := func(kind, ns, name string) *unstructured.Unstructured {
		t.Helper()
		u, err := dyn.Resource(fluxgateResources[kind]).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return u
	}

	write(fluxctlPolicies)
	out, err := fluxctl(nil, "apply", "-f", file, "--kubeconfig", c.Kubeconfig)
	if err != nil || out != "Policy default/limits created (cluster)\nTrafficPolicy payments/checkout created (cluster)\n" {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	if rps, _, _ := unstructured.NestedFieldNoCopy(get(policies.KindTrafficPolicy, "payments", "checkout").Object, "spec", "rateLimit", "requestsPerSecond"); fmt.Sprint(rps) != "10" {
		t.Fatalf("requestsPerSecond = %v", rps)
	}
	p := get(policies.KindPolicy, "default", "limits")
	if mf := p.GetManagedFields(); len(mf) == 0 || mf[0].Manager != "fluxctl" || mf[0].Operation != metav1.ManagedFieldsOperationApply {
		t.Fatalf("managed fields = %+v, want a server-side apply by fluxctl", mf)
	}

	// KUBECONFIG alone points fluxctl at the cluster; a change is a new
	// generation; -n overrides the namespace.
	write(strings.Replace(fluxctlPolicies, "500ms", "1s", 1))
	out, err = fluxctl([]string{"KUBECONFIG=" + c.Kubeconfig}, "apply", "-f", file)
	if err != nil || !strings.Contains(out, "Policy default/limits configured (cluster)") {
		t.Fatalf("apply with KUBECONFIG: %v\n%s", err, out)
	}
	if p := get(policies.KindPolicy, "default", "limits"); p.GetGeneration() != 2 {
		t.Fatalf("generation = %d after a changed spec", p.GetGeneration())
	}
	out, err = fluxctl(nil, "apply", "-f", file, "--kubeconfig", c.Kubeconfig, "-n", "team")
	if err != nil || !strings.Contains(out, "Policy team/limits created (cluster)") || !strings.Contains(out, "TrafficPolicy team/checkout created (cluster)") {
		t.Fatalf("apply -n team: %v\n%s", err, out)
	}

	// A field another manager owns (a GitOps tool, say) is a conflict
	// that names it; --force-conflicts takes the field over.
	other := yamlObject(t, []byte(`{"apiVersion":"fluxgate.io/v1beta1","kind":"Policy","metadata":{"name":"limits","namespace":"default"},"spec":{"circuit":{"evaluation_interval":"2s"}}}`))
	if _, err := dyn.Resource(fluxgateResources[policies.KindPolicy]).Namespace("default").Apply(context.Background(), "limits", other, metav1.ApplyOptions{FieldManager: "gitops", Force: true}); err != nil {
		t.Fatal(err)
	}
	out, err = fluxctl(nil, "apply", "-f", file, "--kubeconfig", c.Kubeconfig)
	if err == nil || !strings.Contains(out, "conflict") || !strings.Contains(out, `"gitops"`) || !strings.Contains(out, "--force-conflicts") {
		t.Fatalf("apply over a field gitops owns: %v\n%s", err, out)
	}
	out, err = fluxctl(nil, "apply", "-f", file, "--kubeconfig", c.Kubeconfig, "--force-conflicts")
	if err != nil || !strings.Contains(out, "Policy default/limits configured (cluster)") {
		t.Fatalf("apply --force-conflicts: %v\n%s", err, out)
	}
	if ei, _, _ := unstructured.NestedString(get(policies.KindPolicy, "default", "limits").Object, "spec", "circuit", "evaluation_interval"); ei != "1s" {
		t.Fatalf("evaluation_interval %q after --force-conflicts, want fluxctl's 1s", ei)
	}

	// --agent wins over KUBECONFIG: the agent is asked (and is not there).
	out, err = fluxctl([]string{"KUBECONFIG=" + c.Kubeconfig}, "--agent", "http://127.0.0.1:1", "apply", "-f", file)
	if err == nil || strings.Contains(out, "(cluster)") {
		t.Fatalf("apply with --agent went to the cluster: %v\n%s", err, out)
	}

	// The API server's refusal, with the document's position.
	out, err = fluxctl(nil, "apply", "-f", file, "--kubeconfig", c.Kubeconfig, "-n", "nowhere")
	if err == nil || !strings.Contains(out, file+":1: apply Policy nowhere/limits: ") || !strings.Contains(out, `namespaces "nowhere" not found`) ||
		!strings.Contains(out, "kubectl create namespace nowhere") || strings.Contains(out, "CRDs") {
		t.Fatalf("apply into a missing namespace: %v\n%s", err, out)
	}
	// An Aperture policy is written as its translation, which fluxctl
	// says, with the translation's warnings as validate prints them.
	write(`apiVersion: fluxninja.com/v1alpha1
kind: Policy
metadata: {name: aperture-limit}
spec:
  circuit:
    components:
    - flow_control:
        rate_limiter:
          selectors: [{control_point: ingress, service: api}]
          in_ports:
            bucket_capacity: {constant_signal: {value: 40}}
            fill_amount: {constant_signal: {value: 2}}
          parameters: {interval: 1s, limit_by_label_key: user}
`)
	out, err = fluxctl(nil, "apply", "-f", file, "--kubeconfig", c.Kubeconfig, "-n", "team")
	for _, want := range []string{
		file + `:9:57: warning: Aperture selector service "api" matches only flows labelled service=api`,
		file + ":1: an Aperture policy: written as its translation, a fluxgate.io/v1beta1 Policy",
		"Policy team/aperture-limit created (cluster)",
	} {
		if err != nil || !strings.Contains(out, want) {
			t.Fatalf("apply of an Aperture policy: %v\n%s\nwant %q", err, out, want)
		}
	}
	if get(policies.KindPolicy, "team", "aperture-limit").GetAPIVersion() != policies.APIVersion {
		t.Fatal("the Aperture policy was not written as a FluxGate Policy")
	}
	// A document the policy language refuses never reaches the cluster.
	write(strings.Replace(fluxctlPolicies, "500ms", "soon", 1))
	out, err = fluxctl(nil, "apply", "-f", file, "--kubeconfig", c.Kubeconfig)
	if err == nil || !strings.Contains(out, file+":6:26: invalid duration") {
		t.Fatalf("apply of an invalid policy: %v\n%q", err, out)
	}
}
