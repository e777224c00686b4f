package controlpoint

import (
	"context"
	"fmt"
	"testing"

	"github.com/fluxgate/fluxgate/policies"
)

const rampPolicy = `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: ramp}
spec:
  circuit:
    components:
      - flow_control:
          sampler:
            selectors: [{control_point: ingress, label_matcher: {match_labels: {feature: new}}}]
            in_ports: {accept_percentage: {signal_name: PCT}}
            parameters: {session_label_key: user, ramp_mode: true}
            pass_through_label_values: [tester]
`

func checkRamp(e *Engine, labels map[string]string, ramp bool) *Decision {
	var d Decision
	e.Check(context.Background(), t0, &Request{ControlPoint: "ingress", Labels: labels, RampMode: ramp}, &d)
	return &d
}

// TestRampMode checks Aperture's ramp rules: a ramp-mode flow no ramp
// selects is rejected (no_matching_ramp, 403); a ramp admits nothing until
// its percentage is set, then its share of sessions; a flow not in ramp
// mode is not held to a ramp it does not match.
func TestRampMode(t *testing.T) {
	e := newEngine(t, nil, rampPolicy)
	d := checkRamp(e, map[string]string{"feature": "old", "user": "u1"}, true)
	if d.Accepted || d.Reason != ReasonNoMatchingRamp || d.StatusCode != 403 || d.Decider != -1 {
		t.Fatalf("ramp-mode flow no ramp selects = %+v", d)
	}
	if d := checkRamp(e, map[string]string{"feature": "old", "user": "u1"}, false); !d.Accepted {
		t.Fatalf("flow not in ramp mode, no ramp selects = %+v", d)
	}
	var none Decision
	e.Check(context.Background(), t0, &Request{ControlPoint: "elsewhere", RampMode: true}, &none)
	if none.Accepted || none.Reason != ReasonNoMatchingRamp {
		t.Fatalf("ramp-mode flow at a control point without components = %+v", none)
	}

	// No percentage yet: a ramp admits nothing (a plain sampler would
	// pass everything through).
	if d := checkRamp(e, map[string]string{"feature": "new", "user": "u1"}, true); d.Accepted || d.Reason != ReasonNotSampled {
		t.Fatalf("ramp without a percentage = %+v", d)
	}
	setPercentage(t, e, 25)
	admitted := 0
	for i := 0; i < 2000; i++ {
		if checkRamp(e, map[string]string{"feature": "new", "user": fmt.Sprint("u", i)}, true).Accepted {
			admitted++
		}
	}
	if admitted < 400 || admitted > 600 {
		t.Fatalf("ramp at 25%% admitted %d of 2000 sessions", admitted)
	}
}

// TestSamplerPassThroughValues checks pass_through_label_values: flows
// whose session value is listed pass a sampler that admits nothing.
func TestSamplerPassThroughValues(t *testing.T) {
	e := newEngine(t, nil, rampPolicy)
	setPercentage(t, e, 0)
	for i := 0; i < 50; i++ {
		if d := checkRamp(e, map[string]string{"feature": "new", "user": "tester"}, true); !d.Accepted {
			t.Fatalf("listed session rejected: %+v", d)
		}
		if d := checkRamp(e, map[string]string{"feature": "new", "user": fmt.Sprint("u", i)}, false); d.Accepted {
			t.Fatalf("unlisted session u%d admitted at 0%%", i)
		}
	}
}

// setPercentage writes the ramp's accept_percentage, as its circuit does.
func setPercentage(t *testing.T, e *Engine, v float64) {
	t.Helper()
	if err := e.SetComponentInput(policies.Key{Namespace: policies.DefaultNamespace, Name: "ramp"}, 0, "accept_percentage", v); err != nil {
		t.Fatal(err)
	}
}
