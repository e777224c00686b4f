package kubernetes

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/fluxgate/fluxgate/test/kubernetes/kubetest"
)

// The DaemonSet's service account, with the manifests' RBAC applied by
// kubectl to a real API server, may list and watch both custom resources
// in every namespace and change none of their specs, write their status,
// read Services, EndpointSlices and Deployments (targetRef discovery), and
// hold Leases in its own namespace only — asked of the API server's own
// authorizer (SubjectAccessReview).
func TestManifestsGrantTheAgentItsWatch(t *testing.T) {
	c := kubetest.Start(t)
	dyn := dynamicClient(t, c)
	for _, f := range []string{"namespace.yaml", "serviceaccount.yaml", "rbac.yaml"} {
		kubetest.Kubectl(t, c, "apply", "-f", "../../deploy/kubernetes/"+f)
	}
	var allowedSub func(group, verb, resource, subresource, namespace string) bool
	sar := schema.GroupVersionResource{Group: "authorization.k8s.io", Version: "v1", Resource: "subjectaccessreviews"}
	allowed := func(group, verb, resource, namespace string) bool {
		t.Helper()
		return allowedSub(group, verb, resource, "", namespace)
	}
	allowedSub = func(group, verb, resource, subresource, namespace string) bool {
		t.Helper()
		review := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
			"spec": map[string]any{
				"user":   "system:serviceaccount:fluxgate:fluxgate-agent",
				"groups": []any{"system:serviceaccounts", "system:serviceaccounts:fluxgate", "system:authenticated"},
				"resourceAttributes": map[string]any{
					"group": group, "resource": resource, "subresource": subresource, "verb": verb, "namespace": namespace,
				},
			},
		}}
		got, err := dyn.Resource(sar).Create(context.Background(), review, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("SubjectAccessReview %s %s: %v", verb, resource, err)
		}
		ok, _, _ := unstructured.NestedBool(got.Object, "status", "allowed")
		return ok
	}
	for _, r := range []struct{ group, resource string }{{"fluxgate.io", "policies"}, {"fluxgate.io", "trafficpolicies"}, {"fluxninja.com", "policies"}} {
		for _, verb := range []string{"get", "list", "watch"} {
			if !allowed(r.group, verb, r.resource, "") {
				t.Errorf("the agent may not %s %s.%s across namespaces", verb, r.resource, r.group)
			}
		}
		for _, verb := range []string{"create", "update", "patch", "delete"} {
			if allowed(r.group, verb, r.resource, "payments") {
				t.Errorf("the agent may %s %s.%s: it only reads them", verb, r.resource, r.group)
			}
		}
		for _, verb := range []string{"get", "patch", "update"} {
			if !allowedSub(r.group, verb, r.resource, "status", "payments") {
				t.Errorf("the agent may not %s %s.%s/status", verb, r.resource, r.group)
			}
		}
	}
	for _, r := range []struct{ group, resource string }{{"", "services"}, {"discovery.k8s.io", "endpointslices"}, {"apps", "deployments"}} {
		for _, verb := range []string{"get", "list", "watch"} {
			if !allowed(r.group, verb, r.resource, "") {
				t.Errorf("the agent may not %s %s across namespaces", verb, r.resource)
			}
		}
		for _, verb := range []string{"create", "update", "patch", "delete"} {
			if allowed(r.group, verb, r.resource, "payments") {
				t.Errorf("the agent may %s %s: it only reads them", verb, r.resource)
			}
		}
	}
	for _, verb := range []string{"get", "list", "create", "update", "delete"} {
		if !allowed("coordination.k8s.io", verb, "leases", "fluxgate") {
			t.Errorf("the agent may not %s leases in its namespace", verb)
		}
	}
	if allowed("coordination.k8s.io", "update", "leases", "kube-system") {
		t.Error("the agent may update leases outside its namespace")
	}
	if allowed("", "list", "secrets", "") {
		t.Error("the agent may list secrets")
	}
}
