package hostile

import (
	"bytes"
	"net/http"
	"strings"
	"sync"
	"testing"

	pb "github.com/fluxgate/fluxgate/controlpoint/controlpointpb"
)

// costlyPolicy is the costliest policy body the admin API takes (just
// under its 512 KiB bound): a flow list of one-character components,
// each one an error. Before issue 14's fix it cost about 230 MiB of heap
// to refuse, and concurrent PUTs each paid that at once.
func costlyPolicy() string {
	var b strings.Builder
	b.WriteString("apiVersion: fluxgate.io/v1beta1\nkind: Policy\nmetadata: {name: costly, namespace: hostile}\nspec:\n  circuit:\n    components: [")
	for b.Len() < 500<<10 {
		b.WriteString("a,")
	}
	b.WriteString("a]\n")
	return b.String()
}

// Concurrent PUTs of the costliest refused body stay bounded: each is
// refused 400 with positioned errors, the agent's RSS stays under a
// bound that one parse at a time fits in and eight at once do not, and
// checks still answer afterwards.
func TestCostlyPolicyBodiesStayBounded(t *testing.T) {
	const token = "s3cret-admin-token-0123456789abcdef"
	p := start(t, spec{extra: "admin: {token: " + token + "}\n", policies: map[string]string{"per-user.yaml": perUserPolicy}})
	body := costlyPolicy()
	before := p.rssMiB(t)
	peak := p.samplePeak(t)
	const writers, rounds = 8, 3
	var wg sync.WaitGroup
	codes := make(chan int, writers*rounds)
	for range writers {
		wg.Go(func() {
			for range rounds {
				code, resp, err := httpDo(t.Context(), &http.Client{}, http.MethodPut, "http://"+p.api+"/v1/policies/hostile/costly",
					strings.NewReader(body), map[string]string{"Authorization": "Bearer " + token, "Content-Type": "application/yaml"})
				if err != nil {
					t.Errorf("PUT: %v", err)
					return
				}
				if code == http.StatusBadRequest && !bytes.Contains(resp, []byte("body:6:")) {
					t.Errorf("PUT answered 400 without positioned errors: %.200s", resp)
				}
				codes <- code
			}
		})
	}
	wg.Wait()
	close(codes)
	maxRSS := peak.end()
	for code := range codes {
		if code != http.StatusBadRequest {
			t.Errorf("PUT of a body of %d bad components: %d, want 400", strings.Count(body, ","), code)
		}
	}
	t.Logf("%d concurrent PUTs × %d of a %d KiB refused policy: RSS %.0f MiB before, peak %.0f MiB", writers, rounds, len(body)>>10, before, maxRSS)
	// One parse at a time peaks near 100 MiB of heap (GC doubles it in
	// RSS); eight at once went past 1 GiB.
	if limit := before + 400; maxRSS > limit {
		t.Errorf("peak RSS %.0f MiB, want ≤ %.0f MiB (%.0f before + 400)", maxRSS, limit, before)
	}
	p.alive(t)
	resp, err := p.checkClient(t).Check(t.Context(), &pb.CheckRequest{ControlPoint: "ingress", Labels: map[string]string{"user": "after"}})
	if err != nil || resp.GetDecisionType() != pb.DecisionType_DECISION_TYPE_ACCEPTED {
		t.Errorf("a check after the PUTs: %v %v, want accepted", resp.GetDecisionType(), err)
	}
}
