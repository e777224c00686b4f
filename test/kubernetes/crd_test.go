package kubernetes

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	_ "github.com/fluxgate/fluxgate/circuit" // registers the circuit component kinds
	"github.com/fluxgate/fluxgate/policies"
	"github.com/fluxgate/fluxgate/test/kubernetes/kubetest"
)

// fluxgateResources are the resources of the fluxgate.io kinds, by kind.
var fluxgateResources = map[string]schema.GroupVersionResource{
	policies.KindPolicy:        {Group: "fluxgate.io", Version: "v1beta1", Resource: "policies"},
	policies.KindTrafficPolicy: {Group: "fluxgate.io", Version: "v1beta1", Resource: "trafficpolicies"},
}

// installCRDs applies the repository's CRDs (deploy/kubernetes/crd-*.yaml)
// with kubectl and waits until the API server serves them.
func installCRDs(t *testing.T, c *kubetest.Cluster, dyn dynamic.Interface) {
	t.Helper()
	ctx := context.Background()
	files, err := filepath.Glob("../../deploy/kubernetes/crd-*.yaml")
	if err != nil || len(files) != 2 {
		t.Fatalf("CRD files: %v %v", files, err)
	}
	args := []string{"apply"}
	var names []string
	for _, f := range files {
		args = append(args, "-f", f)
		names = append(names, "crd/"+readObject(t, f).GetName())
	}
	kubetest.Kubectl(t, c, args...)
	kubetest.Kubectl(t, c, append([]string{"wait", "--for=condition=Established", "--timeout=30s"}, names...)...)
	// Discovery of the new group lags the Established condition a little:
	// wait until a list of each kind answers.
	for _, gvr := range fluxgateResources {
		deadline := time.Now().Add(30 * time.Second)
		for {
			_, err := dyn.Resource(gvr).List(ctx, metav1.ListOptions{Limit: 1})
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("list %s: %v", gvr, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func readObject(t *testing.T, path string) *unstructured.Unstructured {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return yamlObject(t, data)
}

func yamlObject(t *testing.T, data []byte) *unstructured.Unstructured {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal(data, &m); err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	return &unstructured.Unstructured{Object: m}
}

func dynamicClient(t *testing.T, c *kubetest.Cluster) dynamic.Interface {
	t.Helper()
	dyn, err := dynamic.NewForConfig(c.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	return dyn
}

func createNamespace(t *testing.T, dyn dynamic.Interface, name string) {
	t.Helper()
	ns := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": name}}}
	if _, err := dyn.Resource(schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}).Create(context.Background(), ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
}

// The API server, with the repository's CRDs, accepts every example policy
// and refuses objects its schema rules out, naming the field.
func TestCRDsAcceptExamplesAndRefuseInvalidObjects(t *testing.T) {
	c := kubetest.Start(t)
	t.Logf("kube-apiserver %s ready in %v", kubetest.Release, c.StartupTime)
	dyn := dynamicClient(t, c)
	installCRDs(t, c, dyn)
	ctx := context.Background()

	namespaces := map[string]bool{"default": true}
	examples, err := fs.Glob(policies.Examples, "examples/*.yaml")
	if err != nil || len(examples) == 0 {
		t.Fatalf("examples: %v %v", examples, err)
	}
	created := 0
	for _, name := range examples {
		data, err := fs.ReadFile(policies.Examples, name)
		if err != nil {
			t.Fatal(err)
		}
		docs, err := policies.Parse(name, data)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range docs {
			u := yamlObject(t, d.Source)
			if u.GetNamespace() == "" {
				u.SetNamespace("default")
			}
			if !namespaces[u.GetNamespace()] {
				createNamespace(t, dyn, u.GetNamespace())
				namespaces[u.GetNamespace()] = true
			}
			gvr := fluxgateResources[u.GetKind()]
			got, err := dyn.Resource(gvr).Namespace(u.GetNamespace()).Create(ctx, u, metav1.CreateOptions{})
			if err != nil {
				t.Errorf("%s: %s %s/%s refused: %v", name, u.GetKind(), u.GetNamespace(), u.GetName(), err)
				continue
			}
			// Nothing the agent reads was pruned by the schema.
			if want, _, _ := unstructured.NestedMap(u.Object, "spec"); !equalJSON(t, want, got.Object["spec"]) {
				t.Errorf("%s: the API server changed the spec of %s:\nsent %v\ngot  %v", name, u.GetName(), want, got.Object["spec"])
			}
			created++
		}
	}
	t.Logf("%d example objects accepted", created)

	const valid = `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: NAME, namespace: default}
spec:
  circuit:
    evaluation_interval: INTERVAL
    components: COMPONENTS
`
	policy := func(name, interval, components string) *unstructured.Unstructured {
		r := strings.NewReplacer("NAME", name, "INTERVAL", interval, "COMPONENTS", components)
		return yamlObject(t, []byte(r.Replace(valid)))
	}
	if _, err := dyn.Resource(fluxgateResources["Policy"]).Namespace("default").Create(ctx, policy("ok", "250ms", "[]"), metav1.CreateOptions{}); err != nil {
		t.Fatalf("valid policy refused: %v", err)
	}
	for _, tc := range []struct {
		name      string
		obj       *unstructured.Unstructured
		wantField string
	}{
		{"duration-pattern", policy("bad-interval", "soon", "[]"), "spec.circuit.evaluation_interval"},
		{"components-type", policy("bad-components", "1s", "not-a-list"), "spec.circuit.components"},
		{"component-type", policy("bad-component", "1s", "[42]"), "spec.circuit.components[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := dyn.Resource(fluxgateResources["Policy"]).Namespace("default").Create(ctx, tc.obj, metav1.CreateOptions{})
			if !apierrors.IsInvalid(err) {
				t.Fatalf("create = %v, want Invalid", err)
			}
			if !strings.Contains(err.Error(), tc.wantField) {
				t.Fatalf("error does not name %s: %v", tc.wantField, err)
			}
		})
	}
}

func equalJSON(t *testing.T, a, b any) bool {
	t.Helper()
	ja, err := yaml.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	jb, err := yaml.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return string(ja) == string(jb)
}
