package gateway

import (
	"log/slog"
	"net"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fluxgate/fluxgate/internal/conncap"
	"github.com/fluxgate/fluxgate/metricnames"
)

// The connection cap (gateway.max_connections). The gateway holds at most
// that many client connections at a time, whichever engine serves them:
// a flood of idle or slow clients cannot take every file descriptor of
// the process, and with them the agent's Redis, TSDB and policy files.
// One conncap.Cap counts them, with the policy the agent's listeners
// have (server.max_connections): a slot for each connection, moved with
// it in a hand-over from one engine to another (loop to lean, lean to
// fast or to an HTTP/2 server), so it counts once; at the cap clients
// wait in the kernel's backlog, as past nginx's worker_connections; the
// connection idle longest (conncap.Grace at least) is closed for a client
// that waits, never one with a request in flight.
//
// The net/http, fast and lean engines accept through Cap.Listener, which
// waits in Accept; the loop engine asks Cap.Admit before each accept on a
// loop, and a full loop stops watching the listener until a connection
// closes (eventloop.Acceptor.Resume) or conncap.Poll passes.

// DefaultMaxConnections is gateway.max_connections when unset: as many
// client connections as an nginx with a few workers of the common 1,024
// to 4,096 worker_connections. With a target connection for each, that
// is some 20,000 descriptors, within the hard open-files limit of common
// systems (the agent raises the soft limit to it at start); a lower limit
// lowers the cap at start (fitOpenFiles). A connection waiting for a
// request costs the lean and loop engines some 4 KiB.
const DefaultMaxConnections = 10000

// newConnCap returns the gateway's cap of limit connections
// (DefaultMaxConnections when ≤ 0) and its metrics.
func newConnCap(limit int, logger *slog.Logger) (*conncap.Cap, []prometheus.Collector) {
	if limit <= 0 {
		limit = DefaultMaxConnections
	}
	evicted := prometheus.NewCounter(prometheus.CounterOpts{
		Name: metricnames.GatewayConnectionsEvictedTotal,
		Help: "Idle client connections the gateway closed to make room for new ones at gateway.max_connections.",
	})
	waits := prometheus.NewCounter(prometheus.CounterOpts{
		Name: metricnames.GatewayAcceptWaitsTotal,
		Help: "Times the gateway stopped accepting client connections at gateway.max_connections (clients wait in the listen backlog).",
	})
	k := conncap.New(conncap.Options{
		Max: int64(limit), Evict: true, Logger: logger,
		FullWarning: "gateway at gateway.max_connections: new clients wait in the listen backlog; connections idle longest are closed to make room",
		Evicted:     evicted, Waits: waits,
	})
	return k, []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: metricnames.GatewayClientConnections,
			Help: "Client connections the gateway holds open, on every engine (counted once across hand-overs).",
		}, func() float64 { return float64(k.Open()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: metricnames.GatewayMaxConnections,
			Help: "The cap on client connections in force: gateway.max_connections, lowered at start to fit the open-files limit.",
		}, func() float64 { return float64(k.Max()) }),
		evicted, waits,
	}
}

// fitOpenFiles lowers the cap, before serving, so that every client
// connection and a target connection for each fit in the descriptors free
// under the open-files limit, conncap.Reserve kept; it logs the lowering.
func fitOpenFiles(k *conncap.Cap, logger *slog.Logger) {
	f, ok := conncap.ReadOpenFiles()
	if !ok {
		return
	}
	want := k.Max()
	if fit := f.Fit(want, 2); fit != want {
		logger.Warn("gateway.max_connections lowered to fit the open-files limit (a client connection and its target's each)",
			"configured", want, "lowered_to", fit, "open_files_limit", f.Soft, "open_files", f.InUse, "reserved", conncap.Reserve)
		k.SetMax(fit)
	}
}

// slotOf is the slot of c, a client connection as an engine sees it, or
// nil when it has none (a listener without the cap).
func slotOf(c net.Conn) *conncap.Slot { return conncap.SlotOf(c, engineConnOf) }

// engineConnOf is the connection an engine's wrapper c wraps, or nil.
func engineConnOf(c net.Conn) net.Conn {
	switch x := c.(type) {
	case *clientConn:
		return x.Conn
	case *handedConn:
		return x.clientConn
	case *tlsHandedConn:
		return x.clientConn
	}
	return nil
}

// trackConnState is the net/http engine's ConnState hook (HTTP/1.1 and
// HTTP/2, Upgrade: h2c included): a connection with a request in flight,
// or hijacked, is busy; between requests it is idle.
func trackConnState(c net.Conn, st http.ConnState) { slotOf(c).Track(st) }
