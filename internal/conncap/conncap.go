package conncap

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Grace is how long a connection is idle before a full Cap may close it
// for a newcomer: a client that has just connected, or just had its
// answer, gets the time to send its request. While a client waits, the
// Cap looks for such a connection every Poll.
const (
	Grace = 250 * time.Millisecond
	Poll  = 50 * time.Millisecond
)

// logEvery rate-limits Options.FullWarning.
const logEvery = time.Minute

// Options configure a Cap. Only Max is needed.
type Options struct {
	// Max is the cap: the most connections held at a time; less than 1
	// counts as 1.
	Max int64
	// Evict makes a full Cap close the connection idle longest for a
	// client that waits; without it the client waits until one closes.
	Evict bool
	// Logger logs FullWarning; nil means silent.
	Logger *slog.Logger
	// FullWarning, when set, is logged at most once a minute when
	// accepting stops at the cap, with max_connections and LogAttrs.
	FullWarning string
	LogAttrs    []any
	// Evicted counts connections closed to make room, Waits the times
	// accepting stopped at the cap; nil counts nothing.
	Evicted, Waits prometheus.Counter
}

// Cap counts connections against a cap. Safe for concurrent use.
type Cap struct {
	limit atomic.Int64 // the cap; set before serving
	open  atomic.Int64
	evict bool
	grace time.Duration // Grace; tests shorten it

	logger  *slog.Logger
	warning string
	attrs   []any
	evicted prometheus.Counter     // nil: not counted
	waits   prometheus.Counter     // nil: not counted
	lastLog atomic.Int64           // Unix ns of the last warning
	waiting atomic.Bool            // an accepter waits for a slot: Give wakes it
	wake    chan struct{}          // a listener's Accept waits on it; cap 1
	resume  atomic.Pointer[func()] // an event loop's: accept again (SetResume)
	polling atomic.Bool            // Admit's Poll timer is armed

	// One connection is closed to make room at a time: evictions made
	// and not yet released (or spared), and when the last was made.
	evictions atomic.Int32
	lastEvict atomic.Int64 // Unix ns

	mu    sync.Mutex
	slots map[*Slot]struct{} // guarded by mu
}

// Slot is one connection's place under a Cap. Its methods do nothing on a
// nil *Slot.
type Slot struct {
	k *Cap
	// idleSince is when the connection was accepted or its last request
	// ended (Unix ns), or 0 while a request is in flight.
	idleSince atomic.Int64
	evict     func()      // closes the connection to make room; guarded by k.mu
	evicting  atomic.Bool // closed to make room, not yet released
	released  atomic.Bool
}

// New returns a Cap configured by o.
func New(o Options) *Cap {
	k := &Cap{
		evict: o.Evict, grace: Grace,
		logger: o.Logger, warning: o.FullWarning, attrs: o.LogAttrs,
		evicted: o.Evicted, waits: o.Waits,
		wake:  make(chan struct{}, 1),
		slots: map[*Slot]struct{}{},
	}
	if k.logger == nil {
		k.logger = slog.New(slog.DiscardHandler)
	}
	k.SetMax(o.Max)
	return k
}

// Max is the cap in force.
func (k *Cap) Max() int64 { return k.limit.Load() }

// SetMax changes the cap (at least 1), before serving: lowering it does
// not close connections.
func (k *Cap) SetMax(n int64) { k.limit.Store(max(n, 1)) }

// Open is the number of slots taken.
func (k *Cap) Open() int64 { return k.open.Load() }

// Busy is the number of connections with a request in flight. It walks
// every slot: for tests and diagnostics, not for a hot path.
func (k *Cap) Busy() int {
	n := 0
	k.mu.Lock()
	for s := range k.slots {
		if s.idleSince.Load() == 0 {
			n++
		}
	}
	k.mu.Unlock()
	return n
}

// Take takes a slot if one is free. The connection it is for is then
// registered with Add, or the slot given back with Give.
func (k *Cap) Take() bool {
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

// Give gives back a slot taken for a connection that did not come, and
// wakes an accepter that waits for one.
func (k *Cap) Give() {
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

// Add registers a connection that took a slot (Take); evict closes it to
// make room. The connection is idle until Slot.Busy.
func (k *Cap) Add(evict func()) *Slot {
	s := &Slot{k: k, evict: evict}
	s.idleSince.Store(time.Now().UnixNano())
	k.mu.Lock()
	k.slots[s] = struct{}{}
	k.mu.Unlock()
	return s
}

// Release gives the slot back; only the first call counts.
func (s *Slot) Release() {
	if s == nil || s.released.Swap(true) {
		return
	}
	s.Spared()
	s.k.mu.Lock()
	delete(s.k.slots, s)
	s.k.mu.Unlock()
	s.k.Give()
}

// Spared ends an eviction of the connection that did not close it (a
// request began first), or that did (Release).
func (s *Slot) Spared() {
	if s != nil && s.evicting.Swap(false) {
		s.k.evictions.Add(-1)
	}
}

// Busy marks a request in flight on the connection.
func (s *Slot) Busy() {
	if s != nil {
		s.idleSince.Store(0)
	}
}

// Idle marks the connection waiting for a request.
func (s *Slot) Idle() {
	if s != nil {
		s.IdleAt(time.Now())
	}
}

// IdleAt is Idle with the time read by the caller (an event loop's, read
// once for many connections).
func (s *Slot) IdleAt(now time.Time) {
	if s != nil {
		s.idleSince.Store(now.UnixNano())
	}
}

// SetEvict changes how the connection is closed to make room (a
// hand-over gave it another owner).
func (s *Slot) SetEvict(evict func()) {
	if s == nil {
		return
	}
	s.k.mu.Lock()
	s.evict = evict
	s.k.mu.Unlock()
}

// Full notes that accepting stops at the cap while a client waits (the
// Waits counter, and FullWarning at most once a minute) and, with Evict,
// closes the connection idle longest.
func (k *Cap) Full() {
	if k.waits != nil {
		k.waits.Inc()
	}
	now := time.Now().UnixNano()
	if last := k.lastLog.Load(); k.warning != "" && now-last >= int64(logEvery) && k.lastLog.CompareAndSwap(last, now) {
		k.logger.Warn(k.warning, append([]any{"max_connections", k.limit.Load()}, k.attrs...)...)
	}
	k.evictOldest()
}

// evictOldest closes the connection idle longest, if the Cap evicts and
// one has been idle for grace, unless one closed for room is still
// closing (for up to Poll): the loops, and a listener's ticks, would each
// close one for the same newcomer.
func (k *Cap) evictOldest() {
	if !k.evict {
		return
	}
	now := time.Now()
	cutoff := now.Add(-k.grace).UnixNano()
	var oldest *Slot
	var since int64
	k.mu.Lock()
	if k.evictions.Load() > 0 && now.UnixNano()-k.lastEvict.Load() < int64(Poll) {
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
		oldest.Spared()
	default:
		if k.evicted != nil {
			k.evicted.Inc()
		}
		evict()
	}
}

// wait waits in a listener's Accept for a free slot, closing idle
// connections to make one, until done is closed.
func (k *Cap) wait(done <-chan struct{}) bool {
	k.waiting.Store(true)
	if k.Take() {
		return true
	}
	k.Full()
	tick := time.NewTicker(Poll)
	defer tick.Stop()
	for {
		k.waiting.Store(true)
		if k.Take() {
			return true
		}
		select {
		case <-k.wake:
		case <-done:
			return false
		case <-tick.C:
			k.evictOldest()
		}
	}
}

// Admit takes a slot for a connection an event loop is about to accept.
// When none is free it reports false: the loop stops watching the
// listener (and calls Full when a client waits) until a slot is given
// back or Poll has passed, when the function set with SetResume is
// called and the loop looks again.
func (k *Cap) Admit() bool {
	if k.Take() {
		return true
	}
	k.waiting.Store(true)
	if k.Take() {
		return true
	}
	if !k.polling.Swap(true) {
		time.AfterFunc(Poll, func() {
			k.polling.Store(false)
			if r := k.resume.Load(); r != nil {
				(*r)()
			}
		})
	}
	return false
}

// SetResume sets what makes an event loop that Admit stopped accept
// again.
func (k *Cap) SetResume(resume func()) { k.resume.Store(&resume) }
