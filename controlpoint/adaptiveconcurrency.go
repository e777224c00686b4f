package controlpoint

import (
	"context"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"time"

	"github.com/fluxgate/fluxgate/controlpoint/concurrency"
	"github.com/fluxgate/fluxgate/policies"
)

// adaptiveConcurrency is a compiled flow_control.adaptive_concurrency. It
// holds a slot of its limiter for every flow it admits, until the flow's
// end is reported to the engine (Engine.EndFlow) or its max_flow_duration
// passes.
type adaptiveConcurrency struct {
	componentInfo
	spec      *policies.AdaptiveConcurrency
	lim       *concurrency.Limiter
	objective *inputValue // ms
	lo, hi    *inputValue
	workloads []workload
	fallback  workload
	maxFlow   time.Duration
}

var (
	_ flowComponent = (*adaptiveConcurrency)(nil)
	_ slotHolder    = (*adaptiveConcurrency)(nil)
)

func init() {
	registerKind(func(info componentInfo, s *policies.AdaptiveConcurrency, _ *Options) (flowComponent, []policies.Selector, error) {
		a, err := newAdaptiveConcurrency(info, s)
		return a, s.Selectors, err
	})
}

func newAdaptiveConcurrency(info componentInfo, spec *policies.AdaptiveConcurrency) (*adaptiveConcurrency, error) {
	info.typ = "adaptive_concurrency"
	info.dryRun = spec.DryRun
	p := spec.Parameters
	info.statusCode = p.DeniedResponseStatusCode
	if info.statusCode == 0 {
		info.statusCode = 503
	}
	a := &adaptiveConcurrency{
		componentInfo: info,
		spec:          spec,
		lim:           newLimiter(p),
		objective:     newOptionalInput(spec.InPorts.LatencyObjectiveMs),
		lo:            newOptionalInput(spec.InPorts.MinConcurrency),
		hi:            newOptionalInput(spec.InPorts.MaxConcurrency),
		fallback:      workload{name: "default", weight: 1 + p.DefaultWorkloadParameters.Priority, timeout: p.DefaultWorkloadParameters.QueueTimeout},
		maxFlow:       p.MaxFlowDuration,
	}
	if a.maxFlow == 0 {
		a.maxFlow = policies.DefaultMaxFlowDuration
	}
	for i, w := range p.Workloads {
		m, err := compileLabelMatcher(w.LabelMatcher)
		if err != nil {
			return nil, fmt.Errorf("parameters.workloads[%d]: %w", i, err)
		}
		name := w.Name
		if name == "" {
			name = strconv.Itoa(i)
		}
		a.workloads = append(a.workloads, workload{name: name, match: m, weight: 1 + w.Parameters.Priority, timeout: w.Parameters.QueueTimeout})
	}
	a.applyInputs()
	return a, nil
}

func newLimiter(p policies.AdaptiveConcurrencyParameters) *concurrency.Limiter {
	return concurrency.New(AdaptiveLimiterOptions(p))
}

// AdaptiveLimiterOptions are the limiter options of an
// adaptive_concurrency component's parameters, as the engine builds its
// limiter (`fluxgate sim` simulates the same limiter).
func AdaptiveLimiterOptions(p policies.AdaptiveConcurrencyParameters) concurrency.Options {
	return concurrency.Options{
		Initial: p.InitialConcurrency, Min: p.MinConcurrency, Max: p.MaxConcurrency,
		Tolerance: p.LatencyTolerance, QueueDelay: p.MaxQueueDelay, ProbeInterval: p.ProbeInterval,
	}
}

// newOptionalInput is an input port that may be absent: NaN then.
func newOptionalInput(p *policies.InPort) *inputValue {
	if p == nil {
		in := &inputValue{}
		in.set(math.NaN())
		return in
	}
	return newInput(p)
}

func (a *adaptiveConcurrency) workloadOf(labels map[string]string) *workload {
	for i := range a.workloads {
		if a.workloads[i].match.matches(labels) {
			return &a.workloads[i]
		}
	}
	return &a.fallback
}

func (a *adaptiveConcurrency) decide(ctx context.Context, now time.Time, labels map[string]string, _ float64, take bool, ld *LimiterDecision) (held hold) {
	a.describe(ld)
	w := a.workloadOf(labels)
	ld.LimitKey = w.name
	st := a.lim.State()
	ld.Limit = st.Limit
	ld.Remaining = math.Max(math.Floor(st.Limit)-float64(st.InFlight), 0)
	if !take {
		return // explain cannot predict the queue
	}
	var (
		t  concurrency.Ticket
		ok bool
	)
	if a.dryRun {
		t, ok = a.lim.AdmitNow(now) // admitted either way: it still learns
		held = hold{c: a, t: t}
	} else if t, ok = a.lim.Acquire(ctx, concurrency.Request{Workload: w.name, Weight: w.weight, Timeout: w.timeout}); ok {
		held = hold{c: a, t: t}
	}
	if !ok {
		ld.Dropped = true
		ld.Reason = ReasonNoTokens
		ld.Wait = time.Second
	}
	return
}

// waits: an enforcing limiter queues flows the limit has no room for; a
// dry run admits every flow at once.
func (a *adaptiveConcurrency) waits() waitKind {
	if a.dryRun {
		return waitsNever
	}
	return waitsSometimes
}

// tryDecide is decide, unless the flow would queue for a slot.
func (a *adaptiveConcurrency) tryDecide(ctx context.Context, now time.Time, labels map[string]string, tokens float64, ld *LimiterDecision) (held hold, decided bool) {
	if a.dryRun {
		return a.decide(ctx, now, labels, tokens, true, ld), true
	}
	a.describe(ld)
	w := a.workloadOf(labels)
	ld.LimitKey = w.name
	st := a.lim.State()
	ld.Limit = st.Limit
	ld.Remaining = math.Max(math.Floor(st.Limit)-float64(st.InFlight), 0)
	t, ok, decided := a.lim.TryAcquire(ctx, now, concurrency.Request{Workload: w.name, Weight: w.weight, Timeout: w.timeout})
	switch {
	case !decided:
		return hold{}, false
	case ok:
		held = hold{c: a, t: t}
	default:
		ld.Dropped = true
		ld.Reason = ReasonNoTokens
		ld.Wait = time.Second
	}
	return held, true
}

// undo frees the slot of a flow a later component rejected; it ran no
// workload, so there is nothing to learn.
func (a *adaptiveConcurrency) undo(now time.Time, _ map[string]string, _ float64) { a.lim.Forget(now) }

// release frees the slot of a flow this component admitted: an ended
// flow teaches the limiter its latency, an expired one nothing.
func (a *adaptiveConcurrency) release(now time.Time, h *hold, ended, failed bool) {
	if ended {
		a.lim.Release(now, h.t, failed)
		return
	}
	a.lim.Forget(now)
}

func (a *adaptiveConcurrency) maxFlowDuration() time.Duration { return a.maxFlow }

// carry keeps the learned limit when the limiter's parameters did not
// change (workloads and ports may).
func (a *adaptiveConcurrency) carry(old flowComponent) bool {
	o, ok := old.(*adaptiveConcurrency)
	if !ok {
		return false
	}
	np, op := a.spec.Parameters, o.spec.Parameters
	np.Workloads, op.Workloads = nil, nil
	np.DefaultWorkloadParameters, op.DefaultWorkloadParameters = policies.WorkloadParameters{}, policies.WorkloadParameters{}
	np.DeniedResponseStatusCode, op.DeniedResponseStatusCode = 0, 0
	if !reflect.DeepEqual(np, op) {
		return false
	}
	a.lim = o.lim
	for _, p := range []struct {
		wire     *policies.InPort
		cur, was *inputValue
	}{{a.spec.InPorts.LatencyObjectiveMs, a.objective, o.objective}, {a.spec.InPorts.MinConcurrency, a.lo, o.lo}, {a.spec.InPorts.MaxConcurrency, a.hi, o.hi}} {
		if p.wire != nil && p.wire.SignalName != "" {
			p.cur.set(p.was.get())
		}
	}
	a.applyInputs()
	return true
}

func (a *adaptiveConcurrency) setInput(port string, v float64) error {
	switch port {
	case "latency_objective_ms":
		a.objective.set(v)
	case "min_concurrency":
		a.lo.set(v)
	case "max_concurrency":
		a.hi.set(v)
	default:
		return fmt.Errorf("adaptive_concurrency has no input port %q", port)
	}
	a.applyInputs()
	return nil
}

// applyInputs hands the port values to the limiter; invalid ones leave
// the parameters in charge.
func (a *adaptiveConcurrency) applyInputs() {
	obj := a.objective.get()
	if valid(obj) && obj > 0 {
		a.lim.SetObjective(time.Duration(obj * float64(time.Millisecond)))
	} else {
		a.lim.SetObjective(0)
	}
	lo, hi := a.lo.get(), a.hi.get()
	if !valid(lo) {
		lo = math.NaN()
	}
	if !valid(hi) {
		hi = math.NaN()
	}
	a.lim.SetBounds(lo, hi)
}
