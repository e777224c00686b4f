package controlpoint

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/fluxgate/fluxgate/controlpoint/ratelimit"
	"github.com/fluxgate/fluxgate/controlpoint/scheduler"
	"github.com/fluxgate/fluxgate/policies"
)

// quotaScheduler is a compiled flow_control.quota_scheduler: local token
// buckets (the rate limiter's) behind a scheduler.Gate, so a flow the
// bucket cannot serve waits for the refill by workload priority.
type quotaScheduler struct {
	componentInfo
	spec     *policies.QuotaScheduler
	capacity *inputValue
	fill     *inputValue
	pass     passPort
	lim      *ratelimit.Limiter
	gate     *scheduler.Gate
	keyOf    ratelimit.KeyFunc // nil: one bucket
	sched    *schedWorkloads
}

var _ flowComponent = (*quotaScheduler)(nil)

// quotaRecheck bounds how long a flow at the head of a queue waits before
// its bucket is asked again: the bucket's own estimate is exact for a
// continuous fill and may overshoot the next boundary of a discrete one.
const quotaRecheck = 100 * time.Millisecond

func init() {
	registerKind(func(info componentInfo, s *policies.QuotaScheduler, o *Options) (flowComponent, []policies.Selector, error) {
		q, err := newQuotaScheduler(info, s, o.RateLimiterMemory)
		return q, s.Selectors, err
	})
}

func newQuotaScheduler(info componentInfo, spec *policies.QuotaScheduler, maxMemory int64) (*quotaScheduler, error) {
	info.typ = "quota_scheduler"
	info.dryRun = spec.DryRun
	info.statusCode = spec.Scheduler.DeniedResponseStatusCode
	if info.statusCode == 0 {
		info.statusCode = 503
	}
	sched, err := newSchedWorkloads(spec.Scheduler)
	if err != nil {
		return nil, err
	}
	q := &quotaScheduler{
		componentInfo: info,
		spec:          spec,
		capacity:      newInput(spec.InPorts.BucketCapacity),
		fill:          newInput(spec.InPorts.FillAmount),
		pass:          newPassPort(spec.InPorts.PassThrough),
		sched:         sched,
	}
	if k := spec.RateLimiter.LimitByLabelKey; k != "" {
		q.keyOf = ratelimit.LabelKey(k)
	}
	q.lim = ratelimit.New(ratelimit.Options{
		Limits:           q.limits(),
		MaxIdle:          spec.RateLimiter.MaxIdleTime,
		DelayInitialFill: spec.RateLimiter.DelayInitialFill,
		MaxMemory:        maxMemory,
	})
	q.gate = scheduler.NewGate(quotaBuckets{q.lim}, nil)
	return q, nil
}

// quotaBuckets are the Gate's resource: a bucket per key.
type quotaBuckets struct{ lim *ratelimit.Limiter }

func (b quotaBuckets) TryTake(now time.Time, key string, n float64) (bool, time.Duration) {
	res := b.lim.Take(now, key, n)
	switch {
	case res.Allowed:
		return true, 0
	case n > res.Limit:
		return false, -1 // more than the bucket ever holds
	case res.Wait == time.Duration(math.MaxInt64):
		return false, 0 // no fill: only a new fill_amount helps
	}
	return false, min(res.Wait, quotaRecheck)
}

func (q *quotaScheduler) limits() ratelimit.Limits {
	return ratelimit.Limits{
		Capacity:   q.capacity.get(),
		FillAmount: q.fill.get(),
		Interval:   q.spec.RateLimiter.Interval,
		Continuous: q.spec.RateLimiter.Continuous(),
	}
}

func (q *quotaScheduler) key(labels map[string]string) string {
	if q.keyOf == nil {
		return ""
	}
	if k, ok := q.keyOf(labels); ok {
		return ratelimit.BoundKey(k)
	}
	return ratelimit.UnknownKey
}

func (q *quotaScheduler) decide(ctx context.Context, now time.Time, labels map[string]string, tokens float64, take bool, ld *LimiterDecision) (held hold) {
	q.describe(ld)
	ld.LimitKey = q.key(labels)
	f := q.sched.share(labels, tokens)
	ld.Workload, ld.Priority = f.workload, f.priority
	if q.pass.on() || !valid(q.capacity.get()) || !valid(q.fill.get()) {
		ld.PassThrough = true
		return
	}
	if !take || q.dryRun {
		var res ratelimit.Result
		if take {
			res = q.lim.Take(now, ld.LimitKey, f.tokens)
		} else {
			res = q.lim.Peek(now, ld.LimitKey, f.tokens)
		}
		ld.Remaining, ld.Limit, ld.Wait, ld.Reset = res.Remaining, res.Limit, res.Wait, res.Reset
		ld.Dropped = !res.Allowed
		if ld.Dropped {
			ld.Reason = ReasonNoTokens
		}
		return
	}
	ok, _ := q.gate.Acquire(ctx, f.gateRequest(ld.LimitKey))
	q.answer(now, ld, f.tokens, ok)
	return
}

// answer fills ld for a flow of n tokens the gate admitted (ok) or not.
func (q *quotaScheduler) answer(now time.Time, ld *LimiterDecision, n float64, ok bool) {
	res := q.lim.Peek(now, ld.LimitKey, n)
	ld.Remaining, ld.Limit, ld.Reset = res.Remaining, res.Limit, res.Reset
	if !ok {
		ld.Dropped = true
		ld.Reason = ReasonNoTokens
		ld.Wait = max(res.Wait, time.Millisecond)
		if res.Wait == time.Duration(math.MaxInt64) {
			ld.Wait = time.Second
		}
	}
}

// waits: an enforcing scheduler queues flows its bucket cannot serve; a
// dry run asks the bucket alone.
func (q *quotaScheduler) waits() waitKind {
	if q.dryRun {
		return waitsNever
	}
	return waitsSometimes
}

// tryDecide is decide, unless the flow would queue for its tokens.
func (q *quotaScheduler) tryDecide(ctx context.Context, now time.Time, labels map[string]string, tokens float64, ld *LimiterDecision) (held hold, decided bool) {
	if q.dryRun {
		return q.decide(ctx, now, labels, tokens, true, ld), true
	}
	q.describe(ld)
	ld.LimitKey = q.key(labels)
	f := q.sched.share(labels, tokens)
	ld.Workload, ld.Priority = f.workload, f.priority
	if q.pass.on() || !valid(q.capacity.get()) || !valid(q.fill.get()) {
		ld.PassThrough = true
		return hold{}, true
	}
	ok, decided := q.gate.TryAcquire(ctx, f.gateRequest(ld.LimitKey))
	if !decided {
		return hold{}, false
	}
	q.answer(now, ld, f.tokens, ok)
	return hold{}, true
}

// undo gives the tokens back and lets the key's waiting flows take them.
func (q *quotaScheduler) undo(now time.Time, labels map[string]string, tokens float64) {
	key := q.key(labels)
	q.lim.Return(now, key, q.sched.share(labels, tokens).tokens)
	q.gate.ReleaseNow(key)
}

// carry keeps the buckets and queues when the bucket identity (key,
// interval, fill mode, idle time) is unchanged; new ports apply at once.
func (q *quotaScheduler) carry(old flowComponent) bool {
	o, ok := old.(*quotaScheduler)
	if !ok {
		return false
	}
	op, np := o.spec.RateLimiter, q.spec.RateLimiter
	if op.LimitByLabelKey != np.LimitByLabelKey || op.Interval != np.Interval || op.Continuous() != np.Continuous() ||
		op.MaxIdleTime != np.MaxIdleTime || op.DelayInitialFill != np.DelayInitialFill {
		return false
	}
	q.pass.carry(o.pass)
	if _, ok := q.spec.InPorts.BucketCapacity.Constant(); !ok {
		q.capacity.set(o.capacity.get())
	}
	if _, ok := q.spec.InPorts.FillAmount.Constant(); !ok {
		q.fill.set(o.fill.get())
	}
	q.lim, q.gate = o.lim, o.gate
	q.applyLimits()
	return true
}

func (q *quotaScheduler) setInput(port string, v float64) error {
	switch port {
	case "bucket_capacity":
		q.capacity.set(v)
	case "fill_amount":
		q.fill.set(v)
	case "pass_through":
		return q.pass.set(v)
	default:
		return fmt.Errorf("quota_scheduler has no input port %q", port)
	}
	q.applyLimits()
	return nil
}

// applyLimits hands valid port values to the buckets and lets waiting
// flows take what the new limits give.
func (q *quotaScheduler) applyLimits() {
	if valid(q.capacity.get()) && valid(q.fill.get()) {
		q.lim.SetLimits(q.limits())
		q.gate.Kick()
	}
}

func (q *quotaScheduler) sweep(now time.Time) int { return q.lim.Sweep(now) }
