package controlpoint

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/fluxgate/fluxgate/controlpoint/ratelimit"
	"github.com/fluxgate/fluxgate/controlpoint/scheduler"
	"github.com/fluxgate/fluxgate/policies"
)

// concurrencyLimiter is a compiled flow_control.concurrency_limiter or,
// with sched set, flow_control.concurrency_scheduler: a count of slots in
// flight per key behind a scheduler.Gate. Every admitted flow holds its
// slots in the engine's flow table until its end is reported or
// max_inflight_duration passes. The limiter's flows never wait (timeout
// 0); the scheduler's wait by workload.
type concurrencyLimiter struct {
	componentInfo
	max       *inputValue
	maxPort   *policies.InPort
	params    policies.ConcurrencyLimiterParameters
	tokensKey string          // the limiter's request_parameters.tokens_label_key
	sched     *schedWorkloads // nil for the limiter
	keyOf     ratelimit.KeyFunc
	slots     *slotCounter
	gate      *scheduler.Gate
	maxFlow   time.Duration
	pass      passPort
}

var (
	_ flowComponent = (*concurrencyLimiter)(nil)
	_ slotHolder    = (*concurrencyLimiter)(nil)
)

func init() {
	registerKind(func(info componentInfo, s *policies.ConcurrencyLimiter, _ *Options) (flowComponent, []policies.Selector, error) {
		return newConcurrencyLimiter(info, s), s.Selectors, nil
	})
	registerKind(func(info componentInfo, s *policies.ConcurrencyScheduler, _ *Options) (flowComponent, []policies.Selector, error) {
		c, err := newConcurrencyScheduler(info, s)
		return c, s.Selectors, err
	})
}

func newConcurrencyLimiter(info componentInfo, spec *policies.ConcurrencyLimiter) *concurrencyLimiter {
	info.typ = "concurrency_limiter"
	info.dryRun = spec.DryRun
	info.statusCode = spec.RequestParameters.DeniedResponseStatusCode
	if info.statusCode == 0 {
		info.statusCode = 429
	}
	c := newSlots(info, spec.InPorts.MaxConcurrency, spec.Parameters)
	c.tokensKey = spec.RequestParameters.TokensLabelKey
	c.pass = newPassPort(spec.InPorts.PassThrough)
	return c
}

func newConcurrencyScheduler(info componentInfo, spec *policies.ConcurrencyScheduler) (*concurrencyLimiter, error) {
	info.typ = "concurrency_scheduler"
	info.dryRun = spec.DryRun
	info.statusCode = spec.Scheduler.DeniedResponseStatusCode
	if info.statusCode == 0 {
		info.statusCode = 503
	}
	sched, err := newSchedWorkloads(spec.Scheduler)
	if err != nil {
		return nil, err
	}
	c := newSlots(info, spec.InPorts.MaxConcurrency, spec.ConcurrencyLimiter)
	c.sched = sched
	c.pass = newPassPort(spec.InPorts.PassThrough)
	return c, nil
}

func newSlots(info componentInfo, port *policies.InPort, p policies.ConcurrencyLimiterParameters) *concurrencyLimiter {
	c := &concurrencyLimiter{componentInfo: info, max: newInput(port), maxPort: port, params: p, maxFlow: p.MaxInflightDuration}
	if c.maxFlow == 0 {
		c.maxFlow = policies.DefaultMaxFlowDuration
	}
	if p.LimitByLabelKey != "" {
		c.keyOf = ratelimit.LabelKey(p.LimitByLabelKey)
	}
	c.slots = &slotCounter{max: c.max, inflight: map[string]float64{}}
	c.gate = scheduler.NewGate(c.slots, nil)
	return c
}

// slotCounter is the Gate's resource: slots in flight per key, at most
// max each. Only keys with flows in flight are kept.
type slotCounter struct {
	mu       sync.Mutex
	max      *inputValue        // guarded by mu (carry repoints it)
	inflight map[string]float64 // guarded by mu
}

func (s *slotCounter) TryTake(_ time.Time, key string, n float64) (bool, time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inflight[key]+n <= s.max.get() {
		s.inflight[key] += n
		return true, 0
	}
	return false, 0 // a slot given back, or a higher limit, makes room
}

// give returns n slots of key.
func (s *slotCounter) give(key string, n float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.inflight[key] - n
	if v <= 1e-9 {
		delete(s.inflight, key)
		return
	}
	s.inflight[key] = v
}

func (s *slotCounter) used(key string) float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inflight[key]
}

func (c *concurrencyLimiter) key(labels map[string]string) string {
	if c.keyOf == nil {
		return ""
	}
	if k, ok := c.keyOf(labels); ok {
		return ratelimit.BoundKey(k)
	}
	return ratelimit.UnknownKey
}

// share is where the flow waits and how many slots it takes.
func (c *concurrencyLimiter) share(labels map[string]string, tokens float64) flowShare {
	if c.sched != nil {
		return c.sched.share(labels, tokens)
	}
	return flowShare{weight: 1, tokens: labelCost(labels, c.tokensKey, tokens)}
}

func (c *concurrencyLimiter) decide(ctx context.Context, now time.Time, labels map[string]string, tokens float64, take bool, ld *LimiterDecision) (held hold) {
	c.describe(ld)
	ld.LimitKey = c.key(labels)
	f := c.share(labels, tokens)
	ld.Workload, ld.Priority = f.workload, f.priority
	m := c.max.get()
	if c.pass.on() || !valid(m) {
		ld.PassThrough = true
		return
	}
	ld.Limit = m
	var ok bool
	switch {
	case !take:
		ok = c.slots.used(ld.LimitKey)+f.tokens <= m
	case c.dryRun:
		ok, _ = c.slots.TryTake(now, ld.LimitKey, f.tokens) // never waits
	default:
		ok, _ = c.gate.Acquire(ctx, f.gateRequest(ld.LimitKey))
	}
	ld.Remaining = math.Max(m-c.slots.used(ld.LimitKey), 0)
	if take && ok {
		held = hold{c: c, key: ld.LimitKey, tokens: f.tokens}
	}
	if !ok {
		ld.Dropped = true
		ld.Reason = ReasonNoTokens
		ld.Wait = time.Second
	}
	return
}

// waits: a concurrency scheduler queues flows by workload; the limiter's
// flows, and a dry run's, never wait.
func (c *concurrencyLimiter) waits() waitKind {
	if c.sched == nil || c.dryRun {
		return waitsNever
	}
	return waitsSometimes
}

// tryDecide is decide, unless the flow would queue for its slots.
func (c *concurrencyLimiter) tryDecide(ctx context.Context, now time.Time, labels map[string]string, tokens float64, ld *LimiterDecision) (held hold, decided bool) {
	if c.dryRun {
		return c.decide(ctx, now, labels, tokens, true, ld), true
	}
	c.describe(ld)
	ld.LimitKey = c.key(labels)
	f := c.share(labels, tokens)
	ld.Workload, ld.Priority = f.workload, f.priority
	m := c.max.get()
	if c.pass.on() || !valid(m) {
		ld.PassThrough = true
		return hold{}, true
	}
	ld.Limit = m
	ok, decided := c.gate.TryAcquire(ctx, f.gateRequest(ld.LimitKey))
	if !decided {
		return hold{}, false
	}
	ld.Remaining = math.Max(m-c.slots.used(ld.LimitKey), 0)
	if ok {
		held = hold{c: c, key: ld.LimitKey, tokens: f.tokens}
	} else {
		ld.Dropped = true
		ld.Reason = ReasonNoTokens
		ld.Wait = time.Second
	}
	return held, true
}

// undo frees the slots of a flow a later component rejected.
func (c *concurrencyLimiter) undo(now time.Time, labels map[string]string, tokens float64) {
	c.free(c.key(labels), c.share(labels, tokens).tokens)
}

// release frees a held flow's slots: ended or expired, it is all one to a
// fixed limit.
func (c *concurrencyLimiter) release(_ time.Time, h *hold, _, _ bool) { c.free(h.key, h.tokens) }

func (c *concurrencyLimiter) free(key string, n float64) {
	c.slots.give(key, n)
	c.gate.ReleaseNow(key)
}

func (c *concurrencyLimiter) maxFlowDuration() time.Duration { return c.maxFlow }

// carry keeps the counts and queues (flows in flight keep their slots)
// when the key is unchanged; a new limit applies at once.
func (c *concurrencyLimiter) carry(old flowComponent) bool {
	o, ok := old.(*concurrencyLimiter)
	if !ok || o.typ != c.typ || o.params.LimitByLabelKey != c.params.LimitByLabelKey {
		return false
	}
	if _, ok := c.maxPort.Constant(); !ok {
		c.max.set(o.max.get())
	}
	c.pass.carry(o.pass)
	// The counter reads the limit from its own input: point it at ours.
	o.slots.mu.Lock()
	o.slots.max = c.max
	o.slots.mu.Unlock()
	c.slots, c.gate = o.slots, o.gate
	c.gate.Kick()
	return true
}

func (c *concurrencyLimiter) setInput(port string, v float64) error {
	if port == "pass_through" {
		return c.pass.set(v)
	}
	if port != "max_concurrency" {
		return fmt.Errorf("%s has no input port %q", c.typ, port)
	}
	c.max.set(v)
	c.gate.Kick()
	return nil
}
