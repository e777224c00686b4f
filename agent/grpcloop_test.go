//go:build linux

package agent

import (
	"context"
	"crypto/tls"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/fluxgate/fluxgate/controlpoint/client"
	pb "github.com/fluxgate/fluxgate/controlpoint/controlpointpb"
	"github.com/fluxgate/fluxgate/controlpoint/flow"
)

// With server.grpc_engine loop (and auto, on Linux), Check and FlowEnd
// are answered on the loops behind check.token, and every other call of
// the port — health (open), OTLP spans (otlp.token) — is served by grpc-go
// on the same connection, with the same tokens; net serves all of it with
// grpc-go. The answers are the same.
//
// Over TLS the same (the handshake on a goroutine, then the loops), the
// client presenting a certificate the agent requires.
func TestGRPCLoopsServeChecksAndHandOver(t *testing.T) {
	e := newTLSEnv(t)
	for _, engine := range []string{"loop", "auto", "net", "loop-tls", "auto-tls", "net-tls"} {
		t.Run(engine, func(t *testing.T) {
			cfg, creds := testConfig(t.TempDir()), insecure.NewCredentials()
			engine, overTLS := strings.CutSuffix(engine, "-tls")
			if overTLS {
				cfg = e.config(t, ClientAuthRequire)
				creds = credentials.NewTLS(e.client(e.good))
			}
			cfg.Server.GRPCEngine = engine
			cfg.Check.Token, cfg.OTLP.Token = testCheckToken, testOTLPToken
			a := startAgent(t, cfg)
			if loops := a.grpcLoops != nil; loops != (engine != "net") {
				t.Fatalf("engine %s: loops running %v", engine, loops)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			conn, err := grpc.NewClient(a.Addr(ListenerGRPC).String(), grpc.WithTransportCredentials(creds))
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

// Over TLS the loops refuse what grpc-go's TLS credentials refuse: a
// client without a certificate the agent requires (at the handshake, on
// a goroutine), and one that did not negotiate h2 by ALPN (after it);
// and a plain-text client. The Check a good client makes next is
// answered.
func TestGRPCLoopsOverTLSRefuse(t *testing.T) {
	e := newTLSEnv(t)
	cfg := e.config(t, ClientAuthRequire)
	cfg.Server.GRPCEngine = "loop"
	a := startAgent(t, cfg)
	if a.grpcLoops == nil {
		t.Fatal("grpc_engine loop with TLS: no loops")
	}
	addr := a.Addr(ListenerGRPC).String()
	for name, creds := range map[string]credentials.TransportCredentials{
		"plain text": insecure.NewCredentials(), "no certificate": credentials.NewTLS(e.client(nil)),
		"another CA's certificate": credentials.NewTLS(e.client(e.stranger)),
	} {
		if err := grpcCall(t, addr, creds, checkCall); status.Code(err) != codes.Unavailable {
			t.Errorf("%s: Check %v, want Unavailable", name, err)
		}
	}
	// TLS without ALPN: the handshake completes, then the loops close the
	// connection before reading a frame (the preface and SETTINGS sent
	// get no answer).
	cfgNoALPN := e.client(e.good)
	cfgNoALPN.NextProtos = nil
	conn, err := tls.Dial("tcp", addr, cfgNoALPN)
	if err != nil {
		t.Fatalf("handshake without ALPN: %v", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")); err != nil {
		t.Fatalf("preface: %v", err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if b, err := io.ReadAll(conn); err != nil || len(b) > 0 {
		t.Errorf("a client without ALPN h2 read %d bytes, %v; want the connection closed with nothing", len(b), err)
	}
	if err := grpcCall(t, addr, credentials.NewTLS(e.client(e.good)), checkCall); err != nil {
		t.Errorf("Check with the good certificate: %v", err)
	}
}

// The Go SDK's remote checker against the loops, end to end: an adaptive
// concurrency limit of 2 (a queue, so its checks run off the loop) admits
// two flows with slots, refuses a third, and takes a freed slot back
// once the SDK reports an end (FlowEnd, on the loops too).
func TestGoSDKOnGRPCLoops(t *testing.T) {
	dir := t.TempDir()
	const policy = `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: protect}
spec:
  circuit:
    components:
      - flow_control:
          adaptive_concurrency:
            selectors: [{control_point: api}]
            parameters: {initial_concurrency: 2, max_concurrency: 2, max_queue_delay: 1ms, max_flow_duration: 1m}
`
	if err := os.WriteFile(filepath.Join(dir, "protect.yaml"), []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(dir)
	cfg.Check.Token = testCheckToken
	a := startAgent(t, cfg)
	if a.grpcLoops == nil {
		t.Fatal("the gRPC port is not on the loops")
	}
	if !a.engine.MayWait("api") {
		t.Fatal("the adaptive concurrency limit does not queue: the test would not take the waiting path")
	}
	r, err := client.NewRemote(a.Addr(ListenerGRPC).String(), client.RemoteOptions{Token: testCheckToken})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	check := func() *flow.Decision {
		t.Helper()
		d := &flow.Decision{}
		if err := r.Check(ctx, &flow.Request{ControlPoint: "api", Labels: map[string]string{"user": "u"}}, d); err != nil {
			t.Fatal(err)
		}
		return d
	}
	first, second := check(), check()
	if !first.Accepted || !second.Accepted || first.FlowID == 0 || second.FlowID == 0 {
		t.Fatalf("two flows under a limit of 2: %+v, %+v; want both admitted with slots", first, second)
	}
	if d := check(); d.Accepted {
		t.Fatalf("a third flow at the limit was admitted: %+v", d)
	}
	if err := r.EndFlow(ctx, first.FlowID, false); err != nil {
		t.Fatal(err)
	}
	if d := check(); !d.Accepted || d.FlowID == 0 {
		t.Fatalf("after an end was reported: %+v; want admitted with a slot", d)
	}
}
