package client

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	fgagent "github.com/fluxgate/fluxgate/agent"
	"github.com/fluxgate/fluxgate/agent/agenttest"
	"github.com/fluxgate/fluxgate/controlpoint"
	"github.com/fluxgate/fluxgate/controlpoint/flow"
)

// summary is what must agree between checkers: everything but the times,
// which differ by the microseconds between the two calls.
func summary(d *flow.Decision) string {
	s := fmt.Sprintf("%v %v %v %d decider=%d meters=%v", d.ControlPoint, d.Accepted, d.Reason, d.StatusCode, d.Decider, d.FluxMeters)
	for _, l := range d.Limiters {
		s += fmt.Sprintf(" [%s/%s %s %s dropped=%v remaining=%v limit=%v key=%s]", l.PolicyNamespace, l.PolicyName,
			l.ComponentID, l.ComponentType, l.Dropped, math.Floor(l.Remaining), l.Limit, l.LimitKey)
	}
	return s
}

func TestRemoteAgreesWithLocal(t *testing.T) {
	local := controlpoint.NewLocalChecker(newEngine(t, perUserLimit))
	remote := newRemote(t, startAgent(t, controlpoint.NewLocalChecker(newEngine(t, perUserLimit))))
	flows := []map[string]string{}
	for range 7 {
		flows = append(flows, freeUser("alice"))
	}
	flows = append(flows, freeUser("bob"), map[string]string{"user": "carol", "tier": "paid"})
	ctx := context.Background()
	for i, labels := range flows {
		req := &flow.Request{ControlPoint: "ingress", Labels: labels}
		lr, err := check(ctx, local, req)
		if err != nil {
			t.Fatal(err)
		}
		rr, err := check(ctx, remote, req)
		if err != nil {
			t.Fatalf("remote check %d: %v", i, err)
		}
		if summary(lr) != summary(rr) {
			t.Fatalf("flow %d %v:\nlocal  %s\nremote %s", i, labels, summary(lr), summary(rr))
		}
		if i == 5 && lr.Accepted {
			t.Fatalf("flow %d: alice's 6th check accepted: %s", i, summary(lr))
		}
	}
}

func TestCheckersRefuseMalformedRequests(t *testing.T) {
	local := controlpoint.NewLocalChecker(newEngine(t))
	remote := newRemote(t, startAgent(t, controlpoint.NewLocalChecker(newEngine(t))))
	for _, c := range []Checker{local, remote} {
		if err := c.Check(context.Background(), &flow.Request{}, new(flow.Decision)); err == nil || !strings.Contains(err.Error(), "control_point is required") {
			t.Fatalf("%T: err = %v", c, err)
		}
	}
}

func TestLocalHonoursDoneContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := controlpoint.NewLocalChecker(newEngine(t)).Check(ctx, ingress(), new(flow.Decision)); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

// An agent with a check token refuses a Remote without it (or with the
// OTLP receiver's token). Package otlpspans tests the OTLP side.
func TestRemoteTokenRefusedWithout(t *testing.T) {
	cfg := agenttest.Config(t, perUserLimit)
	cfg.Metrics.Enabled = false
	cfg.Check.Token, cfg.OTLP.Token = "check-s3cret", "otlp-s3cret"
	a := agenttest.Start(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	for _, token := range []string{"", "otlp-s3cret"} {
		remote, err := NewRemote(a.Addr(fgagent.ListenerGRPC).String(), RemoteOptions{Token: token})
		if err != nil {
			t.Fatal(err)
		}
		_, err = check(ctx, remote, ingress())
		_ = remote.Close()
		if status.Code(err) != codes.Unauthenticated {
			t.Errorf("Check with token %q: %v, want Unauthenticated", token, err)
		}
	}
}
