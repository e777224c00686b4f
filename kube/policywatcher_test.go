package kube

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/fluxgate/fluxgate/policies"
)

// A custom resource becomes a policy document of its apiVersion, kind,
// name, namespace, labels and spec: server-set metadata and status are
// left out, so the strict policy parser accepts it.
func TestPolicyDocument(t *testing.T) {
	var u unstructured.Unstructured
	if err := yaml.Unmarshal([]byte(`apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata:
  name: checkout
  namespace: shop
  labels: {team: payments}
  annotations: {kubectl.kubernetes.io/last-applied-configuration: "{}"}
  uid: 0b7c4b0e-0000-0000-0000-000000000000
  resourceVersion: "42"
  generation: 3
  managedFields: [{manager: kubectl}]
spec:
  circuit: {components: []}
status: {observedGeneration: 3}
`), &u.Object); err != nil {
		t.Fatal(err)
	}
	o, err := policyDocument(PolicyResource, &u)
	if err != nil {
		t.Fatal(err)
	}
	if o.ID != "kubernetes:policies.fluxgate.io/shop/checkout" {
		t.Fatalf("ID = %q", o.ID)
	}
	const want = `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata:
  labels:
    team: payments
  name: checkout
  namespace: shop
spec:
  circuit:
    components: []
`
	if string(o.YAML) != want {
		t.Fatalf("document:\n%s\nwant:\n%s", o.YAML, want)
	}
}

func TestNewPolicyWatcherChecksOptions(t *testing.T) {
	update := func([]Object) {}
	cfg := &rest.Config{Host: "https://127.0.0.1:1"}
	for _, tc := range []struct {
		name    string
		opts    PolicyWatcherOptions
		wantErr string
	}{
		{"ok", PolicyWatcherOptions{Config: cfg, Update: update, LabelSelector: "team=payments,tier!=test"}, ""},
		{"no config", PolicyWatcherOptions{Update: update}, "needs Config and Update"},
		{"no update", PolicyWatcherOptions{Config: cfg}, "needs Config and Update"},
		{"bad selector", PolicyWatcherOptions{Config: cfg, Update: update, LabelSelector: "team in (a"}, `label selector "team in (a"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := NewPolicyWatcher(tc.opts)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatal(err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
			if err == nil && w.Synced() {
				t.Fatal("synced before Run")
			}
		})
	}
}

func TestRESTConfigFromKubeconfig(t *testing.T) {
	if _, err := RESTConfig(t.TempDir() + "/missing"); err == nil || !strings.Contains(err.Error(), "kubeconfig") {
		t.Fatalf("missing kubeconfig: err = %v", err)
	}
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	if _, err := RESTConfig(""); err == nil || !strings.Contains(err.Error(), "in-cluster") {
		t.Fatalf("outside a pod: err = %v", err)
	}
}

// An Aperture Policy with dynamicConfig is handed on, not dropped: the
// policy store refuses it with a positioned error, which the status then
// shows (status.status "invalid: ..."), instead of the object having no
// status and only a line in the agent's log.
func TestApertureDynamicConfigReachesTheStore(t *testing.T) {
	var u unstructured.Unstructured
	if err := yaml.Unmarshal([]byte(`apiVersion: fluxninja.com/v1alpha1
kind: Policy
metadata: {name: limits, namespace: shop, uid: 0b7c4b0e-0000-0000-0000-000000000001}
spec:
  circuit: {components: []}
dynamicConfig: {rate: 10}
`), &u.Object); err != nil {
		t.Fatal(err)
	}
	u.SetGeneration(2)
	o, err := policyDocument(AperturePolicyResource, &u)
	if err != nil {
		t.Fatalf("object dropped: %v", err)
	}
	if o.UID != "0b7c4b0e-0000-0000-0000-000000000001" || o.Generation != 2 || o.Name != "limits" {
		t.Fatalf("object %+v", o)
	}
	_, err = policies.Parse(o.ID, o.YAML)
	if err == nil || !strings.Contains(err.Error(), "dynamicConfig") || !strings.HasPrefix(err.Error(), o.ID+":") {
		t.Fatalf("the store's error = %v", err)
	}
}

// A list that fails because the API server does not serve the resource
// (its CRD is not installed) says so, with the manifest that installs it;
// other errors pass unchanged.
func TestWatchErrorTextNamesMissingCRD(t *testing.T) {
	for _, gvr := range []schema.GroupVersionResource{PolicyResource, TrafficPolicyResource, AperturePolicyResource} {
		// As the reflector reports an API server's 404 for an unknown resource.
		err := fmt.Errorf("failed to list *unstructured.Unstructured: %w", apierrors.NewNotFound(gvr.GroupResource(), ""))
		got := watchErrorText(gvr, err)
		manifest := crdManifests[gvr]
		if manifest == "" {
			t.Fatalf("%s: no CRD manifest", gvr)
		}
		if _, statErr := os.Stat(filepath.Join("..", manifest)); statErr != nil {
			t.Errorf("%s: manifest %s: %v", gvr, manifest, statErr)
		}
		for _, want := range []string{err.Error(), "does not serve " + gvr.GroupResource().String(), "install its CustomResourceDefinition", "kubectl apply -f " + manifest} {
			if !strings.Contains(got, want) {
				t.Errorf("%s: %q lacks %q", gvr, got, want)
			}
		}
		if aperture := strings.Contains(got, "kubernetes.aperture_policies: false"); aperture != (gvr == AperturePolicyResource) {
			t.Errorf("%s: %q: mentions aperture_policies %v", gvr, got, aperture)
		}
	}
	other := errors.New("connection refused")
	if got := watchErrorText(PolicyResource, other); got != "connection refused" {
		t.Errorf("other error became %q", got)
	}
	forbidden := apierrors.NewForbidden(PolicyResource.GroupResource(), "", errors.New("RBAC"))
	if got := watchErrorText(PolicyResource, forbidden); strings.Contains(got, "CustomResourceDefinition") {
		t.Errorf("a forbidden list blamed the CRD: %q", got)
	}
}
