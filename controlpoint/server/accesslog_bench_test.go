package server

import (
	"context"
	"strconv"
	"testing"
	"time"

	accesslogdata "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"

	pb "github.com/fluxgate/fluxgate/controlpoint/controlpointpb"
)

// wideSlots is an adaptive_concurrency limit that never binds in the
// benchmarks: they measure what a flow costs the agent, not queueing.
const wideSlots = `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: wide}
spec:
  circuit:
    components:
      - flow_control:
          adaptive_concurrency:
            selectors: [{control_point: api}]
            parameters: {initial_concurrency: 10000, min_concurrency: 10000, max_concurrency: 10000}
`

// flushEvery is how many entries each access-log message carries, about
// what Envoy's 16 KiB buffer holds of the example's entries.
const flushEvery = 32

// BenchmarkEnvoyFlow is one Envoy flow as the agent sees it, over gRPC
// (in memory): "check" is an ext_authz check without the flow-end promise
// (the flow passes adaptive_concurrency), "check+accesslog" one with the
// promise whose end comes in an access-log entry (flushEvery a message on
// one stream), and "check+flowend" the same flow ended with a FlowEnd call
// of its own, as an SDK does. ns/op is per flow.
func BenchmarkEnvoyFlow(b *testing.B) {
	ctx := context.Background()
	b.Run("check", func(b *testing.B) {
		s, _ := newTestServer(b, wideSlots)
		authz := authv3.NewAuthorizationClient(dialGRPC(b, s))
		for b.Loop() {
			if _, err := authz.Check(ctx, envoyRequest("api", nil)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("check+accesslog", func(b *testing.B) {
		s, _ := newTestServer(b, wideSlots)
		conn := dialGRPC(b, s)
		authz, als := authv3.NewAuthorizationClient(conn), accesslogv3.NewAccessLogServiceClient(conn)
		stream, err := als.StreamAccessLogs(ctx)
		if err != nil {
			b.Fatal(err)
		}
		batch := make([]*accesslogdata.HTTPAccessLogEntry, 0, flushEvery)
		flush := func() {
			msg := &accesslogv3.StreamAccessLogsMessage{LogEntries: &accesslogv3.StreamAccessLogsMessage_HttpLogs{
				HttpLogs: &accesslogv3.StreamAccessLogsMessage_HTTPAccessLogEntries{LogEntry: batch},
			}}
			if err := stream.Send(msg); err != nil {
				b.Fatal(err)
			}
			batch = make([]*accesslogdata.HTTPAccessLogEntry, 0, flushEvery)
		}
		for b.Loop() {
			resp, err := authz.Check(ctx, envoyFlowEndRequest())
			if err != nil {
				b.Fatal(err)
			}
			batch = append(batch, logEntry(envoyHeaders(resp.GetOkResponse().GetHeaders()).Get(HeaderFlowID), 200, t0, time.Millisecond))
			if len(batch) == flushEvery {
				flush()
			}
		}
		if len(batch) > 0 {
			flush()
		}
		if _, err := stream.CloseAndRecv(); err != nil { // every entry handled
			b.Fatal(err)
		}
		if got := testutil.ToFloat64(s.als.entries.WithLabelValues(alsEnded)); got != float64(b.N) {
			b.Fatalf("%v flows ended, want %d", got, b.N)
		}
	})
	b.Run("check+flowend", func(b *testing.B) {
		s, _ := newTestServer(b, wideSlots)
		conn := dialGRPC(b, s)
		authz, fc := authv3.NewAuthorizationClient(conn), pb.NewFlowControlServiceClient(conn)
		for b.Loop() {
			resp, err := authz.Check(ctx, envoyFlowEndRequest())
			if err != nil {
				b.Fatal(err)
			}
			id, _ := strconv.ParseUint(envoyHeaders(resp.GetOkResponse().GetHeaders()).Get(HeaderFlowID), 10, 64)
			if end, err := fc.FlowEnd(ctx, &pb.FlowEndRequest{FlowId: id}); err != nil || !end.GetFound() {
				b.Fatalf("FlowEnd: %v, found %v", err, end.GetFound())
			}
		}
	})
}
