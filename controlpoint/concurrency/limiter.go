package concurrency

import (
	"context"
	"math"
	"sort"
	"sync"
	"time"

	"github.com/fluxgate/fluxgate/controlpoint/scheduler"
)

// Options configure a Limiter. The zero value of each field means its
// default.
type Options struct {
	// Initial is the limit before anything has been learned. Default 16.
	Initial float64
	// Min and Max bound the limit. Defaults 1 and 10,000.
	Min, Max float64
	// Tolerance is how far above its no-load latency a service may run
	// before the limit shrinks: target = no-load × Tolerance. Default 1.5.
	Tolerance float64
	// QueueDelay is the longest a flow of the heaviest workload waits for
	// a slot; lighter workloads wait down to half of it, by weight.
	// Default: the no-load latency, within 1 ms..1 s (50 ms until it is
	// known).
	QueueDelay time.Duration
	// ProbeInterval is how long the limit may bind without a flow seen at
	// low concurrency before the limiter probes for the no-load latency.
	// Default 30 s.
	ProbeInterval time.Duration
	// Clock is read by Acquire, which waits in real time. Nil means
	// time.Now.
	Clock func() time.Time
}

const (
	lowSamples     = 8 // flows at low concurrency the no-load latency is the median of
	probeSamples   = 4 // flows a probe waits for
	windowSamples  = 8 // completions a window needs before it closes
	maxWindow      = time.Second
	maxShrink      = 0.75 // the least a window scales the limit by
	growGain       = 0.25 // share of the relative slack a bound window grows by
	unknownDelay   = 50 * time.Millisecond
	minQueueDelay  = time.Millisecond
	maxQueueDelay  = time.Second
	maxProbeLength = 2 * time.Second
)

// Request is one flow asking for a slot.
type Request struct {
	// Workload names the flow's class in the fair queue.
	Workload string
	// Weight is the workload's share of a saturated limiter; below 1
	// counts as 1.
	Weight float64
	// Timeout bounds the wait, with the queue delay: the shorter applies.
	// 0 means the queue delay alone.
	Timeout time.Duration
}

// Ticket is what an admitted flow hands back to Release.
type Ticket struct {
	Admitted time.Time
	low      bool // admitted at low concurrency: its latency is a no-load sample
}

// Limiter is an adaptive concurrency limit with a weighted fair queue.
type Limiter struct {
	opts Options

	mu        sync.Mutex
	limit     float64 // guarded by mu, like everything below
	inflight  int
	objective float64 // seconds; 0: none, the target is no-load × Tolerance
	lo, hi    float64 // bounds set at run time (NaN: Options.Min / Max)

	winStart time.Time
	winN     int
	winSum   float64 // seconds
	winPeak  int
	winBound bool // a flow had to wait or was turned away in this window

	low     [lowSamples]sample // ring of no-load samples
	lowN    int
	lowNext int
	noLoad  float64 // seconds; 0 until lowSamples/2 samples are in

	probing    bool
	probeStart time.Time
	probeLevel int
	probeGot   int

	queue     scheduler.FairQueue[*waiter]
	maxWeight float64 // the heaviest workload weight queued so far
}

type sample struct {
	at  time.Time
	rtt float64
}

// New returns a Limiter with opts, defaults filled in.
func New(opts Options) *Limiter {
	if opts.Initial <= 0 {
		opts.Initial = 16
	}
	if opts.Min <= 0 {
		opts.Min = 1
	}
	if opts.Max <= 0 {
		opts.Max = 10000
	}
	if opts.Max < opts.Min {
		opts.Max = opts.Min
	}
	if opts.Tolerance < 1 {
		opts.Tolerance = 1.5
	}
	if opts.ProbeInterval <= 0 {
		opts.ProbeInterval = 30 * time.Second
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	return &Limiter{
		opts:  opts,
		limit: clamp(opts.Initial, opts.Min, opts.Max),
		lo:    math.NaN(),
		hi:    math.NaN(),
	}
}

// State is a snapshot of a limiter, for metrics and tests.
type State struct {
	Limit    float64
	InFlight int
	Queued   int
	// NoLoad is the learned no-load latency, 0 while unknown.
	NoLoad time.Duration
	// Target is the latency the limit steers to, 0 while unknown.
	Target  time.Duration
	Probing bool
}

// State reports the limiter's current state.
func (l *Limiter) State() State {
	l.mu.Lock()
	defer l.mu.Unlock()
	return State{
		Limit: l.limit, InFlight: l.inflight, Queued: l.queue.Len(),
		NoLoad: seconds(l.noLoad), Target: seconds(l.targetLocked()), Probing: l.probing,
	}
}

// SetObjective makes the limit steer to a latency objective instead of
// no-load × Tolerance. 0, a negative value or NaN removes it.
func (l *Limiter) SetObjective(d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.objective = max(d.Seconds(), 0)
}

// SetBounds narrows the limit to [lo, hi] within Options.Min..Max; NaN
// leaves a side at its option.
func (l *Limiter) SetBounds(lo, hi float64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lo, l.hi = lo, hi
	l.limit = clamp(l.limit, l.minLocked(), l.maxLocked())
}

func (l *Limiter) minLocked() float64 {
	if lo := l.lo; lo >= l.opts.Min && lo <= l.opts.Max {
		return lo
	}
	return l.opts.Min
}

func (l *Limiter) maxLocked() float64 {
	if hi := l.hi; hi >= l.minLocked() && hi <= l.opts.Max {
		return hi
	}
	return l.opts.Max
}

func (l *Limiter) targetLocked() float64 {
	if l.objective > 0 {
		return l.objective
	}
	return l.noLoad * l.opts.Tolerance
}

// queueDelayLocked is how long a flow may wait for a slot.
func (l *Limiter) queueDelayLocked() time.Duration {
	if l.opts.QueueDelay > 0 {
		return l.opts.QueueDelay
	}
	if l.noLoad == 0 {
		return unknownDelay
	}
	return min(max(seconds(l.noLoad), minQueueDelay), maxQueueDelay)
}

// waitLocked is how long a flow of weight w may wait for a slot: the
// queue delay for the heaviest workload seen, down to half of it for the
// lightest. Light workloads are turned away sooner under overload, so the
// latency of what is admitted stays low, while heavy ones keep the whole
// delay to find a slot.
func (l *Limiter) waitLocked(w float64) time.Duration {
	w = max(w, 1)
	l.maxWeight = max(l.maxWeight, w)
	d := l.queueDelayLocked()
	return time.Duration(float64(d) * (0.5 + 0.5*w/l.maxWeight))
}

// room is the number of flows the limit admits now: while probing, only
// the low-concurrency level.
func (l *Limiter) roomLocked() int {
	if l.probing {
		return l.probeLevel - l.inflight
	}
	return int(l.limit) - l.inflight
}

// lowLevel is the concurrency at or below which a flow is taken to find
// the service idle.
func (l *Limiter) lowLevelLocked() int { return max(1, int(l.limit/3)) }

// admitLocked takes a slot for a flow at now.
func (l *Limiter) admitLocked(now time.Time) Ticket {
	l.inflight++
	l.winPeak = max(l.winPeak, l.inflight)
	level := l.lowLevelLocked()
	if l.probing {
		level = l.probeLevel
	}
	return Ticket{Admitted: now, low: l.inflight <= level}
}

// Acquire asks for a slot: at once when there is room and nobody waits,
// else after waiting in the fair queue for at most the queue delay (and
// r.Timeout, and never past ctx's deadline). It reports whether the flow
// was admitted; an admitted flow must be released exactly once.
func (l *Limiter) Acquire(ctx context.Context, r Request) (Ticket, bool) {
	l.mu.Lock()
	now := l.opts.Clock()
	if t, ok := l.tryLocked(now); ok {
		l.mu.Unlock()
		return t, true
	}
	timeout := l.waitLocked(r.Weight)
	if r.Timeout > 0 {
		timeout = min(timeout, r.Timeout)
	}
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(dl)-time.Millisecond)
	}
	if timeout <= 0 {
		l.mu.Unlock()
		return Ticket{}, false
	}
	w := l.enqueueLocked(r, nil)
	l.mu.Unlock()

	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-w.ready:
	case <-t.C:
	case <-ctx.Done():
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if w.granted {
		return w.ticket, true
	}
	l.withdrawLocked(w)
	return Ticket{}, false
}

// TryAcquire is Acquire at now that never waits: it admits the flow at
// now when Acquire would at once, rejects it when Acquire would at once
// (no time left to wait), and otherwise, when the flow would have to
// queue, queues nothing and reports decided false, so that the caller can
// Acquire where it may wait. It reads no clock: now is the caller's (an
// event loop's, read once a wake).
func (l *Limiter) TryAcquire(ctx context.Context, now time.Time, r Request) (t Ticket, admitted, decided bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if t, ok := l.tryLocked(now); ok {
		return t, true, true
	}
	timeout := l.waitLocked(r.Weight)
	if r.Timeout > 0 {
		timeout = min(timeout, r.Timeout)
	}
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(dl)-time.Millisecond)
	}
	return Ticket{}, false, timeout <= 0
}

// AdmitNow admits a flow at once, whatever the limit, and reports whether
// the limit had room for it: a dry run that still learns from real load.
func (l *Limiter) AdmitNow(now time.Time) (Ticket, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fits := l.queue.Len() == 0 && l.roomLocked() > 0
	if !fits {
		l.winBound = true
	}
	return l.admitLocked(now), fits
}

// tryLocked admits a flow at once if there is room and nobody waits, and
// otherwise marks the window as bound.
func (l *Limiter) tryLocked(now time.Time) (Ticket, bool) {
	if l.queue.Len() == 0 && l.roomLocked() > 0 {
		return l.admitLocked(now), true
	}
	l.winBound = true
	return Ticket{}, false
}

// enqueueLocked queues a flow behind its workload's earlier ones. notify,
// when set, is called (with mu held) once it is admitted; else its ready
// channel is closed.
func (l *Limiter) enqueueLocked(r Request, notify func(Ticket)) *waiter {
	w := &waiter{notify: notify}
	if notify == nil {
		w.ready = make(chan struct{})
	}
	w.entry = l.queue.Push(r.Workload, r.Weight, 1, w)
	return w
}

// withdrawLocked removes a waiter that gave up (the fair queue gives its
// place on its workload's clock back).
func (l *Limiter) withdrawLocked(w *waiter) { l.queue.Remove(w.entry) }

// dispatchLocked admits waiters in finish-tag order while there is room.
func (l *Limiter) dispatchLocked(now time.Time) {
	for l.queue.Len() > 0 && l.roomLocked() > 0 {
		w := l.queue.Pop().Value
		w.granted = true
		w.ticket = l.admitLocked(now)
		if w.notify != nil {
			w.notify(w.ticket)
		} else {
			close(w.ready)
		}
	}
}

// Release ends an admitted flow at now. A failed flow (an error from the
// service) frees its slot but teaches the limiter its latency only when
// that latency is above the target: fast failures say nothing about
// capacity, slow ones do.
func (l *Limiter) Release(now time.Time, t Ticket, failed bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.inflight = max(l.inflight-1, 0)
	rtt := now.Sub(t.Admitted).Seconds()
	if rtt >= 0 && (!failed || rtt > l.targetLocked()) {
		l.observeLocked(now, rtt, t.low && !failed)
	}
	l.dispatchLocked(now)
}

// Forget frees the slot of a flow whose end will never be reported (its
// client vanished), without learning anything from it.
func (l *Limiter) Forget(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.inflight = max(l.inflight-1, 0)
	l.dispatchLocked(now)
}

func (l *Limiter) observeLocked(now time.Time, rtt float64, low bool) {
	if low {
		l.low[l.lowNext] = sample{at: now, rtt: rtt}
		l.lowNext = (l.lowNext + 1) % lowSamples
		l.lowN = min(l.lowN+1, lowSamples)
		if l.lowN >= lowSamples/2 {
			l.noLoad = l.lowMedianLocked()
		}
		if l.probing {
			l.probeGot++
		}
	}
	if l.probing {
		if l.probeGot >= probeSamples || now.Sub(l.probeStart) >= maxProbeLength {
			l.probing = false
			l.resetWindowLocked(now)
		}
		return // the probe's latencies are not the limit's
	}
	if l.winStart.IsZero() {
		l.winStart = now
	}
	l.winN++
	l.winSum += rtt
	span := now.Sub(l.winStart)
	if !(l.winN >= windowSamples && span >= seconds(l.noLoad)) && !(span >= maxWindow) {
		return
	}
	l.updateLocked(now, l.winSum/float64(l.winN))
	l.resetWindowLocked(now)
}

func (l *Limiter) resetWindowLocked(now time.Time) {
	l.winStart, l.winN, l.winSum, l.winBound = now, 0, 0, false
	l.winPeak = l.inflight
}

// updateLocked moves the limit after a window whose mean latency was mean.
func (l *Limiter) updateLocked(now time.Time, mean float64) {
	if l.winBound && l.needsProbeLocked(now) {
		l.probing, l.probeStart, l.probeGot = true, now, 0
		l.probeLevel = l.lowLevelLocked()
		return
	}
	limit := l.limit
	if target := l.targetLocked(); target > 0 {
		ratio := target / mean
		switch {
		case ratio < 1:
			limit *= max(ratio, maxShrink)
		case l.winBound:
			limit += max(1, limit*min(ratio-1, 1)*growGain)
		}
	}
	if !l.winBound {
		peak := float64(l.winPeak)
		limit = min(limit, max(2*peak, peak+4))
	}
	l.limit = clamp(limit, l.minLocked(), l.maxLocked())
}

// needsProbeLocked reports whether the no-load latency is unknown or
// stale: no flow at low concurrency for ProbeInterval.
func (l *Limiter) needsProbeLocked(now time.Time) bool {
	if l.noLoad == 0 {
		return true
	}
	newest := l.low[(l.lowNext+lowSamples-1)%lowSamples].at
	return now.Sub(newest) >= l.opts.ProbeInterval
}

func (l *Limiter) lowMedianLocked() float64 {
	var buf [lowSamples]float64
	s := buf[:0]
	for i := 0; i < l.lowN; i++ {
		s = append(s, l.low[i].rtt)
	}
	sort.Float64s(s)
	return s[len(s)/2]
}

func clamp(v, lo, hi float64) float64 { return math.Min(math.Max(v, lo), hi) }

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

type waiter struct {
	ready   chan struct{}
	notify  func(Ticket)
	granted bool // guarded by Limiter.mu, like ticket
	ticket  Ticket
	entry   *scheduler.Entry[*waiter]
}
