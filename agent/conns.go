package agent

import (
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/fluxgate/fluxgate/fluxmeter"
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
//   - Connection cap: each listener accepts at most server.max_connections
//     connections at a time; further clients wait in the kernel's backlog
//     until one closes. A cap per listener, rather than one for the
//     process, is the headroom: a flood of one port (OTLP, say) leaves the
//     others answering, and metrics have a port of their own. The API port
//     serves checks and health together, so a flood of it delays health
//     until the timeouts above free slots (at most read_timeout for a
//     stalled client). The caps are lowered at start, and logged, when
//     the sum over listeners would not leave fdReserve descriptors free
//     under the file-descriptor limit, which the agent raises to the hard
//     limit first.

const (
	readHeaderTimeout = 10 * time.Second
	grpcMaxConnAge    = 30 * time.Minute
	grpcMaxAgeGrace   = 30 * time.Second
	grpcMinPingTime   = 10 * time.Second
	grpcMaxStreams    = 1000
	grpcMaxCheckMsg   = 4 << 20
	// fdReserve file descriptors are kept for what is not a client
	// connection: policy files, Redis, Prometheus, the TSDB, logs.
	fdReserve = 256
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
	}
}

// grpcOptions are the options of both gRPC servers; maxRecv bounds one
// message.
func grpcOptions(s ServerConfig, maxRecv int) []grpc.ServerOption {
	s = connLimits(s)
	return []grpc.ServerOption{
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

// otlpMaxRecv is the largest OTLP message over gRPC: as over HTTP.
const otlpMaxRecv = fluxmeter.MaxRequestBytes

// connectionCap is the per-listener cap for n listeners: the configured
// one, lowered so that every listener at its cap leaves fdReserve
// descriptors under the soft limit.
func (a *Agent) connectionCap(n int) int {
	want := connLimits(a.cfg.Server).MaxConnections
	soft, _, ok := openFilesLimit()
	if !ok || n == 0 {
		return want
	}
	fit := (int(min(soft, 1<<30)) - fdReserve) / n
	if fit < want {
		a.logger.Warn("server.max_connections lowered to fit the open-files limit", "configured", want, "per_listener", max(fit, 1), "listeners", n, "open_files_limit", soft)
		return max(fit, 1)
	}
	return want
}

// limitListener accepts at most cap connections at a time; Accept waits
// for a slot.
type limitListener struct {
	net.Listener
	slots chan struct{}
	done  chan struct{}
	once  sync.Once
}

func newLimitListener(ln net.Listener, n int) *limitListener {
	return &limitListener{Listener: ln, slots: make(chan struct{}, n), done: make(chan struct{})}
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.slots }}, nil
}

func (l *limitListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// raiseOpenFilesLimit raises the soft file-descriptor limit to the hard
// one and logs the result.
func (a *Agent) raiseOpenFilesLimit() {
	before, hard, ok := openFilesLimit()
	if !ok {
		return
	}
	if before >= hard {
		a.logger.Info("open files limit", "soft", before, "hard", hard)
		return
	}
	if err := raiseOpenFilesSoftLimit(); err != nil {
		a.logger.Warn("cannot raise the open files limit", "soft", before, "hard", hard, "err", err)
		return
	}
	after, _, _ := openFilesLimit()
	a.logger.Info("open files limit raised", "from", before, "to", after, "hard", hard)
}
