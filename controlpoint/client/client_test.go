package client

import (
	"context"
	"net"
	"testing"

	"go.uber.org/goleak"
	"google.golang.org/grpc"

	"github.com/fluxgate/fluxgate/controlpoint"
	pb "github.com/fluxgate/fluxgate/controlpoint/controlpointpb"
	"github.com/fluxgate/fluxgate/controlpoint/controlpointtest"
	"github.com/fluxgate/fluxgate/controlpoint/flow"
	"github.com/fluxgate/fluxgate/policies"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// The policy of issue 3: 5 requests per user per minute on the free tier.
const perUserLimit = controlpointtest.PerUserLimit

func newEngine(t testing.TB, srcs ...string) *controlpoint.Engine {
	t.Helper()
	e, err := controlpoint.New(controlpoint.Options{DecisionLogPerSecond: -1})
	if err != nil {
		t.Fatal(err)
	}
	var ps []*policies.Policy
	for _, src := range srcs {
		docs, err := policies.Parse("test.yaml", []byte(src))
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range docs {
			ps = append(ps, d.Object.(*policies.Policy))
		}
	}
	if err := e.SetPolicies(ps); err != nil {
		t.Fatal(err)
	}
	return e
}

// agent is a minimal check service for tests, answering with a Checker
// (a Local over a real engine, or a fake that hangs).
type agent struct {
	pb.UnimplementedFlowControlServiceServer
	c Checker
}

func (a *agent) Check(ctx context.Context, req *pb.CheckRequest) (*pb.CheckResponse, error) {
	var d flow.Decision
	if err := a.c.Check(ctx, &flow.Request{ControlPoint: req.GetControlPoint(), Labels: req.GetLabels(), Tokens: req.GetTokens()}, &d); err != nil {
		return nil, err
	}
	return d.ToProto(), nil
}

// startAgent serves c on a free loopback port until the test ends and
// returns the address.
func startAgent(t testing.TB, c Checker) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	pb.RegisterFlowControlServiceServer(s, &agent{c: c})
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	return lis.Addr().String()
}

// deadAddr returns a loopback address nothing listens on.
func deadAddr(t testing.TB) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}

func newRemote(t testing.TB, addr string) *Remote {
	t.Helper()
	r, err := NewRemote(addr, RemoteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func newGuard(t testing.TB, c Checker, opts GuardOptions) *Guard {
	t.Helper()
	g, err := NewGuard(c, opts)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// checkerFunc adapts a function to Checker.
type checkerFunc func(ctx context.Context, req *flow.Request, d *flow.Decision) error

func (f checkerFunc) Check(ctx context.Context, req *flow.Request, d *flow.Decision) error {
	return f(ctx, req, d)
}

// accept is a Checker's body that accepts every flow.
func accept(_ context.Context, req *flow.Request, d *flow.Decision) error {
	d.Reset(req.ControlPoint)
	return nil
}

// check asks c about req with a new decision; nil when c fails.
func check(ctx context.Context, c Checker, req *flow.Request) (*flow.Decision, error) {
	d := new(flow.Decision)
	if err := c.Check(ctx, req, d); err != nil {
		return nil, err
	}
	return d, nil
}

// ingress is a request at the control point ingress.
func ingress() *flow.Request { return &flow.Request{ControlPoint: "ingress"} }

// freeUser returns check labels for a free-tier user.
func freeUser(user string) map[string]string {
	return map[string]string{"user": user, "tier": "free"}
}
