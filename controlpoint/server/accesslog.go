package server

import (
	"errors"
	"io"
	"strconv"
	"sync/atomic"
	"time"

	accesslogdata "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// DefaultMaxAccessLogStreams is how many Envoy access-log streams a
// Server serves at once unless Options.MaxAccessLogStreams says otherwise.
// Envoy opens one per worker thread and logger, so 256 serves dozens of
// Envoys on one agent.
const DefaultMaxAccessLogStreams = 256

// maxLogLag bounds the correction for the time an access-log entry spent
// in Envoy's buffer: a larger gap says the clocks disagree, not that the
// entry waited.
const maxLogLag = 10 * time.Second

// Outcomes of an access-log entry, the outcome label of
// fluxgate_envoy_access_log_entries_total.
const (
	alsEnded       = "ended"        // a held flow ended
	alsEndedFailed = "ended_failed" // a held flow ended in failure (5xx, no response)
	alsUnknownFlow = "unknown_flow" // ended already, expired, restarted agent, another agent's id
	alsNoFlowID    = "no_flow_id"   // a flow that holds nothing: rejected, or a route without flow ends
	alsBadFlowID   = "bad_flow_id"  // not a decimal flow id
	alsNotFinal    = "not_final"    // an intermediate, start or upstream-attempt entry
	alsNotHTTP     = "not_http"     // a TCP entry
)

// accessLogMetrics are the access-log service's metrics.
type accessLogMetrics struct {
	entries *prometheus.CounterVec
	streams prometheus.Gauge
	refused prometheus.Counter
}

func newAccessLogMetrics() *accessLogMetrics {
	m := &accessLogMetrics{
		entries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fluxgate_envoy_access_log_entries_total",
			Help: "Envoy access-log entries received, by outcome: ended and ended_failed (a flow's end freed its slots), unknown_flow (its id is not held: ended already, expired after max_flow_duration, or issued by another agent), no_flow_id, bad_flow_id, not_final, not_http.",
		}, []string{"outcome"}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "fluxgate_envoy_access_log_streams",
			Help: "Envoy access-log streams open now.",
		}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fluxgate_envoy_access_log_streams_refused_total",
			Help: "Envoy access-log streams refused because the maximum was open already (Envoy retries).",
		}),
	}
	for _, o := range []string{alsEnded, alsEndedFailed, alsUnknownFlow, alsNoFlowID, alsBadFlowID, alsNotFinal, alsNotHTTP} {
		m.entries.WithLabelValues(o)
	}
	return m
}

func (m *accessLogMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.entries, m.streams, m.refused}
}

// accessLog is Envoy's envoy.service.accesslog.v3.AccessLogService, the
// http_grpc access logger's server: each final entry whose request
// headers carry HeaderFlowID (additional_request_headers_to_log) ends
// that flow as POST /v1/flow/end does, failed for a 5xx response or none.
type accessLog struct {
	accesslogv3.UnimplementedAccessLogServiceServer
	s *Server
}

var _ accesslogv3.AccessLogServiceServer = accessLog{}

func registerAccessLog(g grpc.ServiceRegistrar, s *Server) {
	accesslogv3.RegisterAccessLogServiceServer(g, accessLog{s: s})
}

// StreamAccessLogs ends the flows a stream's entries report until Envoy
// closes it. One message is in memory at a time (the gRPC server bounds
// its size), handled before the next is read. Problems are logged once a
// stream, with the stream's node and log name, and counted per entry.
func (a accessLog) StreamAccessLogs(stream accesslogv3.AccessLogService_StreamAccessLogsServer) error {
	s := a.s
	if !s.alsSlots.acquire() {
		s.als.refused.Inc()
		return status.Errorf(codes.ResourceExhausted, "fluxgate: %d access-log streams are open already", s.alsSlots.max)
	}
	defer s.alsSlots.release()
	s.als.streams.Inc()
	defer s.als.streams.Dec()

	st := alsStream{s: s}
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			st.done()
			return stream.SendAndClose(&accesslogv3.StreamAccessLogsResponse{})
		}
		if err != nil {
			st.done()
			return err
		}
		if id := msg.GetIdentifier(); id != nil && st.node == "" {
			st.node, st.logName = truncate(id.GetNode().GetId(), 128), truncate(id.GetLogName(), 128)
		}
		now := s.now()
		for _, e := range msg.GetHttpLogs().GetLogEntry() {
			st.entry(now, e)
		}
		if tcp := msg.GetTcpLogs(); tcp != nil {
			s.als.entries.WithLabelValues(alsNotHTTP).Add(float64(len(tcp.GetLogEntry())))
		}
	}
}

// alsStream is the state of one access-log stream.
type alsStream struct {
	s             *Server
	node, logName string // from the stream's first message
	warned        bool
	ended, failed int
	unknown, bad  int
}

// entry handles one HTTP entry received at now.
func (st *alsStream) entry(now time.Time, e *accesslogdata.HTTPAccessLogEntry) {
	m := st.s.als.entries
	c := e.GetCommonProperties()
	// Envoy before 1.26 marks periodic entries only with the deprecated
	// intermediate_log_entry; later ones also say access_log_type.
	intermediate := c.GetIntermediateLogEntry() //nolint:staticcheck // SA1019: older Envoys, as above
	if typ := c.GetAccessLogType(); intermediate || (typ != accesslogdata.AccessLogType_NotSet && typ != accesslogdata.AccessLogType_DownstreamEnd) {
		m.WithLabelValues(alsNotFinal).Inc()
		return
	}
	v, ok := e.GetRequest().GetRequestHeaders()[headerFlowIDLower]
	if !ok || v == "" || v == "-" {
		m.WithLabelValues(alsNoFlowID).Inc()
		return
	}
	id, err := strconv.ParseUint(v, 10, 64)
	if err != nil || id == 0 {
		m.WithLabelValues(alsBadFlowID).Inc()
		st.bad++
		st.warn("access-log entry with a malformed flow id", "value", truncate(v, 64))
		return
	}
	failed := flowFailed(e.GetResponse())
	if !st.s.engine.EndFlow(endedAt(now, c), id, failed) {
		m.WithLabelValues(alsUnknownFlow).Inc()
		st.unknown++
		st.warn("access-log entry for a flow the agent does not hold: ended already, expired after max_flow_duration, or admitted by another agent (ext_authz and the access log must reach the same agent)", "flow_id", v)
		return
	}
	if failed {
		m.WithLabelValues(alsEndedFailed).Inc()
		st.failed++
	} else {
		m.WithLabelValues(alsEnded).Inc()
		st.ended++
	}
}

// warn logs the stream's first problem; the counters count every one.
func (st *alsStream) warn(msg string, args ...any) {
	if st.warned {
		return
	}
	st.warned = true
	args = append(args, "node", st.node, "log_name", st.logName, "note", "logged once per stream")
	st.s.logger.Warn(msg, args...)
}

// done logs a summary of a stream that had problems.
func (st *alsStream) done() {
	if st.warned {
		st.s.logger.Info("access-log stream closed", "node", st.node, "log_name", st.logName,
			"ended", st.ended, "ended_failed", st.failed, "unknown_flow", st.unknown, "bad_flow_id", st.bad)
	}
}

// headerFlowIDLower is HeaderFlowID as Envoy's access log keys it.
const headerFlowIDLower = "x-fluxgate-flow-id"

// flowFailed reports whether the response of an entry says the flow
// failed: a 5xx, or no response at all (upstream reset or timeout,
// client gone).
func flowFailed(r *accesslogdata.HTTPResponseProperties) bool {
	code := r.GetResponseCode().GetValue()
	return code == 0 || code >= 500
}

// endedAt is when an entry's flow ended on the agent's clock: now, the
// time it arrived, less the time it waited in Envoy's buffer (up to the
// logger's buffer_flush_interval), which the entry tells as its start
// plus the time to the last byte sent downstream (or its duration). When
// Envoy's clock disagrees (the end is in the future or over maxLogLag
// ago) it is now.
func endedAt(now time.Time, c *accesslogdata.AccessLogCommon) time.Time {
	d := c.GetTimeToLastDownstreamTxByte()
	if d == nil {
		d = c.GetDuration()
	}
	if c.GetStartTime() == nil || d == nil {
		return now
	}
	lag := now.Sub(c.GetStartTime().AsTime().Add(d.AsDuration()))
	if lag < 0 || lag > maxLogLag {
		return now
	}
	return now.Add(-lag)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// streamSlots counts the streams open against a maximum.
type streamSlots struct {
	max  int64
	open atomic.Int64
}

func (c *streamSlots) acquire() bool {
	if c.open.Add(1) > c.max {
		c.open.Add(-1)
		return false
	}
	return true
}

func (c *streamSlots) release() { c.open.Add(-1) }
