package agent

import (
	"testing"

	"github.com/fluxgate/fluxgate/kube"
	"github.com/fluxgate/fluxgate/policies"
)

// The gateway serves only the first TrafficPolicy (by namespace/name) of
// an upstream group; discovery resolves that one's targetRef alone, so the
// group gets its endpoints, always the same ones, and never those of a
// refused TrafficPolicy naming the same upstream.
func TestTargetRefsFirstTrafficPolicyOfAGroup(t *testing.T) {
	tp := func(ns, name, kind, target string) *PolicyEntry {
		p := &policies.TrafficPolicy{Header: policies.Header{Kind: policies.KindTrafficPolicy,
			Metadata: policies.Metadata{Namespace: ns, Name: name}}}
		p.Spec.TargetRef = policies.TargetRef{Kind: kind, Name: target}
		return &PolicyEntry{Key: p.Key(), Kind: policies.KindTrafficPolicy, Object: p}
	}
	snap := &PolicySnapshot{Entries: map[policies.Key]*PolicyEntry{}}
	for _, e := range []*PolicyEntry{
		tp("b", "web-b", kube.KindService, "web"), // a second TrafficPolicy of upstream web: refused by the gateway
		tp("a", "web-a", kube.KindService, "web"),
		tp("a", "api", kube.KindDeployment, "api"),
		tp("a", "static", "", "static"), // no kind: not resolved
	} {
		snap.Entries[e.Key] = e
	}
	refs, list := targetRefs(snap)
	want := []kube.Ref{{Namespace: "a", Kind: kube.KindDeployment, Name: "api"}, {Namespace: "a", Kind: kube.KindService, Name: "web"}}
	if len(list) != len(want) || list[0] != want[0] || list[1] != want[1] || len(refs) != len(want) {
		t.Fatalf("refs %v, want %v", list, want)
	}
	for _, r := range want {
		if refs[r] != r.Name {
			t.Fatalf("ref %v goes to upstream %q", r, refs[r])
		}
	}
}
