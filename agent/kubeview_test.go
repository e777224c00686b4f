package agent

import (
	"strings"
	"testing"

	"github.com/fluxgate/fluxgate/kube"
)

// An Aperture object the store serves reaches the status reporter with
// its warnings (what FluxGate ignores or matches otherwise), positioned in
// the document of the object, so that its status can say them.
func TestKubeViewCarriesApertureWarnings(t *testing.T) {
	s, err := NewPolicyStore(StoreOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	s.AddSource("kube")
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	const id = "kubernetes:policies.fluxninja.com/demoapp/rate-limiting"
	doc := `apiVersion: fluxninja.com/v1alpha1
kind: Policy
metadata: {name: rate-limiting, namespace: demoapp}
spec:
  circuit:
    components:
    - flow_control:
        rate_limiter:
          selectors: [{control_point: ingress, service: api.demoapp.svc.cluster.local}]
          in_ports:
            bucket_capacity: {constant_signal: {value: 40}}
            fill_amount: {constant_signal: {value: 2}}
          parameters: {interval: 1s, limit_by_label_key: user}
`
	s.SetSource("kube", []SourceObject{{ID: id, YAML: []byte(doc)}})
	objs := []kube.Object{{ID: id, Namespace: "demoapp", Name: "rate-limiting", Generation: 1}}
	v := kubeView(objs, s.Snapshot())
	if len(v) != 1 || v[0].State != kube.StateProgrammed {
		t.Fatalf("view = %+v, want the object programmed", v)
	}
	want := id + `:9:57: warning: Aperture selector service "api.demoapp.svc.cluster.local"`
	if !strings.HasPrefix(v[0].Warnings, want) {
		t.Fatalf("warnings = %q, want them to start with %q", v[0].Warnings, want)
	}
}
