package envoy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	accesslogdata "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/fluxgate/fluxgate/agent"
	"github.com/fluxgate/fluxgate/agent/agenttest"
	"github.com/fluxgate/fluxgate/internal/policytest"
)

// envoyConn is a gRPC connection to an agent's gRPC port, as Envoy's
// fluxgate_agent cluster makes one (HTTP/2, plain text).
func envoyConn(t *testing.T, a *agent.Agent) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(a.Addr(agent.ListenerGRPC).String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// check is the ext_authz request Envoy sends for GET /orders on the
// example's route; promise adds its flow-end context extension.
func check(promise bool) *authv3.CheckRequest {
	ext := map[string]string{"control-point": "ingress"}
	if promise {
		ext["flow-end"] = "report"
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		ContextExtensions: ext,
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/orders", Host: "shop.example", Scheme: "http",
			Headers: map[string]string{":method": "GET", ":path": "/orders", ":authority": "shop.example"},
		}},
	}}
}

// flowID is the x-fluxgate-flow-id header an ok_response adds to the
// upstream request, "" for none (or a denial).
func flowID(resp *authv3.CheckResponse) string {
	for _, h := range resp.GetOkResponse().GetHeaders() {
		if h.GetHeader().GetKey() == "x-fluxgate-flow-id" {
			return h.GetHeader().GetValue()
		}
	}
	return ""
}

// entry is the access-log entry Envoy writes at the end of a request whose
// upstream request carried flow id (none when empty) and that got code
// (none when 0), 5 ms after it started.
func entry(id string, code uint32) *accesslogdata.HTTPAccessLogEntry {
	e := &accesslogdata.HTTPAccessLogEntry{
		CommonProperties: &accesslogdata.AccessLogCommon{
			StartTime:                  timestamppb.New(time.Now().Add(-5 * time.Millisecond)),
			TimeToLastDownstreamTxByte: durationpb.New(5 * time.Millisecond),
			AccessLogType:              accesslogdata.AccessLogType_DownstreamEnd,
		},
		Request:  &accesslogdata.HTTPRequestProperties{RequestMethod: corev3.RequestMethod_GET, Path: "/orders", RequestHeaders: map[string]string{}},
		Response: &accesslogdata.HTTPResponseProperties{},
	}
	if id != "" {
		e.Request.RequestHeaders["x-fluxgate-flow-id"] = id
	}
	if code != 0 {
		e.Response.ResponseCode = wrapperspb.UInt32(code)
	}
	return e
}

// logStream is one of Envoy's access-log streams: opened once, one
// message per buffer flush, the identifier in the first.
type logStream struct {
	s     accesslogv3.AccessLogService_StreamAccessLogsClient
	first bool
}

func openLog(t *testing.T, ctx context.Context, conn *grpc.ClientConn) *logStream {
	t.Helper()
	s, err := accesslogv3.NewAccessLogServiceClient(conn).StreamAccessLogs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return &logStream{s: s, first: true}
}

func (l *logStream) flush(t *testing.T, entries ...*accesslogdata.HTTPAccessLogEntry) {
	t.Helper()
	msg := &accesslogv3.StreamAccessLogsMessage{LogEntries: &accesslogv3.StreamAccessLogsMessage_HttpLogs{
		HttpLogs: &accesslogv3.StreamAccessLogsMessage_HTTPAccessLogEntries{LogEntry: entries},
	}}
	if l.first {
		msg.Identifier = &accesslogv3.StreamAccessLogsMessage_Identifier{Node: &corev3.Node{Id: "envoy-test"}, LogName: "fluxgate"}
		l.first = false
	}
	if err := l.s.Send(msg); err != nil {
		t.Fatal(err)
	}
}

// metric is the value of the series of name whose labels contain labels
// on the agent's /metrics, NaN when there is none.
func metric(t *testing.T, a *agent.Agent, name, labels string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + a.Addr(agent.ListenerMetrics).String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		series, value, ok := strings.Cut(line, " ")
		if !ok || (series != name && !strings.HasPrefix(series, name+"{")) || !strings.Contains(series, labels) {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		return v
	}
	return math.NaN()
}

// waitMetric waits until the series reaches want: the access log has no
// answers, so the agent's counters are how a sender learns it was heard.
func waitMetric(t *testing.T, a *agent.Agent, name, labels string, want float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := metric(t, a, name, labels)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s{%s} = %v, want %v", name, labels, got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

const entries = "fluxgate_envoy_access_log_entries_total"

// TestEnvoyReportsFlowEnds: a flow Envoy admits on a route that promises
// its end holds the adaptive concurrency limit's only slot until its
// access-log entry reaches the agent; a 5xx or no response ends it as
// failed, which teaches the limiter no no-load latency, and successes do.
// An unknown id is counted and changes nothing; a route without the
// promise passes its flows through, as before.
func TestEnvoyReportsFlowEnds(t *testing.T) {
	a := agenttest.Start(t, agenttest.Config(t, policytest.OneSlot("ingress")))
	conn := envoyConn(t, a)
	authz := authv3.NewAuthorizationClient(conn)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := openLog(t, ctx, conn)

	admit := func() string {
		t.Helper()
		resp, err := authz.Check(ctx, check(true))
		if err != nil {
			t.Fatal(err)
		}
		id := flowID(resp)
		if resp.GetOkResponse() == nil || id == "" {
			t.Fatalf("check = %v, want admitted with a flow id", resp)
		}
		return id
	}
	busy := func(why string) {
		t.Helper()
		resp, err := authz.Check(ctx, check(true))
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetDeniedResponse() == nil || resp.GetDeniedResponse().GetStatus().GetCode() != 503 {
			t.Fatalf("%s: a second flow got %v while the only slot should be held, want 503", why, resp)
		}
	}

	// Failures: 5xx, and no response at all.
	for i, code := range []uint32{503, 0, 502, 504} {
		id := admit()
		busy("before the end was logged")
		// Without the promise the flow passes through, with no id.
		if resp, err := authz.Check(ctx, check(false)); err != nil || resp.GetOkResponse() == nil || flowID(resp) != "" {
			t.Fatalf("a flow without the promise while the slot is held: %v (%v), want passed through without an id", resp, err)
		}
		log.flush(t, entry("", 200), entry(id, code)) // the pass-through's entry has no id
		waitMetric(t, a, entries, `outcome="ended_failed"`, float64(i+1))
		if got := metric(t, a, "fluxgate_adaptive_concurrency_in_flight", `policy_name="one-slot"`); got != 0 {
			t.Fatalf("in flight after the end was logged: %v", got)
		}
	}
	if got := metric(t, a, "fluxgate_adaptive_concurrency_no_load_latency_seconds", `policy_name="one-slot"`); !math.IsNaN(got) {
		t.Fatalf("no-load latency %v learned from failed flows only", got)
	}

	// Successes teach it.
	for i := range 4 {
		id := admit()
		busy("before the end was logged")
		log.flush(t, entry(id, 200))
		waitMetric(t, a, entries, `outcome="ended"`, float64(i+1))
	}
	if got := metric(t, a, "fluxgate_adaptive_concurrency_no_load_latency_seconds", `policy_name="one-slot"`); !(got > 0) {
		t.Fatalf("no-load latency after four successful flows: %v, want one", got)
	}

	log.flush(t, entry("18446744073709551615", 200))
	waitMetric(t, a, entries, `outcome="unknown_flow"`, 1)
	waitMetric(t, a, entries, `outcome="no_flow_id"`, 4)
	if _, err := log.s.CloseAndRecv(); err != nil {
		t.Fatalf("closing the access log: %v", err)
	}
	admit() // the slot is free
}

// TestEnvoyAccessLogNeedsCheckToken: with check.token set, an access-log
// stream without it is refused like an ext_authz check, and one with it
// (Envoy's grpc_service initial_metadata) ends flows.
func TestEnvoyAccessLogNeedsCheckToken(t *testing.T) {
	cfg := agenttest.Config(t, policytest.OneSlot("ingress"))
	cfg.Check.Token = "s3cret"
	a := agenttest.Start(t, cfg)
	conn := envoyConn(t, a)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	anon := openLog(t, ctx, conn)
	// The refusal may come before the message is sent: Send then says
	// io.EOF, and CloseAndRecv says why.
	if err := anon.s.Send(&accesslogv3.StreamAccessLogsMessage{LogEntries: &accesslogv3.StreamAccessLogsMessage_HttpLogs{
		HttpLogs: &accesslogv3.StreamAccessLogsMessage_HTTPAccessLogEntries{LogEntry: []*accesslogdata.HTTPAccessLogEntry{entry("1", 200)}},
	}}); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	if _, err := anon.s.CloseAndRecv(); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("access log without the token: %v, want Unauthenticated", err)
	}
	if got := metric(t, a, entries, `outcome="unknown_flow"`); got != 0 {
		t.Fatalf("an entry without the token was handled: unknown_flow = %v", got)
	}

	authed := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer s3cret")
	resp, err := authv3.NewAuthorizationClient(conn).Check(authed, check(true))
	if err != nil || flowID(resp) == "" {
		t.Fatalf("check with the token: %v (%v), want admitted with a flow id", resp, err)
	}
	log := openLog(t, authed, conn)
	log.flush(t, entry(flowID(resp), 200))
	if _, err := log.s.CloseAndRecv(); err != nil {
		t.Fatal(err)
	}
	if got := metric(t, a, entries, `outcome="ended"`); got != 1 {
		t.Fatalf("ended = %v after the entry with the token, want 1", got)
	}
}

// TestEnvoyLostEntryExpires: the access log is lossy; a flow whose entry
// never comes frees its slot after max_flow_duration, as a flow nginx
// never reports does, and the expiry is counted.
func TestEnvoyLostEntryExpires(t *testing.T) {
	policy := policytest.OneSlotExpiring("ingress", time.Second)
	a := agenttest.Start(t, agenttest.Config(t, policy))
	authz := authv3.NewAuthorizationClient(envoyConn(t, a))
	ctx := context.Background()
	first, err := authz.Check(ctx, check(true))
	if err != nil || flowID(first) == "" {
		t.Fatalf("check = %v (%v), want admitted with a flow id", first, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := authz.Check(ctx, check(true))
		if err != nil {
			t.Fatal(err)
		}
		if flowID(resp) != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the slot of a flow whose end never came was not freed after max_flow_duration")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := metric(t, a, "fluxgate_flows_expired_total", ""); got != 1 {
		t.Fatalf("fluxgate_flows_expired_total = %v, want 1", got)
	}
}
