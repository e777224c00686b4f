package gateway

import (
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fluxgate/fluxgate/metricnames"
)

// The connection cap (gateway.max_connections). The gateway holds at most
// that many client connections at a time, whichever engine serves them:
// a flood of idle or slow clients cannot take every file descriptor of
// the process, and with them the agent's Redis, TSDB and policy files.
//
// A client connection takes a slot (connSlot) when it is accepted and
// gives it back when it closes; a hand-over from one engine to another
// (loop to lean, lean to fast or to an HTTP/2 server) moves the slot with
// the connection, so it counts once. At the cap the gateway stops
// accepting: further clients wait in the kernel's backlog, as the agent's
// listeners do (server.max_connections) and as nginx does past
// worker_connections. To make room it closes the connection idle longest
// — accepted and silent, or kept alive between requests — once it has
// been idle for evictGrace; a connection with a request in flight is
// never closed for another (the head, body and write timeouts bound it).
//
// The net/http, fast and lean engines accept through connCap.listener,
// which waits in Accept; the loop engine asks connCap.admitLoop before
// each accept on a loop, and a full loop stops watching the listener
// until a connection closes (eventloop.Acceptor.Resume) or evictPoll
// passes.

// DefaultMaxConnections is gateway.max_connections when unset: as many
// client connections as an nginx with a few workers of the common 1,024
// to 4,096 worker_connections. With a target connection for each, that
// is some 20,000 descriptors, within the hard open-files limit of common
// systems (the agent raises the soft limit to it at start); a lower limit
// lowers the cap at start (fitOpenFiles). A connection waiting for a
// request costs the lean and loop engines some 4 KiB.
const DefaultMaxConnections = 10000

// fdReserve descriptors are kept out of the cap's budget for what is not
// a client connection or its target's: the agent's listeners, Redis,
// Prometheus, the TSDB, policy files and logs (as the agent keeps).
const fdReserve = 256

// evictGrace is how long a connection is idle before a full gateway may
// close it for a newcomer: a client that has just connected, or just had
// its answer, gets the time to send its request. While full, the gateway
// looks for such a connection every evictPoll.
const (
	evictGrace = 250 * time.Millisecond
	evictPoll  = 50 * time.Millisecond
)

// capLogEvery rate-limits the warning that the cap is reached.
const capLogEvery = time.Minute

// connCap counts the gateway's client connections against its cap. Safe
// for concurrent use.
type connCap struct {
	limit  atomic.Int64 // the cap; set before serving
	open   atomic.Int64
	grace  time.Duration // evictGrace; tests shorten it
	logger *slog.Logger

	evicted prometheus.Counter // connections closed to make room
	waits   prometheus.Counter // times accepting stopped at the cap

	waiting atomic.Bool            // an accepter waits for a slot: release wakes it
	wake    chan struct{}          // a listener's Accept waits on it; cap 1
	resume  atomic.Pointer[func()] // the loop engine's: accept again
	polling atomic.Bool            // the loop engine's evictPoll timer is armed
	lastLog atomic.Int64           // Unix ns of the last warning

	// One connection is closed to make room at a time: evictions made
	// and not yet released (or spared), and when the last was made.
	evictions atomic.Int32
	lastEvict atomic.Int64 // Unix ns

	mu    sync.Mutex
	slots map[*connSlot]struct{} // guarded by mu
}

// connSlot is one client connection's place under the cap.
type connSlot struct {
	k *connCap
	// idleSince is when the connection was accepted or its last request
	// ended (Unix ns), or 0 while a request is in flight.
	idleSince atomic.Int64
	evict     func()      // closes the connection to make room; guarded by k.mu
	evicting  atomic.Bool // closed to make room, not yet released
	released  atomic.Bool
}

func newConnCap(limit int, logger *slog.Logger) *connCap {
	if limit <= 0 {
		limit = DefaultMaxConnections
	}
	k := &connCap{
		grace: evictGrace, logger: logger,
		evicted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: metricnames.GatewayConnectionsEvictedTotal,
			Help: "Idle client connections the gateway closed to make room for new ones at gateway.max_connections.",
		}),
		waits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: metricnames.GatewayAcceptWaitsTotal,
			Help: "Times the gateway stopped accepting client connections at gateway.max_connections (clients wait in the listen backlog).",
		}),
		wake:  make(chan struct{}, 1),
		slots: map[*connSlot]struct{}{},
	}
	k.limit.Store(int64(limit))
	return k
}

// collectors are the cap's metrics, the gauges of open connections and
// of the cap among them.
func (k *connCap) collectors() []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: metricnames.GatewayClientConnections,
			Help: "Client connections the gateway holds open, on every engine (counted once across hand-overs).",
		}, func() float64 { return float64(k.open.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: metricnames.GatewayMaxConnections,
			Help: "The cap on client connections in force: gateway.max_connections, lowered at start to fit the open-files limit.",
		}, func() float64 { return float64(k.limit.Load()) }),
		k.evicted, k.waits,
	}
}

// fitOpenFiles lowers the cap, before serving, so that every client
// connection and a target connection for each fit in the descriptors free
// under the open-files limit, fdReserve kept; it logs the lowering.
func (k *connCap) fitOpenFiles() {
	soft, ok := openFilesLimit()
	if !ok {
		return
	}
	inUse := int64(0)
	if fds, err := os.ReadDir("/proc/self/fd"); err == nil {
		inUse = int64(len(fds))
	}
	want := k.limit.Load()
	fit := capFor(want, int64(min(soft, 1<<40)), inUse)
	if fit == want {
		return
	}
	k.logger.Warn("gateway.max_connections lowered to fit the open-files limit (a client connection and its target's each)",
		"configured", want, "lowered_to", fit, "open_files_limit", soft, "open_files", inUse, "reserved", fdReserve)
	k.limit.Store(fit)
}

// capFor is the cap want lowered, if need be, so that a client
// connection and a target connection for each fit in the descriptors
// free under the soft limit, inUse open and fdReserve kept; at least 1.
func capFor(want, soft, inUse int64) int64 {
	fit := (soft - inUse - fdReserve) / 2
	if fit >= want {
		return want
	}
	return max(fit, 1)
}

// take takes a slot if one is free.
func (k *connCap) take() bool {
	for {
		n := k.open.Load()
		if n >= k.limit.Load() {
			return false
		}
		if k.open.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// give gives back a slot taken for a connection that did not come.
func (k *connCap) give() {
	k.open.Add(-1)
	if k.waiting.Swap(false) {
		select {
		case k.wake <- struct{}{}:
		default:
		}
		if r := k.resume.Load(); r != nil {
			(*r)()
		}
	}
}

// add registers a connection that took a slot; evict closes it.
func (k *connCap) add(evict func()) *connSlot {
	s := &connSlot{k: k, evict: evict}
	s.idleSince.Store(time.Now().UnixNano())
	k.mu.Lock()
	k.slots[s] = struct{}{}
	k.mu.Unlock()
	return s
}

// release gives the slot back; only the first call counts.
func (s *connSlot) release() {
	if s == nil || s.released.Swap(true) {
		return
	}
	s.spared()
	s.k.mu.Lock()
	delete(s.k.slots, s)
	s.k.mu.Unlock()
	s.k.give()
}

// spared ends an eviction of the connection that did not close it (a
// request began first), or that did (release).
func (s *connSlot) spared() {
	if s != nil && s.evicting.Swap(false) {
		s.k.evictions.Add(-1)
	}
}

// busy marks a request in flight on the connection.
func (s *connSlot) busy() {
	if s != nil {
		s.idleSince.Store(0)
	}
}

// idle marks the connection waiting for a request.
func (s *connSlot) idle() {
	if s != nil {
		s.idleSince.Store(time.Now().UnixNano())
	}
}

// setEvict changes how the connection is closed to make room (a
// hand-over gave it another owner).
func (s *connSlot) setEvict(evict func()) {
	if s == nil {
		return
	}
	s.k.mu.Lock()
	s.evict = evict
	s.k.mu.Unlock()
}

// full notes that accepting stops at the cap (the counter and a warning
// at most every capLogEvery) and closes the connection idle longest.
func (k *connCap) full() {
	k.waits.Inc()
	now := time.Now().UnixNano()
	if last := k.lastLog.Load(); now-last >= int64(capLogEvery) && k.lastLog.CompareAndSwap(last, now) {
		k.logger.Warn("gateway at gateway.max_connections: new clients wait in the listen backlog; connections idle longest are closed to make room",
			"max_connections", k.limit.Load())
	}
	k.evictOldest()
}

// evictOldest closes the connection idle longest, if one has been idle
// for grace, unless one closed for room is still closing (for up to
// evictPoll): the loops, and a listener's ticks, would each close one for
// the same newcomer.
func (k *connCap) evictOldest() {
	now := time.Now()
	cutoff := now.Add(-k.grace).UnixNano()
	var oldest *connSlot
	var since int64
	k.mu.Lock()
	if k.evictions.Load() > 0 && now.UnixNano()-k.lastEvict.Load() < int64(evictPoll) {
		k.mu.Unlock()
		return
	}
	for s := range k.slots {
		t := s.idleSince.Load()
		if t != 0 && t <= cutoff && !s.evicting.Load() && (oldest == nil || t < since) {
			oldest, since = s, t
		}
	}
	var evict func()
	if oldest != nil {
		evict = oldest.evict
		oldest.evicting.Store(true)
		k.evictions.Add(1)
		k.lastEvict.Store(now.UnixNano())
	}
	k.mu.Unlock()
	// A request that began since (idleSince 0) keeps its connection; one
	// that begins between this check and the close is lost, as on any
	// server that closes idle connections (clients retry such requests
	// on a new connection when they are idempotent).
	switch {
	case evict == nil:
	case oldest.idleSince.Load() != since:
		oldest.spared()
	default:
		k.evicted.Inc()
		evict()
	}
}

// wait waits in a listener's Accept for a free slot, closing idle
// connections to make one, until done is closed.
func (k *connCap) wait(done <-chan struct{}) error {
	k.waiting.Store(true)
	if k.take() {
		return nil
	}
	k.full()
	tick := time.NewTicker(evictPoll)
	defer tick.Stop()
	for {
		k.waiting.Store(true)
		if k.take() {
			return nil
		}
		select {
		case <-k.wake:
		case <-done:
			return net.ErrClosed
		case <-tick.C:
			k.evictOldest()
		}
	}
}

// admitLoop takes a slot for a connection a loop is about to accept. When
// none is free it reports false: the loop stops watching the listener
// (and calls full when a client waits) until a slot is given back
// (resume) or evictPoll has passed, when it looks again.
func (k *connCap) admitLoop() bool {
	if k.take() {
		return true
	}
	k.waiting.Store(true)
	if k.take() {
		return true
	}
	if !k.polling.Swap(true) {
		time.AfterFunc(evictPoll, func() {
			k.polling.Store(false)
			if r := k.resume.Load(); r != nil {
				(*r)()
			}
		})
	}
	return false
}

// listener returns ln with the cap: Accept waits, with the connection it
// accepted, for a slot, making room as connCap says (so the gateway holds
// the cap and that one connection at most); the connections it returns
// give their slot back when closed.
func (k *connCap) listener(ln net.Listener) net.Listener {
	return &capListener{Listener: ln, k: k, done: make(chan struct{})}
}

type capListener struct {
	net.Listener
	k    *connCap
	done chan struct{}
	once sync.Once
}

func (l *capListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	// A connection is accepted before its slot is taken: a full listener
	// then knows a client waits (and makes room for it) and does not
	// accept another until it has a slot.
	if !l.k.take() {
		if err := l.k.wait(l.done); err != nil {
			_ = c.Close()
			return nil, err
		}
	}
	cc := &capConn{Conn: c}
	cc.slot = l.k.add(func() { _ = c.Close() })
	return cc, nil
}

func (l *capListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// capConn is a client connection under the cap: Close gives its slot
// back.
type capConn struct {
	net.Conn
	slot *connSlot
}

func (c *capConn) Close() error {
	err := c.Conn.Close()
	c.slot.release()
	return err
}

// slotOf is the slot of c, a client connection as an engine sees it, or
// nil when it has none (a listener without the cap).
func slotOf(c net.Conn) *connSlot {
	for {
		switch x := c.(type) {
		case *capConn:
			return x.slot
		case *clientConn:
			c = x.Conn
		case *handedConn:
			c = x.clientConn
		case *tlsHandedConn:
			c = x.clientConn
		case interface{ NetConn() net.Conn }: // *tls.Conn
			c = x.NetConn()
		default:
			return nil
		}
	}
}

// trackConnState is the net/http engine's ConnState hook (HTTP/1.1 and
// HTTP/2, Upgrade: h2c included): a connection with a request in flight,
// or hijacked, is busy; between requests it is idle.
func trackConnState(c net.Conn, st http.ConnState) {
	switch st {
	case http.StateActive, http.StateHijacked:
		slotOf(c).busy()
	case http.StateIdle:
		slotOf(c).idle()
	}
}
