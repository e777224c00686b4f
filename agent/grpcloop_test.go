//go:build linux

package agent

import (
	"context"
	"strings"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/fluxgate/fluxgate/controlpoint/controlpointpb"
)

// With server.grpc_engine loop (and auto, on Linux), Check and FlowEnd
// are answered on the loops behind check.token, and every other call of
// the port — health (open), OTLP spans (otlp.token) — is served by grpc-go
// on the same connection, with the same tokens; net serves all of it with
// grpc-go. The answers are the same.
func TestGRPCLoopsServeChecksAndHandOver(t *testing.T) {
	for _, engine := range []string{"loop", "auto", "net"} {
		t.Run(engine, func(t *testing.T) {
			cfg := testConfig(t.TempDir())
			cfg.Server.GRPCEngine = engine
			cfg.Check.Token, cfg.OTLP.Token = testCheckToken, testOTLPToken
			a := startAgent(t, cfg)
			if loops := a.grpcLoops != nil; loops != (engine != "net") {
				t.Fatalf("engine %s: loops running %v", engine, loops)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			conn, err := grpc.NewClient(a.Addr(ListenerGRPC).String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			flows, traces := pb.NewFlowControlServiceClient(conn), collectortrace.NewTraceServiceClient(conn)
			withToken := func(token string) context.Context {
				return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
			}
			for i := range 3 { // twice over, and once more after the other calls
				if _, err := flows.Check(ctx, &pb.CheckRequest{ControlPoint: "api"}); status.Code(err) != codes.Unauthenticated {
					t.Errorf("Check without the token: %v", err)
				}
				resp, err := flows.Check(withToken(testCheckToken), &pb.CheckRequest{ControlPoint: "api", Labels: map[string]string{"user": "u1"}})
				if err != nil || resp.GetDecisionType() != pb.DecisionType_DECISION_TYPE_ACCEPTED || resp.GetControlPoint() != "api" {
					t.Fatalf("Check %d with the token: %v, %v", i, resp, err)
				}
				if _, err := flows.Check(withToken(testCheckToken), &pb.CheckRequest{}); status.Code(err) != codes.InvalidArgument {
					t.Errorf("Check without a control point: %v, want InvalidArgument", err)
				}
				if i == 1 {
					if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
						t.Errorf("health, no token: %v", err)
					}
					if _, err := flows.FlowEnd(ctx, &pb.FlowEndRequest{FlowId: 1}); status.Code(err) != codes.Unauthenticated {
						t.Errorf("FlowEnd without the token: %v", err)
					}
					if r, err := flows.FlowEnd(withToken(testCheckToken), &pb.FlowEndRequest{FlowId: 1}); err != nil || r.GetFound() {
						t.Errorf("FlowEnd of an unknown flow: %v, %v", r, err)
					}
					if _, err := traces.Export(withToken(testCheckToken), &collectortrace.ExportTraceServiceRequest{}); status.Code(err) != codes.Unauthenticated {
						t.Errorf("OTLP Export with the check token: %v", err)
					}
					if _, err := traces.Export(withToken(testOTLPToken), &collectortrace.ExportTraceServiceRequest{}); err != nil {
						t.Errorf("OTLP Export with its token: %v", err)
					}
				}
			}
		})
	}
}

// server.grpc_engine loop with TLS on the gRPC port is refused at start,
// in the operator's words.
func TestGRPCEngineLoopNeedsPlainPort(t *testing.T) {
	e := newTLSEnv(t)
	cfg := e.config(t, "")
	cfg.Server.GRPCEngine = "loop"
	a, err := New(Options{Config: cfg, ShutdownTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = a.Start(context.Background())
	if err == nil {
		_ = a.Stop(context.Background())
		t.Fatal("started with grpc_engine loop and TLS")
	}
	if !strings.Contains(err.Error(), "server.grpc_engine loop serves plain gRPC (h2c) only") {
		t.Errorf("error: %v", err)
	}
	// auto with TLS: grpc-go serves the port.
	cfg.Server.GRPCEngine = "auto"
	if a := startAgent(t, cfg); a.grpcLoops != nil {
		t.Error("auto with TLS runs the loops")
	}
}
