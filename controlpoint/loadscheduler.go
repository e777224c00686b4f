package controlpoint

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/fluxgate/fluxgate/controlpoint/scheduler"
	"github.com/fluxgate/fluxgate/policies"
)

// loadScheduler is a compiled flow_control.load_scheduler: it admits
// load_multiplier × the incoming token rate from a token bucket of a tenth
// of a second of that rate, and queues the rest in a weighted fair queue by
// workload. The incoming rate is measured from every flow that takes
// (admitted, rejected, or passed through while the multiplier is invalid)
// by a scheduler.IncomingRate, and the admission rate re-derived whenever
// one of its windows closes (at most every scheduler.RateWindow, 100 ms).
// A lull (a silence of over two flow intervals and 100 ms) is not read as
// a low rate: the flows that follow it are admitted at the multiplier ×
// the rate from before it until they have been measured, 100 ms later
// (see scheduler.IncomingRate for what that can let through: at most
// multiplier × the rise × 100 ms flows more than steady traffic would).
//
// A flow waits up to its workload's queue_timeout, but always at least
// scheduler.MinWaitTokens of its token intervals at the current rate
// (never more than scheduler.MaxTokenWait for that floor; see
// scheduler.QueueTimeout): a short queue_timeout keeps admitted flows fast
// while the rate is high, and a low rate (a slow service, light load)
// does not turn it into rejections of flows the rate has room for.
type loadScheduler struct {
	componentInfo
	spec       *policies.LoadScheduler
	multiplier *inputValue
	sched      *scheduler.Scheduler
	workloads  []workload
	fallback   workload

	mu       sync.Mutex // guards incoming
	incoming scheduler.IncomingRate
}

type workload struct {
	name    string
	match   labelMatcher
	weight  float64
	timeout time.Duration
	tokens  float64 // cost of a flow unless a label says; 0: the request's tokens
}

var _ flowComponent = (*loadScheduler)(nil)

func init() {
	registerKind(func(info componentInfo, s *policies.LoadScheduler, _ *Options) (flowComponent, []policies.Selector, error) {
		l, err := newLoadScheduler(info, s)
		return l, s.Selectors, err
	})
}

func newLoadScheduler(info componentInfo, spec *policies.LoadScheduler) (*loadScheduler, error) {
	info.typ = "load_scheduler"
	info.dryRun = spec.DryRun
	info.statusCode = spec.Parameters.DeniedResponseStatusCode
	if info.statusCode == 0 {
		info.statusCode = 503
	}
	l := &loadScheduler{
		componentInfo: info,
		spec:          spec,
		multiplier:    newInput(spec.InPorts.LoadMultiplier),
		sched:         scheduler.New(nil),
		fallback:      newWorkload("default", spec.Parameters.DefaultWorkloadParameters),
	}
	for i, w := range spec.Parameters.Workloads {
		m, err := compileLabelMatcher(w.LabelMatcher)
		if err != nil {
			return nil, fmt.Errorf("parameters.workloads[%d]: %w", i, err)
		}
		name := w.Name
		if name == "" {
			name = strconv.Itoa(i)
		}
		wl := newWorkload(name, w.Parameters)
		wl.match = m
		l.workloads = append(l.workloads, wl)
	}
	return l, nil
}

func newWorkload(name string, p policies.WorkloadParameters) workload {
	timeout := p.QueueTimeout
	if timeout == 0 {
		timeout = time.Second
	}
	return workload{name: name, weight: 1 + p.Priority, timeout: timeout, tokens: p.Tokens}
}

func (l *loadScheduler) workloadOf(labels map[string]string) *workload {
	for i := range l.workloads {
		if l.workloads[i].match.matches(labels) {
			return &l.workloads[i]
		}
	}
	return &l.fallback
}

// arrive counts a flow of tokens arriving at now and, when that closes a
// window of the incoming rate, re-derives the admission rate:
// load_multiplier × the incoming rate. Until the incoming rate has been
// measured, or while the multiplier is invalid, nothing is limited.
func (l *loadScheduler) arrive(now time.Time, tokens float64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.incoming.Arrive(now, tokens) {
		return
	}
	m := l.multiplier.get()
	if !valid(m) {
		l.sched.SetRate(math.Inf(1))
		return
	}
	l.sched.SetRate(m * l.incoming.Rate())
}

// cost is the flow's tokens, or its tokens_label_key label by the rules of
// rateLimiter.cost (never ≤ 0, never from baggage).
func (l *loadScheduler) cost(w *workload, labels map[string]string, tokens float64) float64 {
	if w.tokens > 0 {
		tokens = w.tokens
	}
	return labelCost(labels, l.spec.Parameters.TokensLabelKey, tokens)
}

func (l *loadScheduler) decide(ctx context.Context, now time.Time, labels map[string]string, tokens float64, take bool, ld *LimiterDecision) (held hold) {
	l.describe(ld)
	w := l.workloadOf(labels)
	ld.LimitKey = w.name
	m := l.multiplier.get()
	cost := l.cost(w, labels, tokens)
	if take {
		l.arrive(now, cost)
	}
	rate := l.sched.Rate()
	ld.Limit = rate
	if !valid(m) {
		ld.PassThrough = true
		return
	}
	if !take {
		return // explain cannot predict the queue
	}
	req := scheduler.Request{Workload: w.name, Weight: w.weight, Tokens: cost, Timeout: scheduler.QueueTimeout(w.timeout, cost, rate)}
	if k := l.spec.Parameters.FairnessLabelKey; k != "" {
		req.Fairness = labels[k]
	}
	if l.dryRun {
		req.Timeout = 0 // count what would have to wait; make nobody wait
	}
	if ok, _ := l.sched.Admit(ctx, req); !ok {
		ld.Dropped = true
		ld.Reason = ReasonNoTokens
		ld.Wait = time.Second // Retry-After: the rate is re-derived well within it
	}
	return
}

// waits: an enforcing scheduler queues flows past its rate; a dry run
// makes nobody wait.
func (l *loadScheduler) waits() waitKind {
	if l.dryRun {
		return waitsNever
	}
	return waitsSometimes
}

// tryDecide is decide, unless the flow would queue, or its arrival would
// close a window of the incoming rate (and so re-derive the admission
// rate: decide does that, once, every 100 ms).
func (l *loadScheduler) tryDecide(ctx context.Context, now time.Time, labels map[string]string, tokens float64, ld *LimiterDecision) (held hold, decided bool) {
	l.describe(ld)
	w := l.workloadOf(labels)
	ld.LimitKey = w.name
	m := l.multiplier.get()
	cost := l.cost(w, labels, tokens)
	// Held across the admission, so that no other flow's arrival closes a
	// window in between: the rate is the one decide would see after
	// counting this flow.
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.incoming.Closes(now) {
		return hold{}, false
	}
	rate := l.sched.Rate()
	ld.Limit = rate
	if !valid(m) {
		l.incoming.Arrive(now, cost)
		ld.PassThrough = true
		return hold{}, true
	}
	req := scheduler.Request{Workload: w.name, Weight: w.weight, Tokens: cost, Timeout: scheduler.QueueTimeout(w.timeout, cost, rate)}
	if k := l.spec.Parameters.FairnessLabelKey; k != "" {
		req.Fairness = labels[k]
	}
	ok, decided := l.sched.TryAdmit(ctx, req)
	if !decided {
		return hold{}, false
	}
	l.incoming.Arrive(now, cost)
	if !ok {
		ld.Dropped = true
		ld.Reason = ReasonNoTokens
		ld.Wait = time.Second
	}
	return hold{}, true
}

// untry gives back the admission and the arrival of a flow tryDecide
// decided, which is to be checked again.
func (l *loadScheduler) untry(_ time.Time, labels map[string]string, tokens float64, ld *LimiterDecision) {
	cost := l.cost(l.workloadOf(labels), labels, tokens)
	l.mu.Lock()
	l.incoming.Unarrive(cost)
	l.mu.Unlock()
	if !ld.Dropped && !ld.PassThrough {
		l.sched.Refund(cost)
	}
}

// undo cannot give back an admission slot: the flow already went through
// the queue. The rate follows arrivals, so the error fades within a tick.
func (l *loadScheduler) undo(time.Time, map[string]string, float64) {}

func (l *loadScheduler) carry(old flowComponent) bool {
	o, ok := old.(*loadScheduler)
	if !ok {
		return false
	}
	if _, ok := l.spec.InPorts.LoadMultiplier.Constant(); !ok {
		l.multiplier.set(o.multiplier.get())
	}
	return true
}

func (l *loadScheduler) setInput(port string, v float64) error {
	if port != "load_multiplier" {
		return fmt.Errorf("load_scheduler has no input port %q", port)
	}
	l.multiplier.set(v)
	return nil
}
