package client

import (
	"context"
	"net"
	"slices"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/fluxgate/fluxgate/controlpoint"
	"github.com/fluxgate/fluxgate/controlpoint/flow"
)

// rpcLimit limits each caller (metadata "user") of the health service to
// 5 calls a minute, selecting on the interceptor's own labels.
const rpcLimit = `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: rpc-limit, namespace: default}
spec:
  circuit:
    components:
      - flow_control:
          rate_limiter:
            selectors:
              - control_point: ingress
                label_matcher: {match_labels: {rpc.service: grpc.health.v1.Health}}
            in_ports:
              bucket_capacity: {constant_signal: {value: 5}}
              fill_amount: {constant_signal: {value: 5}}
            parameters: {limit_by_label_key: rpc.request.metadata.user, interval: 60s}
`

const sampleNone = `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: sample-none, namespace: default}
spec:
  circuit:
    components:
      - flow_control:
          sampler:
            selectors: [{control_point: ingress}]
            in_ports: {accept_percentage: {constant_signal: {value: 0}}}
            parameters: {session_label_key: ""}
`

// serveHealth serves the standard health service behind the interceptor
// and returns a client for it.
func serveHealth(t *testing.T, c Checker, opts InterceptorOptions) healthpb.HealthClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(grpc.UnaryInterceptor(UnaryServerInterceptor(c, opts)))
	healthpb.RegisterHealthServer(s, health.NewServer())
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return healthpb.NewHealthClient(conn)
}

func callAs(t *testing.T, hc healthpb.HealthClient, user string) (metadata.MD, error) {
	t.Helper()
	var trailer metadata.MD
	ctx := metadata.AppendToOutgoingContext(context.Background(), "user", user)
	_, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Trailer(&trailer))
	return trailer, err
}

func TestInterceptorResourceExhaustedAfterLimit(t *testing.T) {
	hc := serveHealth(t, controlpoint.NewLocalChecker(newEngine(t, rpcLimit)), InterceptorOptions{})
	for i := range 5 {
		if _, err := callAs(t, hc, "alice"); err != nil {
			t.Fatalf("call %d: %v", i+1, err)
		}
	}
	trailer, err := callAs(t, hc, "alice")
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("6th call: %v, want ResourceExhausted", err)
	}
	for k, want := range map[string]string{
		TrailerDecision:   "rejected",
		TrailerReason:     "rate_limited",
		TrailerPolicy:     "default/rpc-limit",
		TrailerRetryAfter: "12",
	} {
		if got := trailer.Get(k); len(got) != 1 || got[0] != want {
			t.Errorf("trailer %s = %q, want %q", k, got, want)
		}
	}
	if msg := status.Convert(err).Message(); msg != "fluxgate: rate_limited by policy default/rpc-limit, retry after 12s" {
		t.Errorf("message = %q", msg)
	}
	if _, err := callAs(t, hc, "bob"); err != nil {
		t.Fatalf("bob has his own bucket: %v", err)
	}
}

func TestInterceptorRejectionCodes(t *testing.T) {
	t.Run("not sampled", func(t *testing.T) {
		hc := serveHealth(t, controlpoint.NewLocalChecker(newEngine(t, sampleNone)), InterceptorOptions{})
		trailer, err := callAs(t, hc, "alice")
		if status.Code(err) != codes.PermissionDenied || trailer.Get(TrailerReason)[0] != "not_sampled" {
			t.Fatalf("err %v, trailer %v; want PermissionDenied, not_sampled", err, trailer)
		}
	})
	t.Run("failed closed", func(t *testing.T) {
		g := newGuard(t, newRemote(t, deadAddr(t)), GuardOptions{FailureMode: FailClosed})
		hc := serveHealth(t, g, InterceptorOptions{})
		trailer, err := callAs(t, hc, "alice")
		if status.Code(err) != codes.Unavailable || trailer.Get(TrailerReason)[0] != "failed_closed" {
			t.Fatalf("err %v, trailer %v; want Unavailable, failed_closed", err, trailer)
		}
	})
}

func TestInterceptorLabels(t *testing.T) {
	var seen flow.Request
	c := checkerFunc(func(ctx context.Context, req *flow.Request, d *flow.Decision) error {
		seen = *req
		d.Reset(req.ControlPoint)
		d.FluxMeters = append(d.FluxMeters, "m")
		return nil
	})
	var inHandler []string
	ic := UnaryServerInterceptor(c, InterceptorOptions{
		ControlPoint: "grpc-in",
		Labels: func(context.Context, *grpc.UnaryServerInfo, any) map[string]string {
			return map[string]string{"extra": "1"}
		},
	})
	ctx := metadata.NewIncomingContext(context.Background(), metadata.MD{
		"user": {"alice", "bob"}, "trace-bin": {"\x00"}, ":authority": {"x"},
	})
	_, err := ic(ctx, nil, &grpc.UnaryServerInfo{FullMethod: "/shop.v1.Cart/Add"}, func(ctx context.Context, req any) (any, error) {
		inHandler = slices.Clone(FromContext(ctx).FluxMeters)
		return nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"rpc.method": "/shop.v1.Cart/Add", "rpc.service": "shop.v1.Cart",
		"rpc.request.metadata.user": "alice,bob", "extra": "1",
	}
	if seen.ControlPoint != "grpc-in" || len(seen.Labels) != len(want) {
		t.Fatalf("check request = %v, want labels %v", seen, want)
	}
	for k, v := range want {
		if seen.Labels[k] != v {
			t.Fatalf("label %s = %q, want %q", k, seen.Labels[k], v)
		}
	}
	if len(inHandler) != 1 || inHandler[0] != "m" {
		t.Fatalf("handler saw decision %v", inHandler)
	}
}
