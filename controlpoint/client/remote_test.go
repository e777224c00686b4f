package client

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/fluxgate/fluxgate/controlpoint"
	pb "github.com/fluxgate/fluxgate/controlpoint/controlpointpb"
)

// summary is what must agree between checkers: everything but the times,
// which differ by the microseconds between the two calls.
func summary(r *pb.CheckResponse) string {
	s := fmt.Sprintf("%v %v %d meters=%v", r.GetDecisionType(), r.GetRejectReason(), r.GetDeniedResponseStatusCode(), r.GetFluxMeterNames())
	for _, l := range r.GetLimiterDecisions() {
		s += fmt.Sprintf(" [%s/%s %s %s dropped=%v remaining=%v limit=%v key=%s]", l.GetPolicyNamespace(), l.GetPolicyName(),
			l.GetComponentId(), l.GetComponentType(), l.GetDropped(), math.Floor(l.GetRemaining()), l.GetLimit(), l.GetLimitKey())
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
		req := &pb.CheckRequest{ControlPoint: "ingress", Labels: labels}
		lr, err := local.Check(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		rr, err := remote.Check(ctx, req)
		if err != nil {
			t.Fatalf("remote check %d: %v", i, err)
		}
		if summary(lr) != summary(rr) {
			t.Fatalf("flow %d %v:\nlocal  %s\nremote %s", i, labels, summary(lr), summary(rr))
		}
		if i == 5 && lr.GetDecisionType() != pb.DecisionType_DECISION_TYPE_REJECTED {
			t.Fatalf("flow %d: alice's 6th check accepted: %s", i, summary(lr))
		}
	}
}

func TestCheckersRefuseMalformedRequests(t *testing.T) {
	local := controlpoint.NewLocalChecker(newEngine(t))
	remote := newRemote(t, startAgent(t, controlpoint.NewLocalChecker(newEngine(t))))
	for _, c := range []Checker{local, remote} {
		if _, err := c.Check(context.Background(), &pb.CheckRequest{}); err == nil || !strings.Contains(err.Error(), "control_point is required") {
			t.Fatalf("%T: err = %v", c, err)
		}
	}
}

func TestLocalHonoursDoneContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := controlpoint.NewLocalChecker(newEngine(t)).Check(ctx, &pb.CheckRequest{ControlPoint: "ingress"}); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}
