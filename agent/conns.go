package agent

import (
	"log/slog"
	"maps"
	"net/http"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/fluxgate/fluxgate/fluxmeter"
	"github.com/fluxgate/fluxgate/internal/conncap"
	"github.com/fluxgate/fluxgate/metricnames"
)

// Connection hygiene (issue 14): every agent server bounds how long a
// client may hold a connection and how many it may hold, so that idle or
// stalled clients cannot exhaust file descriptors or memory.
//
//   - HTTP servers (API, metrics, OTLP/HTTP): ReadHeaderTimeout 10s,
//     server.read_timeout for the whole request (headers and body),
//     server.write_timeout for the handler and its answer, and
//     server.idle_timeout between keep-alive requests. The default read
//     timeout, 1m, lets an OTLP body of the maximum size (16 MiB) arrive at
//     about 2.2 Mbit/s; the idle timeout, 2m, outlives the 10s–1m period of
//     health checkers and scrapers that keep their connections alive.
//   - gRPC servers (check, OTLP): a connection idle for server.idle_timeout
//     or older than 30m is sent GOAWAY (30s grace for calls in flight);
//     pings more often than every 10s are refused; at most 1,000 concurrent
//     streams per connection; the handshake must end within 10s; messages
//     up to 4 MiB on the check port and 16 MiB on OTLP.
//   - Connection cap: each listener holds at most server.max_connections
//     connections at a time (a conncap.Cap of its own, the policy the
//     gateway's cap has); past it, the listener accepts one more client
//     and waits with it for a slot, and further clients wait in the
//     kernel's backlog until one closes. A cap per listener, rather than
//     one for the process, is the headroom: a flood of one port (OTLP,
//     say) leaves the others answering, and metrics have a port of their
//     own. On the HTTP ports a full listener makes room for a client that
//     waits by closing the connection idle longest (one that has not sent
//     a request for conncap.Grace, or a keep-alive one between requests),
//     so a flood of idle connections cannot keep health probes and checks
//     out; connections busy with a request keep their slot until the
//     timeouts above end them. A full listener logs a warning at most once
//     a minute. The caps are lowered at start, and logged, when the sum
//     over listeners would not leave conncap.Reserve descriptors free
//     under the file-descriptor limit, which the agent raises to the hard
//     limit first.

const (
	readHeaderTimeout = 10 * time.Second
	grpcMaxConnAge    = 30 * time.Minute
	grpcMaxAgeGrace   = 30 * time.Second
	grpcMinPingTime   = 10 * time.Second
	grpcMaxStreams    = 1000
	grpcMaxCheckMsg   = 4 << 20
)

// connLimits is s with a default for each connection limit ≤ 0 (a
// ServerConfig built in code sets only what it needs).
func connLimits(s ServerConfig) ServerConfig {
	d := DefaultConfig().Server
	if s.ReadTimeout <= 0 {
		s.ReadTimeout = d.ReadTimeout
	}
	if s.WriteTimeout <= 0 {
		s.WriteTimeout = d.WriteTimeout
	}
	if s.IdleTimeout <= 0 {
		s.IdleTimeout = d.IdleTimeout
	}
	if s.MaxConnections <= 0 {
		s.MaxConnections = d.MaxConnections
	}
	return s
}

// httpServer returns an HTTP server for h with the configured timeouts.
func (a *Agent) httpServer(h http.Handler) *http.Server {
	s := connLimits(a.cfg.Server)
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: min(readHeaderTimeout, s.ReadTimeout),
		ReadTimeout:       s.ReadTimeout,
		WriteTimeout:      s.WriteTimeout,
		IdleTimeout:       s.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(a.logger.Handler(), slog.LevelWarn),
		ConnState:         conncap.TrackConnState,
	}
}

// grpcOptions are the options of both gRPC servers; maxRecv bounds one
// message, workers is the size of the pool that serves calls.
//
// Issue 20 measured where a check's CPU goes with grpc-go's defaults and
// set these from it (BENCHMARKS.md, "Under the gRPC floor"):
//   - a pool of worker goroutines serves calls, instead of a new
//     goroutine per call whose stack grows from 8 KiB by copying
//     (runtime.morestack, 12 % of the agent's CPU under load). A worker
//     is taken when a call's headers arrive and waits for its message,
//     so the pool is sized for calls in flight, not for cores; past it,
//     a call gets its own goroutine as before, so a call that waits (a
//     scheduler queue, Redis) never holds the others up.
//
// Connections already share write buffers from a pool in grpc-go 1.85
// (SharedWriteBuffer is its default), and read buffers stay at 32 KiB:
// neither showed in the profile.
func grpcOptions(s ServerConfig, maxRecv int, workers uint32) []grpc.ServerOption {
	s = connLimits(s)
	return []grpc.ServerOption{
		grpc.NumStreamWorkers(workers),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: grpcMinPingTime, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle:     s.IdleTimeout,
			MaxConnectionAge:      grpcMaxConnAge,
			MaxConnectionAgeGrace: grpcMaxAgeGrace,
		}),
		grpc.MaxConcurrentStreams(grpcMaxStreams),
		grpc.MaxRecvMsgSize(maxRecv),
		grpc.ConnectionTimeout(min(readHeaderTimeout, s.ReadTimeout)),
	}
}

// checkWorkers is the size of the check port's worker pool: 64 per core
// the runtime uses (128 on two cores), about the calls in flight when 50
// callers keep a core busy, and at most 256: an idle worker keeps the
// stack its calls grew (up to about 32 KiB), so the pool costs at most
// some 8 MiB however many cores there are.
func checkWorkers() uint32 { return uint32(min(64*runtime.GOMAXPROCS(0), 256)) }

// otlpWorkers is the OTLP port's pool: the exports it admits at once.
const otlpWorkers = fluxmeter.MaxGRPCExportsInFlight

// otlpMaxRecv is the largest OTLP message over gRPC: as over HTTP.
const otlpMaxRecv = fluxmeter.MaxRequestBytes

// connectionCap is the per-listener cap for n listeners: the configured
// one, lowered so that every listener at its cap leaves conncap.Reserve
// descriptors free under the soft limit, with those open at start.
func (a *Agent) connectionCap(n int) int {
	want := connLimits(a.cfg.Server).MaxConnections
	f, ok := conncap.ReadOpenFiles()
	if !ok || n == 0 {
		return want
	}
	if fit := int(f.Fit(int64(want), int64(n))); fit < want {
		a.logger.Warn("server.max_connections lowered to fit the open-files limit", "configured", want, "per_listener", fit, "listeners", n, "open_files_limit", f.Soft, "open_files", f.InUse)
		return fit
	}
	return want
}

// listenerCap is the cap of listener name, limit connections
// (conncap.Cap). On the HTTP ports a full listener closes the connection
// idle longest — one that sent no request yet, or a keep-alive one
// between requests (conncap.TrackConnState) — for a client that waits, so
// a flood of idle connections cannot keep a health probe or a check out;
// connections busy with a request keep their slot until the read and
// write timeouts end them. The gRPC ports close nothing for a newcomer:
// their idle timeout ends idle connections.
func (a *Agent) listenerCap(name string, limit int) *conncap.Cap {
	evict := name != ListenerGRPC && name != ListenerOTLPGRPC
	warning := "agent listener at server.max_connections: new clients wait in the listen backlog"
	if evict {
		warning += "; connections idle longest are closed to make room"
	}
	return conncap.New(conncap.Options{
		Max: int64(limit), Evict: evict, Logger: a.logger,
		FullWarning: warning, LogAttrs: []any{"listener", name},
		Evicted: a.connMetrics.evicted.WithLabelValues(name),
		Waits:   a.connMetrics.waits.WithLabelValues(name),
	})
}

// connMetrics are the metrics of the listeners' caps, by listener: the
// counters each cap counts in, and the gauges of open connections and of
// the cap in force, read from the caps at each gather.
type connMetrics struct {
	a              *Agent
	open, max      *prometheus.Desc
	evicted, waits *prometheus.CounterVec
}

func newConnMetrics(a *Agent) *connMetrics {
	labels := []string{metricnames.LabelListener}
	return &connMetrics{
		a: a,
		open: prometheus.NewDesc(metricnames.AgentConnections,
			"Connections each agent listener holds open.", labels, nil),
		max: prometheus.NewDesc(metricnames.AgentMaxConnections,
			"The cap on each agent listener's connections in force: server.max_connections, lowered at start to fit the open-files limit.", labels, nil),
		evicted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metricnames.AgentConnectionsEvictedTotal,
			Help: "Idle connections a full agent listener closed to make room for new ones (HTTP listeners only).",
		}, labels),
		waits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metricnames.AgentAcceptWaitsTotal,
			Help: "Times an agent listener stopped accepting at server.max_connections (clients wait in the listen backlog).",
		}, labels),
	}
}

func (m *connMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.open
	ch <- m.max
	m.evicted.Describe(ch)
	m.waits.Describe(ch)
}

func (m *connMetrics) Collect(ch chan<- prometheus.Metric) {
	m.a.mu.Lock()
	caps := maps.Clone(m.a.limits)
	m.a.mu.Unlock()
	for name, k := range caps {
		ch <- prometheus.MustNewConstMetric(m.open, prometheus.GaugeValue, float64(k.Open()), name)
		ch <- prometheus.MustNewConstMetric(m.max, prometheus.GaugeValue, float64(k.Max()), name)
	}
	m.evicted.Collect(ch)
	m.waits.Collect(ch)
}

// raiseOpenFilesLimit raises the soft file-descriptor limit to the hard
// one and logs the result.
func (a *Agent) raiseOpenFilesLimit() {
	before, ok := conncap.ReadOpenFiles()
	if !ok {
		return
	}
	if before.Soft >= before.Hard {
		a.logger.Info("open files limit", "soft", before.Soft, "hard", before.Hard)
		return
	}
	if err := conncap.RaiseOpenFilesLimit(); err != nil {
		a.logger.Warn("cannot raise the open files limit", "soft", before.Soft, "hard", before.Hard, "err", err)
		return
	}
	after, _ := conncap.ReadOpenFiles()
	a.logger.Info("open files limit raised", "from", before.Soft, "to", after.Soft, "hard", before.Hard)
}
