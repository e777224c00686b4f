package client_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"time"

	"google.golang.org/grpc"

	"github.com/fluxgate/fluxgate/controlpoint"
	"github.com/fluxgate/fluxgate/controlpoint/client"
	pb "github.com/fluxgate/fluxgate/controlpoint/controlpointpb"
	"github.com/fluxgate/fluxgate/controlpoint/flow"
	"github.com/fluxgate/fluxgate/policies"
)

const policy = `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: per-user-limit, namespace: default}
spec:
  circuit:
    components:
      - flow_control:
          rate_limiter:
            selectors:
              - control_point: ingress
                label_matcher: {match_labels: {tier: free}}
            in_ports:
              bucket_capacity: {constant_signal: {value: 5}}
              fill_amount: {constant_signal: {value: 5}}
            parameters: {limit_by_label_key: user, interval: 60s}
`

// engine returns an engine running the policy above: 5 requests a minute
// per free-tier user.
func engine() *controlpoint.Engine {
	e, err := controlpoint.New(controlpoint.Options{})
	if err != nil {
		log.Fatal(err)
	}
	docs, err := policies.Parse("policy.yaml", []byte(policy))
	if err != nil {
		log.Fatal(err)
	}
	if err := e.SetPolicies([]*policies.Policy{docs[0].Object.(*policies.Policy)}); err != nil {
		log.Fatal(err)
	}
	return e
}

// Middleware in front of a handler, deciding with an in-process engine.
// The flow labels come from the request (here the baggage header).
func ExampleMiddleware() {
	limit := client.Middleware(controlpoint.NewLocalChecker(engine()), client.MiddlewareOptions{})
	h := limit(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello\n")
	}))
	for range 6 {
		req := httptest.NewRequest("GET", "/", nil)
		req.Header.Set("Baggage", "user=alice,tier=free")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		fmt.Print(rec.Code, " ", rec.Header().Get("X-FluxGate-Reason"), " ", rec.Body)
	}
	// Output:
	// 200  hello
	// 200  hello
	// 200  hello
	// 200  hello
	// 200  hello
	// 429 rate_limited {"error":"rate_limited","policy":"default/per-user-limit","retry_after_seconds":12}
}

// agent is the smallest check service: an engine behind gRPC. The real
// one is the fluxgate agent.
type agent struct {
	pb.UnimplementedFlowControlServiceServer
	c client.Checker
}

func (a *agent) Check(ctx context.Context, req *pb.CheckRequest) (*pb.CheckResponse, error) {
	var d flow.Decision
	if err := a.c.Check(ctx, &flow.Request{ControlPoint: req.GetControlPoint(), Labels: req.GetLabels(), Tokens: req.GetTokens()}, &d); err != nil {
		return nil, err
	}
	return d.ToProto(), nil // the wire's form of the decision
}

// A remote agent behind a Guard: a hard deadline per check, and
// fail-closed (503, not 429) when the agent is gone.
func ExampleNewRemote() {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	srv := grpc.NewServer()
	pb.RegisterFlowControlServiceServer(srv, &agent{c: controlpoint.NewLocalChecker(engine())})
	go func() { _ = srv.Serve(lis) }() // returns when srv stops

	// One connection, opened now and shared by every check.
	remote, err := client.NewRemote(lis.Addr().String(), client.RemoteOptions{})
	if err != nil {
		log.Fatal(err)
	}
	defer remote.Close()
	guard, err := client.NewGuard(remote, client.GuardOptions{
		FailureMode: client.FailClosed,
		Timeout:     200 * time.Millisecond, // the default is 10ms
	})
	if err != nil {
		log.Fatal(err)
	}
	var d flow.Decision // reused by every check
	check := func() {
		req := flow.Request{ControlPoint: "ingress", Labels: map[string]string{"user": "alice", "tier": "free"}}
		if err := guard.Check(context.Background(), &req, &d); err != nil {
			log.Fatal(err) // only when the caller's context is done
		}
		fmt.Println(d.Accepted, flow.ReasonLabel(d.Reason), d.StatusCode)
	}
	check()
	srv.Stop() // the agent goes away
	check()
	// Output:
	// true none 0
	// false failed_closed 503
}
