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

// rateUpdateEvery is how often a load scheduler re-derives its admission
// rate from the incoming token rate and its load multiplier.
const rateUpdateEvery = 100 * time.Millisecond

// loadScheduler is a compiled flow_control.load_scheduler: it admits
// load_multiplier × the smoothed incoming token rate (re-derived at most
// every rateUpdateEvery) from a token bucket of a tenth of a second of
// that rate, and queues the rest in a weighted fair queue by workload.
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

	mu          sync.Mutex // guards the rate estimate
	lastUpdate  time.Time
	arrivalRate float64 // tokens/s, smoothed; NaN until measured
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
		arrivalRate:   math.NaN(),
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

// updateRate re-derives the admission rate at most every rateUpdateEvery:
// load_multiplier × the smoothed incoming token rate. Until the incoming
// rate has been measured, or while the multiplier is invalid, nothing is
// limited.
func (l *loadScheduler) updateRate(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lastUpdate.IsZero() {
		l.lastUpdate = now
		l.sched.TakeArrivals()
		return
	}
	dt := now.Sub(l.lastUpdate)
	if dt < rateUpdateEvery {
		return
	}
	l.lastUpdate = now
	observed := l.sched.TakeArrivals() / dt.Seconds()
	if math.IsNaN(l.arrivalRate) {
		l.arrivalRate = observed
	} else {
		l.arrivalRate = 0.5*l.arrivalRate + 0.5*observed
	}
	m := l.multiplier.get()
	if !valid(m) {
		l.sched.SetRate(math.Inf(1))
		return
	}
	l.sched.SetRate(m * l.arrivalRate)
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
	if take {
		l.updateRate(now)
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
	cost := l.cost(w, labels, tokens)
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
