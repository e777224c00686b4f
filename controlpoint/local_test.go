package controlpoint

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

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

// TryCheckAt decides at the time it is given: perUserLimit fills five
// tokens a minute, so with all five taken at t0 the next is back by
// t0+13s (12s and a rounding margin), not at t0+5s. A
// malformed request and a done context are decided, as in TryCheck.
func TestLocalCheckerTryCheckAt(t *testing.T) {
	l := NewLocalChecker(newEngine(t, prometheus.NewRegistry(), perUserLimit))
	ctx := context.Background()
	req := &Request{ControlPoint: "ingress", Labels: map[string]string{"user": "alice", "tier": "free"}}
	var d Decision
	for i, s := range []struct {
		at     time.Duration // after t0
		accept bool
	}{
		{0, true}, {0, true}, {0, true}, {0, true}, {0, true},
		{0, false},
		{5 * time.Second, false},
		{13 * time.Second, true},
		{13 * time.Second, false},
	} {
		if decided, err := l.TryCheckAt(ctx, t0.Add(s.at), req, &d); !decided || err != nil || d.Accepted != s.accept {
			t.Fatalf("step %d at t0+%v: decided %v err %v accepted %v; want accepted %v", i, s.at, decided, err, d.Accepted, s.accept)
		}
	}
	if decided, err := l.TryCheckAt(ctx, t0, &Request{}, &d); !decided || status.Code(err) != codes.InvalidArgument {
		t.Fatalf("empty request: decided %v err %v; want decided InvalidArgument", decided, err)
	}
	done, cancel := context.WithCancel(ctx)
	cancel()
	if decided, err := l.TryCheckAt(done, t0, req, &d); !decided || !errors.Is(err, context.Canceled) {
		t.Fatalf("done context: decided %v err %v; want decided context.Canceled", decided, err)
	}
}
