package circuit_test

import (
	"context"
	"testing"
	"time"

	"github.com/fluxgate/fluxgate/controlpoint"
	"github.com/fluxgate/fluxgate/policies"
)

// apertureEngine runs one Aperture corpus policy's flow-control
// components in an engine.
func apertureEngine(t *testing.T, file string) (*controlpoint.Engine, *policies.Policy) {
	t.Helper()
	p := parseAperture(t, file).Object.(*policies.Policy)
	e, err := controlpoint.New(controlpoint.Options{DecisionLogPerSecond: -1})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.SetPolicies([]*policies.Policy{p}); err != nil {
		t.Fatal(err)
	}
	return e, p
}

func checkFlow(e *controlpoint.Engine, cp string, labels map[string]string) controlpoint.Decision {
	var d controlpoint.Decision
	e.Check(context.Background(), time.Now(), &controlpoint.Request{ControlPoint: cp, Labels: labels}, &d)
	return d
}

// TestApertureQuotaSchedulerBehaves: the translated quota scheduler gives
// each API key its 3 tokens a minute (label_key), a background flow costs
// its workload's 2 tokens, and a flow the bucket cannot serve waits its
// queue_timeout, then is rejected with the named status (TooManyRequests).
func TestApertureQuotaSchedulerBehaves(t *testing.T) {
	e, _ := apertureEngine(t, "quota-scheduler.yaml")
	alice := map[string]string{"api_key": "alice", "call_type": "interactive"}
	for i := 0; i < 3; i++ {
		if d := checkFlow(e, "external-api", alice); !d.Accepted || d.Limiters[0].Workload != "interactive" || d.Limiters[0].Priority != 200 {
			t.Fatalf("alice's flow %d: %+v, want admitted in workload interactive", i, d)
		}
	}
	if d := checkFlow(e, "external-api", alice); d.Accepted || d.StatusCode != 429 || d.Reason != controlpoint.ReasonNoTokens {
		t.Fatalf("alice's 4th flow: %+v, want rejected 429 no_tokens", d)
	}
	bob := map[string]string{"api_key": "bob", "call_type": "background"}
	if d := checkFlow(e, "external-api", bob); !d.Accepted || d.Limiters[0].Remaining != 1 {
		t.Fatalf("bob's background flow: %+v, want admitted for 2 of 3 tokens", d)
	}
	if d := checkFlow(e, "external-api", bob); d.Accepted {
		t.Fatal("bob's second background flow found 2 tokens in a bucket of 1")
	}
}

// TestApertureConcurrencyLimiterBehaves: two flows in flight per user_id
// (a flow with tokens=2 takes both), the third rejected at once with
// ServiceUnavailable; an end frees a slot.
func TestApertureConcurrencyLimiterBehaves(t *testing.T) {
	e, _ := apertureEngine(t, "concurrency-limiter.yaml")
	u := map[string]string{"user_id": "u1"}
	a, b := checkFlow(e, "concurrency-limiting-feature", u), checkFlow(e, "concurrency-limiting-feature", u)
	if !a.Accepted || !b.Accepted || a.FlowID == 0 {
		t.Fatalf("two flows: %+v %+v", a, b)
	}
	if d := checkFlow(e, "concurrency-limiting-feature", u); d.Accepted || d.StatusCode != 503 {
		t.Fatalf("third flow: %+v, want rejected 503", d)
	}
	e.EndFlow(time.Now(), a.FlowID, false)
	e.EndFlow(time.Now(), b.FlowID, false)
	if d := checkFlow(e, "concurrency-limiting-feature", map[string]string{"user_id": "u1", "tokens": "2"}); !d.Accepted {
		t.Fatal("a flow of 2 tokens rejected with both slots free")
	}
	if d := checkFlow(e, "concurrency-limiting-feature", u); d.Accepted {
		t.Fatal("a flow admitted beside one holding both slots")
	}
}

// TestApertureConcurrencySchedulerBehaves: max_concurrency comes from the
// circuit's signal (pass-through until it does); workload_label_key puts
// a flow in the paid workload, which waits for the slot, while a default
// flow gives up after 20ms with BadRequest.
func TestApertureConcurrencySchedulerBehaves(t *testing.T) {
	e, p := apertureEngine(t, "concurrency-scheduler.yaml")
	if d := checkFlow(e, "llm-prompt", nil); !d.Accepted || !d.Limiters[0].PassThrough {
		t.Fatalf("before the circuit's first tick: %+v, want pass-through", d)
	}
	if err := e.SetComponentInput(p.Key(), 0, "max_concurrency", 1); err != nil {
		t.Fatal(err)
	}
	first := checkFlow(e, "llm-prompt", nil)
	if !first.Accepted || first.FlowID == 0 {
		t.Fatalf("first flow: %+v", first)
	}
	if d := checkFlow(e, "llm-prompt", nil); d.Accepted || d.StatusCode != 400 {
		t.Fatalf("a default flow behind the held slot: %+v, want rejected 400 after 20ms", d)
	}
	done := make(chan controlpoint.Decision)
	go func() { done <- checkFlow(e, "llm-prompt", map[string]string{"workload": "paid"}) }()
	time.Sleep(30 * time.Millisecond)
	e.EndFlow(time.Now(), first.FlowID, false)
	if d := <-done; !d.Accepted || d.Limiters[0].Workload != "paid" {
		t.Fatalf("paid flow: %+v, want admitted when the slot was freed", d)
	}
}
