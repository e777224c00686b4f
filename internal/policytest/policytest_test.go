package policytest

import (
	"testing"
	"time"

	"github.com/fluxgate/fluxgate/policies"
)

func TestOneSlotIsOneSlotAtTheControlPoint(t *testing.T) {
	ac := parseOneSlot(t, OneSlot("api"))
	if got := ac.Selectors[0].ControlPoint; got != "api" {
		t.Errorf("control point %q, want api", got)
	}
	if pr := ac.Parameters; pr.InitialConcurrency != 1 || pr.MinConcurrency != 1 || pr.MaxConcurrency != 1 || pr.MaxQueueDelay != time.Millisecond || pr.MaxFlowDuration != 0 {
		t.Errorf("parameters %+v, want a limit fixed at 1, a 1ms queue and the default max_flow_duration", pr)
	}
}

func TestOneSlotExpiringSetsMaxFlowDuration(t *testing.T) {
	ac := parseOneSlot(t, OneSlotExpiring("ingress", 1500*time.Millisecond))
	if got := ac.Selectors[0].ControlPoint; got != "ingress" {
		t.Errorf("control point %q, want ingress", got)
	}
	if pr := ac.Parameters; pr.MaxConcurrency != 1 || pr.MaxFlowDuration != 1500*time.Millisecond {
		t.Errorf("parameters %+v, want a limit of 1 and max_flow_duration 1.5s", pr)
	}
}

func parseOneSlot(t *testing.T, src string) *policies.AdaptiveConcurrency {
	t.Helper()
	docs, err := policies.Parse("one-slot.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != 1 {
		t.Fatalf("%d documents, want 1", len(docs))
	}
	p, ok := docs[0].Object.(*policies.Policy)
	if !ok || p.Metadata.Name != "one-slot" || p.Metadata.Namespace != "default" || len(p.Spec.Circuit.Components) != 1 {
		t.Fatalf("parsed %#v, want policy default/one-slot with one component", docs[0].Object)
	}
	ac, ok := p.Spec.Circuit.Components[0].Spec.(*policies.AdaptiveConcurrency)
	if !ok {
		t.Fatalf("component %s, want flow_control.adaptive_concurrency", p.Spec.Circuit.Components[0].Kind)
	}
	return ac
}
