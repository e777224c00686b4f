package server

import (
	"context"
	"math"
	"strconv"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	accesslogdata "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/fluxgate/fluxgate/controlpoint"
	"github.com/fluxgate/fluxgate/internal/policytest"
	"github.com/fluxgate/fluxgate/policies"
)

// envoyFlowEndRequest is an ext_authz request at control point api from a
// route that promises flow ends (the flow-end context extension).
func envoyFlowEndRequest() *authv3.CheckRequest {
	r := envoyRequest("api", nil)
	r.Attributes.ContextExtensions[ContextExtensionFlowEnd] = "report"
	return r
}

// admitOne asks for one flow and returns its id, failing unless it was
// admitted with one.
func admitOne(t *testing.T, c authv3.AuthorizationClient, req *authv3.CheckRequest) string {
	t.Helper()
	resp, err := c.Check(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	id := envoyHeaders(resp.GetOkResponse().GetHeaders()).Get(HeaderFlowID)
	if resp.GetOkResponse() == nil || id == "" || id == "0" {
		t.Fatalf("check = %v, want admitted with an %s header", resp, HeaderFlowID)
	}
	return id
}

// assertBusy fails unless a flow is rejected: the only slot is held.
func assertBusy(t *testing.T, c authv3.AuthorizationClient, why string) {
	t.Helper()
	resp, err := c.Check(context.Background(), envoyFlowEndRequest())
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetDeniedResponse() == nil {
		t.Fatalf("%s: a second flow was admitted while the only slot should be held", why)
	}
}

// logEntry is the final access-log entry of a request carrying flow id
// (none when empty) that got code (no response when 0), started at start
// and sent its last byte after took.
func logEntry(id string, code uint32, start time.Time, took time.Duration) *accesslogdata.HTTPAccessLogEntry {
	e := &accesslogdata.HTTPAccessLogEntry{
		CommonProperties: &accesslogdata.AccessLogCommon{
			StartTime:                  timestamppb.New(start),
			TimeToLastDownstreamTxByte: durationpb.New(took),
			AccessLogType:              accesslogdata.AccessLogType_DownstreamEnd,
		},
		Request:  &accesslogdata.HTTPRequestProperties{RequestMethod: corev3.RequestMethod_GET, Path: "/x", RequestHeaders: map[string]string{}},
		Response: &accesslogdata.HTTPResponseProperties{},
	}
	if id != "" {
		e.Request.RequestHeaders[headerFlowIDLower] = id
	}
	if code != 0 {
		e.Response.ResponseCode = wrapperspb.UInt32(code)
	}
	return e
}

// sendLogs streams the entries in one message, as Envoy's http_grpc
// logger does at each flush, and closes the stream: the server has
// handled every entry when it returns.
func sendLogs(t *testing.T, c accesslogv3.AccessLogServiceClient, entries ...*accesslogdata.HTTPAccessLogEntry) {
	t.Helper()
	stream, err := c.StreamAccessLogs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	msg := &accesslogv3.StreamAccessLogsMessage{
		Identifier: &accesslogv3.StreamAccessLogsMessage_Identifier{Node: &corev3.Node{Id: "envoy-1"}, LogName: "fluxgate"},
		LogEntries: &accesslogv3.StreamAccessLogsMessage_HttpLogs{HttpLogs: &accesslogv3.StreamAccessLogsMessage_HTTPAccessLogEntries{LogEntry: entries}},
	}
	if err := stream.Send(msg); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.CloseAndRecv(); err != nil {
		t.Fatal(err)
	}
}

// TestAccessLogEndsFlows: a flow admitted through ext_authz on a route
// that promises its end holds the only slot until an access-log entry
// with its id arrives; each outcome is counted.
func TestAccessLogEndsFlows(t *testing.T) {
	s, c := newTestServer(t, policytest.OneSlot("api"))
	conn := dialGRPC(t, s)
	authz, als := authv3.NewAuthorizationClient(conn), accesslogv3.NewAccessLogServiceClient(conn)

	// Each admission proves that the previous flow's end freed the slot.
	for _, code := range []uint32{200, 503, 0, 404} {
		id := admitOne(t, authz, envoyFlowEndRequest())
		assertBusy(t, authz, "before the access log")
		// Entries that are not the flow's end leave the slot held.
		intermediate := logEntry(id, 200, c.t, time.Millisecond)
		intermediate.CommonProperties.AccessLogType = accesslogdata.AccessLogType_DownstreamPeriodic
		upstream := logEntry(id, 200, c.t, time.Millisecond)
		upstream.CommonProperties.AccessLogType = accesslogdata.AccessLogType_UpstreamEnd
		old := logEntry(id, 200, c.t, time.Millisecond)
		old.CommonProperties.AccessLogType = accesslogdata.AccessLogType_NotSet
		old.CommonProperties.IntermediateLogEntry = true //nolint:staticcheck // SA1019: what Envoy before 1.26 sends
		sendLogs(t, als, intermediate, upstream, old, logEntry("", 200, c.t, time.Millisecond))
		assertBusy(t, authz, "after entries that are not the flow's end")
		sendLogs(t, als, logEntry(id, code, c.t, time.Millisecond))
	}
	id := admitOne(t, authz, envoyFlowEndRequest())
	sendLogs(t, als, logEntry(id, 200, c.t, time.Millisecond), logEntry(id, 200, c.t, time.Millisecond), logEntry("12a", 200, c.t, 0), logEntry("0", 200, c.t, 0))

	for outcome, want := range map[string]float64{
		alsEnded: 3, alsEndedFailed: 2, alsUnknownFlow: 1, alsBadFlowID: 2, alsNoFlowID: 4, alsNotFinal: 12,
	} {
		if got := testutil.ToFloat64(s.als.entries.WithLabelValues(outcome)); got != want {
			t.Errorf("entries{outcome=%q} = %v, want %v", outcome, got, want)
		}
	}
}

// newMetricServer is a Server on the wall clock (the limiter keeps its
// own) over an engine running src, with the metrics of both on one
// registry.
func newMetricServer(t *testing.T, src string) (*Server, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	e, err := controlpoint.New(controlpoint.Options{DecisionLogPerSecond: -1, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	docs, err := policies.Parse("test.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.SetPolicies([]*policies.Policy{docs[0].Object.(*policies.Policy)}); err != nil {
		t.Fatal(err)
	}
	return New(Options{Engine: e, Registerer: reg}), reg
}

// gauge is the value of the one series of a gauge family, NaN when the
// family is absent.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == name && len(f.GetMetric()) == 1 {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return math.NaN()
}

// TestAccessLogLatency: the limiter learns each flow's latency as Envoy
// logged it, not including the time the entry then spent in Envoy's
// buffer; a 5xx or a missing response ends the flow as failed, and a
// fast failure teaches the limiter no no-load latency. The limiter reads
// the wall clock, so each entry here waits in the "buffer" for 200 ms
// of real time before it is sent, and says its flow took 20 ms.
func TestAccessLogLatency(t *testing.T) {
	const noLoad = "fluxgate_adaptive_concurrency_no_load_latency_seconds"
	for _, tc := range []struct {
		name string
		code uint32
	}{{"ok", 200}, {"5xx", 503}, {"no response", 0}} {
		t.Run(tc.name, func(t *testing.T) {
			s, reg := newMetricServer(t, policytest.OneSlot("api"))
			conn := dialGRPC(t, s)
			authz, als := authv3.NewAuthorizationClient(conn), accesslogv3.NewAccessLogServiceClient(conn)
			for range 4 { // lowSamples/2: enough for a no-load latency
				id := admitOne(t, authz, envoyFlowEndRequest())
				admitted := time.Now() // not before the limiter's admission
				entry := logEntry(id, tc.code, admitted.Add(-time.Millisecond), 21*time.Millisecond)
				if tc.code == 200 {
					time.Sleep(200 * time.Millisecond)
				}
				sendLogs(t, als, entry)
			}
			got := gauge(t, reg, noLoad)
			switch {
			case tc.code != 200 && !math.IsNaN(got):
				t.Fatalf("%s = %v after failed flows only, want none", noLoad, got)
			case tc.code == 200 && !(got >= 0.020 && got < 0.150):
				t.Fatalf("%s = %v, want 20 ms and a little (not the 200 ms and more the entries waited)", noLoad, got)
			}
			if got := gauge(t, reg, "fluxgate_adaptive_concurrency_in_flight"); got != 0 {
				t.Fatalf("in flight after every end was logged: %v", got)
			}
			outcome := alsEnded
			if tc.code != 200 {
				outcome = alsEndedFailed
			}
			if got := testutil.ToFloat64(s.als.entries.WithLabelValues(outcome)); got != 4 {
				t.Fatalf("entries{outcome=%q} = %v, want 4", outcome, got)
			}
		})
	}
}

func TestEndedAt(t *testing.T) {
	now := t0.Add(time.Hour)
	for _, tc := range []struct {
		name  string
		start time.Time
		took  *durationpb.Duration
		dur   *durationpb.Duration
		want  time.Time
	}{
		{"last byte", now.Add(-time.Second), durationpb.New(100 * time.Millisecond), nil, now.Add(-900 * time.Millisecond)},
		{"duration when no byte went downstream", now.Add(-time.Second), nil, durationpb.New(300 * time.Millisecond), now.Add(-700 * time.Millisecond)},
		{"end in the future: clocks disagree", now, durationpb.New(time.Millisecond), nil, now},
		{"end too long ago: clocks disagree", now.Add(-time.Minute), durationpb.New(time.Millisecond), nil, now},
		{"no timing", time.Time{}, nil, nil, now},
	} {
		c := &accesslogdata.AccessLogCommon{TimeToLastDownstreamTxByte: tc.took, Duration: tc.dur}
		if !tc.start.IsZero() {
			c.StartTime = timestamppb.New(tc.start)
		}
		if got := endedAt(now, c); !got.Equal(tc.want) {
			t.Errorf("%s: endedAt = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestExtAuthzFlowEndPromise: the promise comes from the route's context
// extension or the request header; a flow that holds nothing has any id
// the client sent removed; a promise other than "report" is refused.
func TestExtAuthzFlowEndPromise(t *testing.T) {
	s, _ := newTestServer(t, policytest.OneSlot("api"))
	authz := authv3.NewAuthorizationClient(dialGRPC(t, s))
	ctx := context.Background()

	// Without a promise: passed through, no id, nothing removed.
	for range 3 {
		resp, err := authz.Check(ctx, envoyRequest("api", map[string]string{"x-fluxgate-flow-id": "777"}))
		if err != nil || resp.GetOkResponse() == nil {
			t.Fatalf("flow without a promise: %v (%v), want passed through", resp, err)
		}
		if ok := resp.GetOkResponse(); envoyHeaders(ok.GetHeaders()).Get(HeaderFlowID) != "" || len(ok.GetHeadersToRemove()) != 0 {
			t.Fatalf("flow without a promise: %v, want no flow id and no header removed", ok)
		}
	}

	// The header, as nginx sends it, in any case; it is not a label.
	hdr := envoyRequest("api", map[string]string{"x-fluxgate-flow-end": "Report"})
	if req, _, err := extAuthzFlow(hdr); err != nil || req.NoFlowEnd || req.Labels["http.request.header.x_fluxgate_flow_end"] != "" {
		t.Fatalf("flow with the header: %+v (%v), want a promise and no label for it", req, err)
	}
	id := admitOne(t, authz, hdr)
	assertBusy(t, authz, "after a header promise")
	n, _ := strconv.ParseUint(id, 10, 64)
	if !s.engine.EndFlow(t0, n, false) {
		t.Fatalf("flow %s is not held", id)
	}

	// A promise where nothing holds a slot: any client id is removed.
	resp, err := authz.Check(ctx, func() *authv3.CheckRequest {
		r := envoyRequest("elsewhere", map[string]string{"x-fluxgate-flow-id": "777"})
		r.Attributes.ContextExtensions[ContextExtensionFlowEnd] = "report"
		return r
	}())
	if ok := resp.GetOkResponse(); err != nil || ok == nil || len(ok.GetHeadersToRemove()) != 1 || ok.GetHeadersToRemove()[0] != "x-fluxgate-flow-id" {
		t.Fatalf("promise without a slot: %v (%v), want x-fluxgate-flow-id removed", resp, err)
	}

	for _, bad := range []func(*authv3.CheckRequest){
		func(r *authv3.CheckRequest) { r.Attributes.ContextExtensions[ContextExtensionFlowEnd] = "yes" },
		func(r *authv3.CheckRequest) {
			r.Attributes.Request.Http.Headers = map[string]string{"x-fluxgate-flow-end": "later"}
		},
	} {
		r := envoyRequest("api", nil)
		bad(r)
		if _, err := authz.Check(ctx, r); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("bad promise: %v, want InvalidArgument", err)
		}
	}
}

// TestAccessLogStreamLimit: past MaxAccessLogStreams a stream is refused
// with ResourceExhausted (Envoy reconnects later); a closed one frees its
// place.
func TestAccessLogStreamLimit(t *testing.T) {
	e, err := controlpoint.New(controlpoint.Options{DecisionLogPerSecond: -1})
	if err != nil {
		t.Fatal(err)
	}
	s := New(Options{Engine: e, MaxAccessLogStreams: 1})
	als := accesslogv3.NewAccessLogServiceClient(dialGRPC(t, s))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first, err := als.StreamAccessLogs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Send(&accesslogv3.StreamAccessLogsMessage{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(s.als.streams) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the first stream never opened")
		}
		time.Sleep(time.Millisecond)
	}
	second, err := als.StreamAccessLogs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := second.CloseAndRecv(); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("second stream: %v, want ResourceExhausted", err)
	}
	if got := testutil.ToFloat64(s.als.refused); got != 1 {
		t.Fatalf("refused = %v, want 1", got)
	}
	if _, err := first.CloseAndRecv(); err != nil {
		t.Fatal(err)
	}
	sendLogs(t, als, logEntry("", 200, t0, 0))
}
