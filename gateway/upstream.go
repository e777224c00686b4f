package gateway

import (
	"math"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/fluxgate/fluxgate/controlpoint/breaker"
)

// Defaults of an upstream group's optional sections.
const (
	DefaultHealthPath         = "/healthz"
	DefaultHealthInterval     = 5 * time.Second
	DefaultHealthTimeout      = time.Second
	DefaultUnhealthyThreshold = 3
	DefaultHealthyThreshold   = 2
	DefaultOutlierWindow      = 10 * time.Second
	DefaultOutlierMinRequests = 10
	DefaultEjectFor           = 5 * time.Second
	DefaultRetryAttempts      = 2
	DefaultRetryBudget        = 0.2
	DefaultPanicThreshold     = 0.5
)

// adaptiveMinFactor bounds an adaptive target's effective weight from
// below, as a factor of its configured weight: the slowest target still
// gets a trickle of requests, which is how its latency can be seen to
// recover.
const adaptiveMinFactor = 0.005

// target is one upstream server. It outlives routing snapshots: Update
// hands the same *target to the new snapshot when its upstream group and
// address are unchanged, so health and latency state carry over.
type target struct {
	addr     string
	weight   atomic.Int64  // circuit-set weight if any, else configured
	cfgW     atomic.Int64  // configured weight
	override atomic.Int64  // circuit-set weight, -1 for none
	inFlight atomic.Int64  // requests being proxied to it
	healthy  atomic.Bool   // by active health checks
	ejected  atomic.Int64  // unix nanos until which outlier detection drains it
	effBits  atomic.Uint64 // last effective weight (float64 bits), for metrics

	mu        sync.Mutex
	hcFails   int       // consecutive failed health checks; guarded by mu
	hcOKs     int       // consecutive passed health checks; guarded by mu
	ewma      float64   // peak-EWMA latency in seconds; guarded by mu
	ewmaAt    time.Time // last ewma update; guarded by mu
	errEWMA   float64   // EWMA of failures (0..1); guarded by mu
	samples   []sample  // ring for outlier detection; guarded by mu
	clearedAt time.Time // samples of requests started before are dropped; guarded by mu
	next      int       // next ring slot; guarded by mu
	currentWR float64   // smooth WRR state, guarded by the group's mu
}

// sample is one proxied request, for outlier detection.
type sample struct {
	at      time.Time
	latency time.Duration
	failed  bool
}

const sampleRing = 512

func newTarget(addr string, weight int) *target {
	t := &target{addr: addr, samples: make([]sample, 0, sampleRing)}
	t.override.Store(-1)
	t.setConfigured(int64(weight))
	t.healthy.Store(true)
	return t
}

// setConfigured sets the configured weight, which applies unless a
// circuit set one.
func (t *target) setConfigured(w int64) {
	t.cfgW.Store(w)
	t.applyWeight()
}

// setOverride sets the circuit's weight; -1 returns to the configured one.
func (t *target) setOverride(w int64) {
	t.override.Store(w)
	t.applyWeight()
}

func (t *target) applyWeight() {
	if o := t.override.Load(); o >= 0 {
		t.weight.Store(o)
		return
	}
	t.weight.Store(t.cfgW.Load())
}

// available reports whether the target takes traffic at now.
func (t *target) available(now time.Time) bool {
	return t.healthy.Load() && now.UnixNano() >= t.ejected.Load()
}

// observe records a finished request at now.
func (t *target) observe(now time.Time, latency time.Duration, failed bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	// A request that was in flight when the samples were cleared (the
	// target drained) belongs to the old episode: it must not drain the
	// target again once it returns.
	if !now.Add(-latency).Before(t.clearedAt) {
		s := sample{at: now, latency: latency, failed: failed}
		if len(t.samples) < sampleRing {
			t.samples = append(t.samples, s)
		} else {
			t.samples[t.next] = s
		}
		t.next = (t.next + 1) % sampleRing
	}
	// Peak EWMA: a slower sample takes over at once, faster ones decay in.
	const tau = float64(time.Second)
	sec := latency.Seconds()
	if sec > t.ewma || t.ewmaAt.IsZero() {
		t.ewma = sec
	} else {
		w := math.Exp(-float64(now.Sub(t.ewmaAt)) / tau)
		t.ewma = t.ewma*w + sec*(1-w)
	}
	f := 0.0
	if failed {
		f = 1
	}
	t.errEWMA = t.errEWMA*0.9 + f*0.1
	t.ewmaAt = now
}

// cost is the adaptive balancer's price of sending one more request:
// latency times queue length, inflated by recent errors.
func (t *target) cost() float64 {
	t.mu.Lock()
	lat, errs := t.ewma, t.errEWMA
	t.mu.Unlock()
	if lat <= 0 {
		lat = 0.001 // no data yet: optimistic, so new targets get tried
	}
	return lat * float64(t.inFlight.Load()+1) * (1 + 10*errs)
}

// outlierStats returns, over the samples since from, their count, the
// failure count and the p95 latency.
func (t *target) outlierStats(from time.Time) (n, failed int, p95 time.Duration) {
	t.mu.Lock()
	lat := make([]time.Duration, 0, len(t.samples))
	for _, s := range t.samples {
		if s.at.Before(from) {
			continue
		}
		lat = append(lat, s.latency)
		if s.failed {
			failed++
		}
	}
	t.mu.Unlock()
	if len(lat) == 0 {
		return 0, 0, 0
	}
	slices.Sort(lat)
	return len(lat), failed, lat[int(math.Ceil(0.95*float64(len(lat))))-1]
}

// clearSamples forgets the samples so far, and those of requests started
// before now that finish later.
func (t *target) clearSamples(now time.Time) {
	t.mu.Lock()
	t.samples = t.samples[:0]
	t.next = 0
	t.clearedAt = now
	t.mu.Unlock()
}

// upstream is a group of targets with its balancer, health settings,
// breaker and retry budget. Like target, it carries over between
// snapshots when its name is unchanged (its config may change).
type upstream struct {
	name      string
	algorithm string
	targets   []*target
	health    *HealthCheckConfig      // defaults filled; nil: no active checks
	outlier   *OutlierDetectionConfig // defaults filled; nil: none
	breaker   *breaker.Breaker        // nil: none
	retries   RetriesConfig           // defaults filled
	panicAt   float64                 // panic threshold
	rr        atomic.Uint64           // round-robin cursor
	mu        sync.Mutex              // guards the targets' currentWR
	budget    retryBudget
	transport http.RoundTripper // by the group's http2 and tls
	scheme    string            // http or https
	// fast holds the fast engine's client of each target by address; nil
	// when the group speaks HTTP/2, which only the net/http engine does.
	fast map[string]*fasthttp.HostClient
	// lean holds the lean engine's connection pool of each target, as fast.
	lean map[string]*leanPool
}

func newUpstream(cfg UpstreamConfig, old map[string]*target) *upstream {
	u := &upstream{name: cfg.Name, algorithm: cfg.Algorithm, panicAt: cfg.PanicThreshold}
	if u.algorithm == "" {
		u.algorithm = AlgorithmRoundRobin
	}
	if u.panicAt == 0 {
		u.panicAt = DefaultPanicThreshold
	}
	for _, tc := range cfg.Targets {
		w := tc.Weight
		if w == 0 {
			w = 1
		}
		t := old[tc.Address]
		if t == nil {
			t = newTarget(tc.Address, w)
		} else {
			t.setConfigured(int64(w))
		}
		u.targets = append(u.targets, t)
	}
	if hc := cfg.HealthCheck; hc != nil {
		h := *hc
		if h.Path == "" {
			h.Path = DefaultHealthPath
		}
		if h.Interval == 0 {
			h.Interval = DefaultHealthInterval
		}
		if h.Timeout == 0 {
			h.Timeout = min(DefaultHealthTimeout, h.Interval)
		}
		if h.UnhealthyThreshold == 0 {
			h.UnhealthyThreshold = DefaultUnhealthyThreshold
		}
		if h.HealthyThreshold == 0 {
			h.HealthyThreshold = DefaultHealthyThreshold
		}
		u.health = &h
	} else {
		for _, t := range u.targets {
			t.healthy.Store(true) // no checks: nothing can call it unhealthy
		}
	}
	if od := cfg.OutlierDetection; od != nil {
		o := *od
		if o.Window == 0 {
			o.Window = DefaultOutlierWindow
		}
		if o.MinRequests == 0 {
			o.MinRequests = DefaultOutlierMinRequests
		}
		if o.EjectFor == 0 {
			o.EjectFor = DefaultEjectFor
		}
		u.outlier = &o
	}
	u.retries = RetriesConfig{Attempts: DefaultRetryAttempts, Budget: DefaultRetryBudget}
	if r := cfg.Retries; r != nil {
		if r.Attempts != 0 {
			u.retries.Attempts = max(r.Attempts, 0)
		}
		if r.Budget != 0 {
			u.retries.Budget = r.Budget
		}
	}
	u.budget.ratio = u.retries.Budget
	return u
}

// refusedEjectFor is how long a target that refused a connection is
// drained: until the next health check could return it, or EjectFor.
func (u *upstream) refusedEjectFor() time.Duration {
	if u.health != nil {
		return u.health.Interval
	}
	if u.outlier != nil {
		return u.outlier.EjectFor
	}
	return time.Second
}

// candidates appends to dst the targets to balance over at now, leaving
// out those in skip: the available ones, or all of them when fewer than
// the panic threshold are available (spreading load beats overloading the
// survivors when health checking itself is what broke).
func (u *upstream) candidates(dst []*target, now time.Time, skip []*target) []*target {
	start := len(dst)
	for _, t := range u.targets {
		if !slices.Contains(skip, t) && t.available(now) {
			dst = append(dst, t)
		}
	}
	if float64(len(dst)-start) >= u.panicAt*float64(len(u.targets)) {
		return dst
	}
	dst = dst[:start]
	for _, t := range u.targets {
		if !slices.Contains(skip, t) {
			dst = append(dst, t)
		}
	}
	return dst
}

// pick chooses a target at now, not one of skip; nil when none is left.
func (u *upstream) pick(now time.Time, skip []*target) *target {
	var buf [8]*target // most groups fit: no allocation a request
	cs := u.candidates(buf[:0], now, skip)
	switch len(cs) {
	case 0:
		return nil
	case 1:
		return cs[0]
	}
	switch u.algorithm {
	case AlgorithmWeightedRoundRobin:
		return u.smoothWRR(cs, func(t *target) float64 { return float64(t.weight.Load()) })
	case AlgorithmLeastRequest:
		return u.leastRequest(cs)
	case AlgorithmAdaptive:
		return u.adaptive(cs)
	}
	return cs[int(u.rr.Add(1)%uint64(len(cs)))]
}

// smoothWRR is nginx's smooth weighted round-robin: every pick adds each
// candidate's weight to its current weight, picks the largest and takes
// the total off the winner. Over sum(weights) picks each target is chosen
// weight times, interleaved.
func (u *upstream) smoothWRR(cs []*target, weight func(*target) float64) *target {
	u.mu.Lock()
	defer u.mu.Unlock()
	var best *target
	total := 0.0
	for _, t := range cs {
		w := weight(t)
		t.effBits.Store(math.Float64bits(w))
		t.currentWR += w
		total += w
		if best == nil || t.currentWR > best.currentWR {
			best = t
		}
	}
	best.currentWR -= total
	return best
}

// leastRequest picks the target with the fewest requests in flight per
// unit of weight, ties broken round-robin.
func (u *upstream) leastRequest(cs []*target) *target {
	start := int(u.rr.Add(1) % uint64(len(cs)))
	var best *target
	bestLoad := math.Inf(1)
	for i := range cs {
		t := cs[(start+i)%len(cs)]
		load := float64(t.inFlight.Load()) / float64(max(t.weight.Load(), 1))
		if load < bestLoad {
			best, bestLoad = t, load
		}
	}
	return best
}

// adaptive scales each weight by the fourth power of how cheap the target is
// against the cheapest candidate (peak-EWMA latency × queue, error
// penalty), at least adaptiveMinFactor × weight,
// and picks by smooth WRR on the result. Comparing with the cheapest, not
// the mean, keeps a slow target from raising the bar it is measured
// against. The lower bound keeps a slow target probed, so its latency can
// recover.
func (u *upstream) adaptive(cs []*target) *target {
	costs := make([]float64, len(cs))
	best := math.Inf(1)
	for i, t := range cs {
		costs[i] = t.cost()
		best = min(best, costs[i])
	}
	idx := make(map[*target]float64, len(cs))
	for i, t := range cs {
		r := best / costs[i]
		f := max(r*r*r*r, adaptiveMinFactor) // a target 2× as costly gets 1/16 of the share
		idx[t] = f * float64(t.weight.Load())
	}
	return u.smoothWRR(cs, func(t *target) float64 { return idx[t] })
}

// effectiveWeight is the weight the balancer used last (configured weight
// until the first pick).
func (t *target) effectiveWeight() float64 {
	if b := t.effBits.Load(); b != 0 {
		return math.Float64frombits(b)
	}
	return float64(t.weight.Load())
}

// retryBudget lets retries add at most ratio of the requests, plus a
// small reserve so a quiet upstream can still retry.
type retryBudget struct {
	ratio  float64
	mu     sync.Mutex
	tokens float64 // guarded by mu
	init   bool    // guarded by mu
}

const retryReserve = 10

// request deposits a request's share of retries.
func (b *retryBudget) request() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.fill()
	b.tokens = min(b.tokens+b.ratio, retryReserve+100*b.ratio)
}

// retry takes one retry from the budget, reporting whether there was one.
func (b *retryBudget) retry() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.fill()
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

func (b *retryBudget) fill() {
	if !b.init {
		b.tokens, b.init = retryReserve, true
	}
}
