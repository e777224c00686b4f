package kube

import (
	"strings"
	"testing"
	"time"
)

// A condition keeps its lastTransitionTime while its status holds, and
// takes a new one when it flips; the counts and generation follow.
func TestObjectStatusKeepsTransitionTimes(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	t1 := t0.Add(time.Minute)
	o := ObjectView{Object: Object{Generation: 1}, State: StateProgrammed}
	s0 := objectStatus(o, nil, 2, 1, t0)
	s1 := objectStatus(o, s0, 2, 2, t1)
	if sameStatus(s0, s1) {
		t.Fatal("a new agent count did not change the status")
	}
	if got := conditionField(t, s1, ConditionProgrammed, "lastTransitionTime"); got != t0.Format(time.RFC3339) {
		t.Fatalf("Programmed moved to %v although it stayed True", got)
	}
	o.Generation, o.State, o.Message = 2, StateInvalid, "x.yaml:3:5: unknown field"
	s2 := objectStatus(o, s1, 2, 0, t1)
	for _, c := range []struct{ typ, key, want string }{
		{ConditionAccepted, "status", "False"},
		{ConditionAccepted, "reason", ReasonInvalid},
		{ConditionAccepted, "message", "x.yaml:3:5: unknown field"},
		{ConditionAccepted, "lastTransitionTime", t1.Format(time.RFC3339)},
		{ConditionProgrammed, "status", "False"},
	} {
		if got := conditionField(t, s2, c.typ, c.key); got != c.want {
			t.Errorf("%s.%s = %v, want %v", c.typ, c.key, got, c.want)
		}
	}
	if s2["observedGeneration"] != int64(2) {
		t.Errorf("observedGeneration = %v", s2["observedGeneration"])
	}
	if !sameStatus(s2, objectStatus(o, s2, 2, 0, t1.Add(time.Hour))) {
		t.Error("an unchanged view changed the status")
	}
}

func conditionField(t *testing.T, st map[string]any, typ, key string) any {
	t.Helper()
	for _, c := range st["conditions"].([]any) {
		m := c.(map[string]any)
		if m["type"] == typ {
			return m[key]
		}
	}
	t.Fatalf("no condition %s", typ)
	return nil
}

func TestDNSLabel(t *testing.T) {
	for in, want := range map[string]string{
		"node-1.example.com": "node-1-example-com",
		"Edge_Group":         "edge-group",
		"--":                 "x",
	} {
		if got := dnsLabel(in); got != want {
			t.Errorf("dnsLabel(%q) = %q, want %q", in, got, want)
		}
	}
}

// Two agents of one long host name (hostNetwork pods of a node whose name
// fills a DNS label) still get different identities: the random suffix
// is not cut off.
func TestDefaultIdentityKeepsSuffix(t *testing.T) {
	host := "gke-production-cluster-east-default-node-pool-1a2b3c4d-wxyz.internal"
	a, b := dnsLabel(defaultIdentity(host)), dnsLabel(defaultIdentity(host))
	if a == b || len(a) > 63 || !strings.HasPrefix(a, "gke-production-cluster") {
		t.Fatalf("identities %q and %q", a, b)
	}
}

// A programmed object's warnings reach its status: the Accepted
// condition's message for a FluxGate object, status.status for an
// Aperture one; a refused object's status holds its errors only.
func TestStatusCarriesWarnings(t *testing.T) {
	now := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	warns := "p:9:57: warning: Aperture selector service \"api\" …\np:13:11: warning: Aperture construct dry_run_config_key is ignored"
	o := ObjectView{Object: Object{Generation: 3}, State: StateProgrammed, Warnings: warns}
	st := objectStatus(o, nil, 1, 1, now)
	if got := conditionField(t, st, ConditionAccepted, "message"); got != "the agents accept this generation of the spec, with warnings:\n"+warns {
		t.Errorf("Accepted message = %q", got)
	}
	if got := conditionField(t, st, ConditionAccepted, "status"); got != "True" {
		t.Errorf("Accepted = %v; warnings must not refuse the object", got)
	}
	o.Resource = AperturePolicyResource
	want := "programmed by 1 of 1 agents (generation 3), with 2 warnings: p:9:57: warning: Aperture selector service \"api\" …; p:13:11: warning: Aperture construct dry_run_config_key is ignored"
	if got := objectStatus(o, nil, 1, 1, now)["status"]; got != want {
		t.Errorf("Aperture status = %q\nwant %q", got, want)
	}
	o.Warnings = "p:1:1: warning: one"
	if got := objectStatus(o, nil, 1, 1, now)["status"]; got != "programmed by 1 of 1 agents (generation 3), with 1 warning: p:1:1: warning: one" {
		t.Errorf("Aperture status with one warning = %q", got)
	}
	o.State, o.Message = StateInvalid, "p:2:3: unknown field"
	if got := objectStatus(o, nil, 1, 0, now)["status"]; got != "invalid: p:2:3: unknown field" {
		t.Errorf("refused Aperture status = %q", got)
	}
}
