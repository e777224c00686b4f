package controlpoint

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The in-process checker lets the engine write the caller's decision:
// nothing is converted, so a check with a reused decision allocates
// nothing.
func TestLocalCheckerWritesTheCallersDecision(t *testing.T) {
	roomy := strings.Replace(perUserLimit, "value: 5}", "value: 1e12}", 2)
	l := NewLocalChecker(newEngine(t, prometheus.NewRegistry(), roomy))
	ctx := context.Background()
	req := &Request{ControlPoint: "ingress", Labels: map[string]string{"user": "alice", "tier": "free"}}
	var d Decision
	if err := l.Check(ctx, req, &d); err != nil {
		t.Fatal(err)
	}
	if !d.Accepted || d.ControlPoint != "ingress" || len(d.Limiters) != 1 || d.Limiters[0].PolicyName != "per-user-limit" || d.Limiters[0].LimitKey != "alice" {
		t.Fatalf("decision = %+v", d)
	}
	if n := testing.AllocsPerRun(100, func() {
		if err := l.Check(ctx, req, &d); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("%v allocations a check, want 0", n)
	}
	if err := l.Check(ctx, &Request{}, &d); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("empty request: err = %v, want InvalidArgument", err)
	}
}
