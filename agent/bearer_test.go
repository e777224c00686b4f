package agent

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/fluxgate/fluxgate/controlpoint/controlpointpb"
)

const (
	testCheckToken = "check-s3cret"
	testOTLPToken  = "otlp-s3cret"
)

// With check.token and otlp.token set, the check API and the OTLP
// receiver answer only callers that send their token, over HTTP and gRPC;
// health, probes and metrics stay open.
func TestCheckAndOTLPTokens(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.Check.Token, cfg.OTLP.Token = testCheckToken, testOTLPToken
	a := startAgent(t, cfg)

	otlpURL := "http://" + a.Addr(ListenerOTLPHTTP).String() + "/v1/traces"
	const spans = `{"resourceSpans":[]}`
	for _, tc := range []struct {
		name, method, url, body, auth string
		code                          int
	}{
		{"check, no token", "POST", a.testURL("/v1/check"), `{"control_point":"api"}`, "", 401},
		{"check, wrong token", "POST", a.testURL("/v1/check"), `{"control_point":"api"}`, "Bearer " + testOTLPToken, 401},
		{"check, admin token", "POST", a.testURL("/v1/check"), `{"control_point":"api"}`, "Bearer " + testAdminToken, 401},
		{"check, basic scheme", "POST", a.testURL("/v1/check"), `{"control_point":"api"}`, "Basic " + testCheckToken, 401},
		{"check, token", "POST", a.testURL("/v1/check"), `{"control_point":"api"}`, "bearer " + testCheckToken, 200},
		{"flow end, no token", "POST", a.testURL("/v1/flow/end"), `{"flow_id":"1"}`, "", 401},
		{"auth_request GET, no token", "GET", a.testURL("/v1/check/http"), "", "", 401},
		{"auth_request POST, no token", "POST", a.testURL("/v1/check/http"), "", "", 401},
		{"auth_request, token", "GET", a.testURL("/v1/check/http"), "", "Bearer " + testCheckToken, 200},
		{"otlp, no token", "POST", otlpURL, spans, "", 401},
		{"otlp, check token", "POST", otlpURL, spans, "Bearer " + testCheckToken, 401},
		{"otlp, token", "POST", otlpURL, spans, "BEARER " + testOTLPToken, 200},
		{"health", "GET", a.testURL("/v1/monitoring/health"), "", "", 200},
		{"system stats", "GET", a.testURL("/v1/monitoring/metrics"), "", "", 200},
		{"readyz", "GET", a.testURL("/readyz"), "", "", 200},
		{"livez", "GET", a.testURL("/livez"), "", "", 200},
		{"metrics", "GET", "http://" + a.Addr(ListenerMetrics).String() + "/metrics", "", "", 200},
	} {
		h := map[string]string{"Content-Type": "application/json", "X-Original-URI": "/orders"}
		if tc.auth != "" {
			h["Authorization"] = tc.auth
		}
		r := doRequest(t, tc.method, tc.url, tc.body, h)
		if r.code != tc.code {
			t.Errorf("%s: %s %s = %d %s, want %d", tc.name, tc.method, tc.url, r.code, r.body, tc.code)
			continue
		}
		if r.code == 401 && r.header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: 401 without WWW-Authenticate", tc.name)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dial := func(addr string) *grpc.ClientConn {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		return conn
	}
	withToken := func(token string) context.Context {
		return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	check, otlp := dial(a.Addr(ListenerGRPC).String()), dial(a.Addr(ListenerOTLPGRPC).String())
	flows, envoy, traces := pb.NewFlowControlServiceClient(check), authv3.NewAuthorizationClient(check), collectortrace.NewTraceServiceClient(otlp)
	for _, tc := range []struct {
		name string
		call func() error
		want codes.Code
	}{
		{"Check, no token", func() error {
			_, err := flows.Check(ctx, &pb.CheckRequest{ControlPoint: "api"})
			return err
		}, codes.Unauthenticated},
		{"Check, OTLP token", func() error {
			_, err := flows.Check(withToken(testOTLPToken), &pb.CheckRequest{ControlPoint: "api"})
			return err
		}, codes.Unauthenticated},
		{"Check, token", func() error {
			_, err := flows.Check(withToken(testCheckToken), &pb.CheckRequest{ControlPoint: "api"})
			return err
		}, codes.OK},
		{"FlowEnd, no token", func() error {
			_, err := flows.FlowEnd(ctx, &pb.FlowEndRequest{FlowId: 1})
			return err
		}, codes.Unauthenticated},
		{"Envoy Check, no token", func() error {
			_, err := envoy.Check(ctx, &authv3.CheckRequest{})
			return err
		}, codes.Unauthenticated},
		{"health, no token", func() error {
			_, err := healthpb.NewHealthClient(check).Check(ctx, &healthpb.HealthCheckRequest{})
			return err
		}, codes.OK},
		{"OTLP Export, no token", func() error {
			_, err := traces.Export(ctx, &collectortrace.ExportTraceServiceRequest{})
			return err
		}, codes.Unauthenticated},
		{"OTLP Export, check token", func() error {
			_, err := traces.Export(withToken(testCheckToken), &collectortrace.ExportTraceServiceRequest{})
			return err
		}, codes.Unauthenticated},
		{"OTLP Export, token", func() error {
			_, err := traces.Export(withToken(testOTLPToken), &collectortrace.ExportTraceServiceRequest{})
			return err
		}, codes.OK},
	} {
		if err := tc.call(); status.Code(err) != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

// With both tokens set, the start-up log says so for each surface, and
// the warning about every interface names monitoring alone.
func TestStartupLogsTokenRequired(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.Server.Host = "0.0.0.0"
	cfg.Check.Token, cfg.OTLP.Token = testCheckToken, testOTLPToken
	var buf syncBuffer
	a, err := New(Options{Config: cfg, Logger: slog.New(slog.NewJSONHandler(&buf, nil)), ShutdownTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := a.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	var msgs []string
	for _, l := range buf.lines(t) {
		msg, _ := l["msg"].(string)
		msgs = append(msgs, msg)
		if msg == "surfaces without authentication listen on every interface" {
			if got := jsonString(l["surfaces"]); got != `["monitoring"]` {
				t.Errorf("warning names surfaces %s, want monitoring alone", got)
			}
		}
	}
	for _, want := range []string{"check API: token required (check.token)", "OTLP receiver: token required (otlp.token)", "surfaces without authentication listen on every interface"} {
		if !slices.Contains(msgs, want) {
			t.Errorf("no %q in the start-up log %q", want, msgs)
		}
	}
	for _, not := range []string{"check API open without authentication", "OTLP receiver open without authentication"} {
		if slices.Contains(msgs, not) {
			t.Errorf("%q logged with a token set", not)
		}
	}
}
