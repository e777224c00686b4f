package kube

import (
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/yaml"
)

func storeOf(t *testing.T, docs ...string) cache.Store {
	t.Helper()
	s := cache.NewStore(cache.MetaNamespaceKeyFunc)
	for _, d := range docs {
		var m map[string]any
		if err := yaml.Unmarshal([]byte(d), &m); err != nil {
			t.Fatal(err)
		}
		if err := s.Add(&unstructured.Unstructured{Object: m}); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// Ready endpoints only (ready unset counts as ready), the port named http
// else the first TCP one, FQDN slices and other namespaces' slices left
// out; a Deployment through the Services that select its pod labels; a
// missing object resolves to nothing at all.
func TestResolve(t *testing.T) {
	stores := map[schema.GroupVersionResource]cache.Store{
		DeploymentResource: storeOf(t,
			`{metadata: {name: web, namespace: ns}, spec: {template: {metadata: {labels: {app: web, track: stable}}}}}`),
		ServiceResource: storeOf(t,
			`{metadata: {name: web, namespace: ns}, spec: {selector: {app: web}}}`,
			`{metadata: {name: all, namespace: ns}, spec: {}}`,
			`{metadata: {name: canary, namespace: ns}, spec: {selector: {app: web, track: canary}}}`),
		EndpointSliceResource: storeOf(t,
			`{metadata: {name: w1, namespace: ns, labels: {kubernetes.io/service-name: web}}, addressType: IPv4,
			  ports: [{name: admin, port: 9000, protocol: TCP}, {name: http, port: 8080, protocol: TCP}],
			  endpoints: [{addresses: [10.0.0.1]}, {addresses: [10.0.0.2], conditions: {ready: false}}, {addresses: [10.0.0.3], conditions: {ready: true}}]}`,
			`{metadata: {name: w2, namespace: ns, labels: {kubernetes.io/service-name: web}}, addressType: IPv6,
			  ports: [{port: 53, protocol: UDP}, {port: 8081, protocol: TCP}], endpoints: [{addresses: ["fd00::1"]}]}`,
			`{metadata: {name: w3, namespace: ns, labels: {kubernetes.io/service-name: web}}, addressType: FQDN,
			  ports: [{port: 80}], endpoints: [{addresses: [web.example.com]}]}`,
			`{metadata: {name: c1, namespace: ns, labels: {kubernetes.io/service-name: canary}}, addressType: IPv4,
			  ports: [{port: 80}], endpoints: [{addresses: [10.0.1.1]}]}`,
			`{metadata: {name: o1, namespace: other, labels: {kubernetes.io/service-name: web}}, addressType: IPv4,
			  ports: [{port: 80}], endpoints: [{addresses: [10.9.9.9]}]}`),
	}
	want := map[Ref][]string{
		{"ns", KindService, "web"}:       {"10.0.0.1:8080", "10.0.0.3:8080", "[fd00::1]:8081"},
		{"ns", KindDeployment, "web"}:    {"10.0.0.1:8080", "10.0.0.3:8080", "[fd00::1]:8081"},
		{"ns", KindService, "canary"}:    {"10.0.1.1:80"},
		{"other", KindService, "web"}:    nil, // no such Service there
		{"ns", KindDeployment, "absent"}: nil,
	}
	var refs []Ref
	for r := range want {
		refs = append(refs, r)
	}
	got := resolve(refs, stores)
	for r, w := range want {
		g, ok := got[r]
		if w == nil {
			if ok {
				t.Errorf("%s resolved to %v; its object does not exist", r, g)
			}
			continue
		}
		if !slices.Equal(g, w) {
			t.Errorf("%s = %v, want %v", r, g, w)
		}
	}
}

// The watchers keep only what resolve reads of each object (names,
// labels, a Deployment's template labels, a Service's selector, a slice's
// address type, endpoints and ports): a cluster's Deployments, with their
// pod specs, are not held whole in the agent's memory.
func TestSlimObjectKeepsWhatResolveReads(t *testing.T) {
	u := func(doc string) *unstructured.Unstructured {
		var m map[string]any
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			t.Fatal(err)
		}
		o, err := slimObject(&unstructured.Unstructured{Object: m})
		if err != nil {
			t.Fatal(err)
		}
		return o.(*unstructured.Unstructured)
	}
	d := u(`{apiVersion: apps/v1, kind: Deployment,
	  metadata: {name: web, namespace: ns, resourceVersion: "7", annotations: {a: b}, managedFields: [{manager: x}]},
	  spec: {replicas: 3, template: {metadata: {labels: {app: web}, annotations: {c: d}},
	    spec: {containers: [{name: web, image: web:1, env: [{name: A, value: "1"}]}]}}},
	  status: {replicas: 3}}`)
	if labels, _, _ := unstructured.NestedStringMap(d.Object, "spec", "template", "metadata", "labels"); labels["app"] != "web" {
		t.Fatalf("template labels lost: %v", d.Object)
	}
	for _, path := range [][]string{{"spec", "template", "spec"}, {"spec", "replicas"}, {"status"}, {"metadata", "annotations"}, {"metadata", "managedFields"}} {
		if _, found, _ := unstructured.NestedFieldNoCopy(d.Object, path...); found {
			t.Errorf("Deployment keeps %v: %v", path, d.Object)
		}
	}
	if d.GetName() != "web" || d.GetNamespace() != "ns" || d.GetResourceVersion() != "7" {
		t.Fatalf("metadata lost: %v", d.Object)
	}
	s := u(`{metadata: {name: web, namespace: ns}, spec: {selector: {app: web}, ports: [{port: 80}], clusterIP: 10.1.1.1}}`)
	if sel, _, _ := unstructured.NestedStringMap(s.Object, "spec", "selector"); sel["app"] != "web" || len(s.Object["spec"].(map[string]any)) != 1 {
		t.Fatalf("Service %v", s.Object)
	}
	es := u(`{metadata: {name: w1, namespace: ns, labels: {kubernetes.io/service-name: web}}, addressType: IPv4,
	  ports: [{port: 80}], endpoints: [{addresses: [10.0.0.1]}]}`)
	if got := sliceAddresses(es); !slices.Equal(got, []string{"10.0.0.1:80"}) || es.GetLabels()[labelServiceName] != "web" {
		t.Fatalf("slice %v: %v", es.Object, got)
	}
}
