package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestDemoShedsLoadUnderOverload runs a short demo: the upstream loses
// three quarters of its capacity a third of the way in, and the
// service-protection loop must shed load in the last third; the canary,
// failing from a sixth of the way in, must be rolled back to 0 by the
// canary-rollout policy.
func TestDemoShedsLoadUnderOverload(t *testing.T) {
	var out bytes.Buffer
	res, err := runDemo(context.Background(), &out, 24*time.Second, 150)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("demo output:\n%s", out.String())
	if !res.shed {
		t.Fatalf("admission did not drop: %.0f%% before the overload, %.0f%% in its last third", 100*res.admittedEarly, 100*res.lateAdm)
	}
	if !res.canaryRolledBack || res.canaryWeight != 0 {
		t.Fatalf("the failing canary ended at %d%% (rolled back: %v), want 0", res.canaryWeight, res.canaryRolledBack)
	}
	// Before the in-path loop the upstream served 9-13% of the offered
	// flows here, a third of its capacity: the bar sits well above that
	// and below what a loaded machine still reaches.
	if res.goodput < demoMinGoodput {
		t.Errorf("the overloaded upstream served %.0f%% of its capacity within %v, want at least %.0f%%", 100*res.goodput, demoGoodLatency, 100*demoMinGoodput)
	}
	if !strings.Contains(out.String(), "in flight") {
		t.Fatal("no limiter table")
	}
	// The admin API is off without a token: the demo sets one and prints
	// the fluxctl command with it.
	if !regexp.MustCompile(`try: FLUXCTL_TOKEN=\S+ fluxctl --agent http://\S+ signals`).MatchString(out.String()) {
		t.Fatal("the printed fluxctl command carries no token")
	}
}
