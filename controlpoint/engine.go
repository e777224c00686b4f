package controlpoint

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fluxgate/fluxgate/controlpoint/classifier"
	"github.com/fluxgate/fluxgate/controlpoint/flow"
	"github.com/fluxgate/fluxgate/controlpoint/ratelimit"
	"github.com/fluxgate/fluxgate/metricnames"
	"github.com/fluxgate/fluxgate/policies"
)

// Options configures an Engine.
type Options struct {
	// AgentGroup is this agent's group; selectors of other groups are
	// ignored. Default "default".
	AgentGroup string
	// Logger receives the sampled decision log and compile problems.
	// Nil means silent.
	Logger *slog.Logger
	// Registerer receives fluxgate_flow_decisions_total. Nil means none.
	Registerer prometheus.Registerer
	// DecisionLogPerSecond bounds the decision log: at most this many
	// rejections per second are logged. Default 10; negative disables it.
	DecisionLogPerSecond float64
	// MaxControlPoints caps how many distinct control point names appear
	// in metrics and /v1/controlpoints; the rest share the value
	// "__other__". Default 1000.
	MaxControlPoints int
	// Redis holds the buckets of rate limiters with backend: redis. Nil
	// means this agent has no Redis, and such policies are refused.
	Redis *ratelimit.RedisBackend
	// RateLimiterMemory bounds, in bytes, the buckets of each rate
	// limiter (each kind: local, lazy sync's shares, local_fallback's);
	// past it the least recently used are evicted. Default
	// ratelimit.DefaultMaxMemory (32 MiB).
	RateLimiterMemory int64
}

// Engine decides whether flows pass their control points. Check reads an
// immutable snapshot through an atomic pointer; SetPolicies builds a new
// one and swaps it in. An Engine is safe for concurrent use.
type Engine struct {
	opts      Options
	logger    *slog.Logger
	snap      atomic.Pointer[snapshot]
	decisions *prometheus.CounterVec
	remaining *prometheus.GaugeVec
	hits      *prometheus.CounterVec
	points    *pointTracker
	logLimit  *ratelimit.Limiter // decision log sampling
	flows     *flowTable         // flows holding adaptive_concurrency slots
	expired   prometheus.Counter

	mu       sync.Mutex                       // serializes SetPolicies
	compiled map[policies.Key]*compiledPolicy // guarded by mu
}

// New returns an Engine with no policies: it accepts every flow.
func New(opts Options) (*Engine, error) {
	if opts.AgentGroup == "" {
		opts.AgentGroup = policies.DefaultAgentGroup
	}
	if opts.DecisionLogPerSecond == 0 {
		opts.DecisionLogPerSecond = 10
	}
	if opts.MaxControlPoints <= 0 {
		opts.MaxControlPoints = 1000
	}
	e := &Engine{
		opts:     opts,
		logger:   opts.Logger,
		compiled: map[policies.Key]*compiledPolicy{},
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metricnames.FlowDecisionsTotal,
			Help: "Flow-control decisions by policy, component, control point, decision type and reason. Flows no component matches are counted with empty policy_name and reason no_match.",
		}, []string{metricnames.LabelPolicyName, metricnames.LabelComponentID, metricnames.LabelControlPoint, metricnames.LabelDecisionType, metricnames.LabelReason}),
		remaining: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: metricnames.RateLimiterRemainingTokens,
			Help: "Tokens left in the bucket a rate limiter used for its last decision, by policy, component and control point.",
		}, []string{metricnames.LabelPolicyName, metricnames.LabelComponentID, metricnames.LabelControlPoint}),
		hits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metricnames.RateLimitHitsTotal,
			Help: "Flows a rate limiter found without tokens (dry-run ones included), by policy, component and control point.",
		}, []string{metricnames.LabelPolicyName, metricnames.LabelComponentID, metricnames.LabelControlPoint}),
		points: newPointTracker(opts.MaxControlPoints),
		flows:  newFlowTable(),
		expired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fluxgate_flows_expired_total",
			Help: "Admitted flows whose end was not reported within their adaptive_concurrency component's max_flow_duration; their slots were freed.",
		}),
	}
	if e.logger == nil {
		e.logger = slog.New(slog.DiscardHandler)
	}
	if opts.DecisionLogPerSecond > 0 {
		e.logLimit = ratelimit.New(ratelimit.Options{Limits: ratelimit.Limits{
			Capacity: opts.DecisionLogPerSecond, FillAmount: opts.DecisionLogPerSecond, Interval: time.Second, Continuous: true,
		}})
	}
	if opts.Registerer != nil {
		for _, c := range []prometheus.Collector{e.decisions, e.remaining, e.hits, e.expired, adaptiveCollector{e}, bucketCollector{e}} {
			if err := opts.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("controlpoint: register metrics: %w", err)
			}
		}
	}
	e.snap.Store(&snapshot{points: map[string]*point{}})
	return e, nil
}

// snapshot is what Check reads: per control point, what applies there.
type snapshot struct {
	points map[string]*point
	// mayWait: a check at some control point may wait (point.mayWait).
	mayWait bool
}

// point is everything that applies at one control point, in evaluation
// order: classifiers first, then flow-control components.
type point struct {
	name        string
	classifiers []classifierRef
	components  []componentRef
	fluxMeters  []fluxMeterRef
	noMatch     prometheus.Counter
	// mayWait: a classifier runs Rego or a component may wait (MayWait);
	// tryable: TryCheck may decide here (no Rego classifier, and no
	// component that waits always).
	mayWait, tryable bool
}

type componentRef struct {
	sels     []selector // any of them selects the flow
	c        flowComponent
	info     *componentInfo
	accepted prometheus.Counter
	rejected prometheus.Counter // by the component's own reason
	// otherRejected counts rejections for another reason (a Redis limiter
	// failing closed, say), created on first use.
	otherRejected *reasonCounters
	dryRun        prometheus.Counter // would-be rejections of a dry-run component
	// Rate limiters only (nil otherwise): the tokens left after the last
	// decision, and the flows it rejected for lack of them.
	remaining prometheus.Gauge
	hits      prometheus.Counter
	// waits is how c's decide may wait; try is c as a tryDecider when it
	// may queue.
	waits waitKind
	try   tryDecider
}

type classifierRef struct {
	sels   []selector
	c      *classifier.Classifier
	policy *compiledPolicy
	index  int
}

type fluxMeterRef struct {
	sels []selector
	name string // namespace/policy/meter
}

func anyMatch(sels []selector, labels map[string]string) bool {
	for i := range sels {
		if sels[i].matches(labels) {
			return true
		}
	}
	return false
}

// compiledPolicy is a policy turned into engine parts.
type compiledPolicy struct {
	obj         *policies.Policy
	key         policies.Key
	components  []*compiledComponent
	classifiers []*compiledClassifier
	fluxMeters  []*compiledFluxMeter
}

type compiledComponent struct {
	index int
	sels  []selector
	c     flowComponent
	info  *componentInfo
}

type compiledClassifier struct {
	sels []selector
	c    *classifier.Classifier
}

type compiledFluxMeter struct {
	name string
	sels []selector
}

// Validate compiles a policy without installing it, so a policy store can
// refuse a policy the engine cannot run (a Rego module that does not
// compile, say) and keep its last good version.
func (e *Engine) Validate(obj policies.Object) error {
	p, ok := obj.(*policies.Policy)
	if !ok {
		return nil
	}
	_, err := e.compile(p)
	return err
}

func (e *Engine) compile(p *policies.Policy) (*compiledPolicy, error) {
	cp := &compiledPolicy{obj: p, key: p.Key()}
	var errs []error
	for i, c := range p.Spec.Circuit.Components {
		info := componentInfo{policyName: p.Metadata.Name, policyNamespace: p.Metadata.Namespace, id: strconv.Itoa(i)}
		fc, sels, ok, err := buildKind(info, c.Spec, &e.opts)
		if !ok {
			continue // not a flow-control component: the circuit runs it
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("spec.circuit.components[%d]: %w", i, err))
			continue
		}
		compiled, err := compileSelectors(sels, e.opts.AgentGroup)
		if err != nil {
			errs = append(errs, fmt.Errorf("spec.circuit.components[%d]: %w", i, err))
			continue
		}
		cp.components = append(cp.components, &compiledComponent{index: i, sels: compiled, c: fc, info: fc.info()})
	}
	for i, c := range p.Spec.Resources.Classifiers {
		sels, err := compileSelectors(c.Selectors, e.opts.AgentGroup)
		if err != nil {
			errs = append(errs, fmt.Errorf("spec.resources.classifiers[%d]: %w", i, err))
			continue
		}
		cl, err := classifier.New(c)
		if err != nil {
			errs = append(errs, fmt.Errorf("spec.resources.classifiers[%d]: %w", i, err))
			continue
		}
		cp.classifiers = append(cp.classifiers, &compiledClassifier{sels: sels, c: cl})
	}
	names := make([]string, 0, len(p.Spec.Resources.FluxMeters))
	for n := range p.Spec.Resources.FluxMeters {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		sels, err := compileSelectors(p.Spec.Resources.FluxMeters[n].Selectors, e.opts.AgentGroup)
		if err != nil {
			errs = append(errs, fmt.Errorf("spec.resources.flux_meters.%s: %w", n, err))
			continue
		}
		cp.fluxMeters = append(cp.fluxMeters, &compiledFluxMeter{name: cp.key.Namespace + "/" + cp.key.Name + "/" + n, sels: sels})
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("policy %s: %w", cp.key, errors.Join(errs...))
	}
	return cp, nil
}

// SetPolicies replaces the engine's policies. Policies whose object is the
// same pointer as before are kept as they are; a changed policy keeps the
// runtime state (buckets) of components whose fundamentals did not change.
// A policy that fails to compile is left out and reported in the error;
// the others are installed.
func (e *Engine) SetPolicies(objs []*policies.Policy) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	next := make(map[policies.Key]*compiledPolicy, len(objs))
	var errs []error
	for _, p := range objs {
		key := p.Key()
		old := e.compiled[key]
		if old != nil && old.obj == p {
			next[key] = old
			continue
		}
		cp, err := e.compile(p)
		if err != nil {
			errs = append(errs, err)
			if old != nil {
				next[key] = old // keep running the last version that compiled
			}
			continue
		}
		if old != nil {
			carryState(old, cp)
		}
		next[key] = cp
	}
	e.compiled = next
	old := e.snap.Load()
	cur := e.build(next)
	e.snap.Store(cur)
	e.dropStaleSeries(old, cur)
	return errors.Join(errs...)
}

// carryState hands the runtime state of old's components to cp's
// components at the same index and of the same kind.
func carryState(old, cp *compiledPolicy) {
	byIndex := make(map[int]*compiledComponent, len(old.components))
	for _, c := range old.components {
		byIndex[c.index] = c
	}
	for _, c := range cp.components {
		if o := byIndex[c.index]; o != nil {
			c.c.carry(o.c)
		}
	}
}

// build assembles the per-control-point snapshot from compiled policies,
// in policy key order, so evaluation order is stable.
func (e *Engine) build(compiled map[policies.Key]*compiledPolicy) *snapshot {
	keys := make([]policies.Key, 0, len(compiled))
	for k := range compiled {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].Namespace != keys[j].Namespace {
			return keys[i].Namespace < keys[j].Namespace
		}
		return keys[i].Name < keys[j].Name
	})
	s := &snapshot{points: map[string]*point{}}
	pointOf := func(name string) *point {
		pt := s.points[name]
		if pt == nil {
			pt = &point{name: name, noMatch: e.decisions.WithLabelValues("", "", name, metricnames.DecisionAccepted, metricnames.ReasonNoMatch)}
			s.points[name] = pt
		}
		return pt
	}
	for _, k := range keys {
		cp := compiled[k]
		for _, c := range cp.components {
			for name, sels := range byControlPoint(c.sels) {
				pt := pointOf(name)
				cpl := name
				pol, id := c.info.policyName, c.info.id
				ref := componentRef{
					sels:          sels,
					c:             c.c,
					info:          c.info,
					accepted:      e.decisions.WithLabelValues(pol, id, cpl, metricnames.DecisionAccepted, metricnames.ReasonNone),
					rejected:      e.decisions.WithLabelValues(pol, id, cpl, metricnames.DecisionRejected, flow.ReasonLabel(rejectReasonOf(c.c))),
					otherRejected: &reasonCounters{vec: e.decisions, labels: [3]string{pol, id, cpl}},
					dryRun:        e.decisions.WithLabelValues(pol, id, cpl, metricnames.DecisionAccepted, "dry_run_"+flow.ReasonLabel(rejectReasonOf(c.c))),
				}
				if _, ok := c.c.(*rateLimiter); ok {
					ref.remaining = e.remaining.WithLabelValues(pol, id, cpl)
					ref.hits = e.hits.WithLabelValues(pol, id, cpl)
				}
				ref.waits, ref.try = waitsOf(c.c)
				pt.components = append(pt.components, ref)
			}
		}
		for i, c := range cp.classifiers {
			for name, sels := range byControlPoint(c.sels) {
				pt := pointOf(name)
				pt.classifiers = append(pt.classifiers, classifierRef{sels: sels, c: c.c, policy: cp, index: i})
			}
		}
		for _, fm := range cp.fluxMeters {
			for name, sels := range byControlPoint(fm.sels) {
				pt := pointOf(name)
				pt.fluxMeters = append(pt.fluxMeters, fluxMeterRef{sels: sels, name: fm.name})
			}
		}
	}
	for _, pt := range s.points {
		pt.tryable = true
		for i := range pt.classifiers {
			if pt.classifiers[i].c.UsesRego() {
				pt.mayWait, pt.tryable = true, false
			}
		}
		for i := range pt.components {
			switch pt.components[i].waits {
			case waitsAlways:
				pt.mayWait, pt.tryable = true, false
			case waitsSometimes:
				pt.mayWait = true
			}
		}
		s.mayWait = s.mayWait || pt.mayWait
	}
	return s
}

func rejectReasonOf(fc flowComponent) Reason {
	switch fc.(type) {
	case *sampler:
		return ReasonNotSampled
	case *loadScheduler, *quotaScheduler, *concurrencyLimiter:
		return ReasonNoTokens
	}
	return ReasonRateLimited
}

// byControlPoint groups selectors by their control point.
func byControlPoint(sels []selector) map[string][]selector {
	out := map[string][]selector{}
	for _, s := range sels {
		out[s.controlPoint] = append(out[s.controlPoint], s)
	}
	return out
}

// dropStaleSeries deletes the decision series of components that are gone,
// so a removed policy leaves no series behind.
func (e *Engine) dropStaleSeries(old, cur *snapshot) {
	keep := map[string]bool{}
	for _, pt := range cur.points {
		for _, r := range pt.components {
			keep[r.info.policyName+"\x00"+r.info.id+"\x00"+pt.name] = true
		}
	}
	for _, pt := range old.points {
		for _, r := range pt.components {
			if keep[r.info.policyName+"\x00"+r.info.id+"\x00"+pt.name] {
				continue
			}
			l := prometheus.Labels{metricnames.LabelPolicyName: r.info.policyName, metricnames.LabelComponentID: r.info.id, metricnames.LabelControlPoint: pt.name}
			e.decisions.DeletePartialMatch(l)
			e.remaining.Delete(l)
			e.hits.Delete(l)
		}
	}
}

// Check decides whether the flow in req passes its control point, writing
// the answer into d (which it resets first). It never blocks on I/O.
func (e *Engine) Check(ctx context.Context, now time.Time, req *Request, d *Decision) {
	e.check(ctx, now, req, d, e.snap.Load().points[req.ControlPoint], false)
}

// check is Check of the flow at pt (nil: no policy there) and, with try,
// TryCheck: it reports false, having given back what the flow took and
// counted nothing, when a component could not decide without waiting.
func (e *Engine) check(ctx context.Context, now time.Time, req *Request, d *Decision, pt *point, try bool) bool {
	d.Reset(req.ControlPoint)
	st := e.points.observe(req.ControlPoint, req.Labels)
	if pt == nil {
		if req.RampMode {
			e.noRamp(now, req.ControlPoint, d)
			return true
		}
		e.noMatch(req.ControlPoint)
		return true
	}
	if len(pt.classifiers) > 0 {
		e.classify(ctx, pt, req, d)
	}
	labels := req.Labels
	for i := range pt.fluxMeters {
		if anyMatch(pt.fluxMeters[i].sels, labels) {
			d.FluxMeters = append(d.FluxMeters, pt.fluxMeters[i].name)
		}
	}
	if req.RampMode && !pt.rampSelects(labels) {
		e.noRamp(now, req.ControlPoint, d)
		return true
	}
	tokens := req.Tokens
	if tokens <= 0 {
		tokens = 1
	}
	// What the caller's Decision does not carry, on the stack: a check
	// matches few components, and fewer hold slots.
	var (
		markBuf [8]mark
		holdBuf [2]hold
	)
	marks, holds := markBuf[:0], holdBuf[:0]
	matched := false
	for i := range pt.components {
		ref := &pt.components[i]
		if !anyMatch(ref.sels, labels) {
			continue
		}
		matched = true
		d.Limiters = append(d.Limiters, LimiterDecision{})
		ld := &d.Limiters[len(d.Limiters)-1]
		var held hold
		switch _, holder := ref.c.(slotHolder); {
		case holder && req.NoFlowEnd:
			ref.info.describe(ld)
			ld.PassThrough = true
		case try && ref.try != nil:
			var decided bool
			if held, decided = ref.try.tryDecide(ctx, now, labels, tokens, ld); !decided {
				e.untry(now, pt, labels, tokens, d.Limiters[:len(d.Limiters)-1], marks)
				st.checks.Add(^uint64(0)) // Check counts the flow
				return false
			}
		default:
			held = ref.c.decide(ctx, now, labels, tokens, true, ld)
		}
		marks = append(marks, mark{ref: i, held: held.c != nil})
		if held.c != nil {
			holds = append(holds, held)
		}
		if ld.Dropped && !ld.DryRun {
			d.Accepted = false
			d.Decider = len(d.Limiters) - 1
			d.Reason, d.StatusCode, d.Wait = ld.Reason, ld.StatusCode, ld.Wait
			break
		}
	}
	// Counted once decided: a try that stops counts nothing.
	for j := range marks {
		e.count(&pt.components[marks[j].ref], &d.Limiters[j])
	}
	if !d.Accepted {
		e.undo(now, pt, labels, tokens, d.Limiters[:d.Decider], marks)
		e.logDecision(now, d)
	}
	if !matched {
		pt.noMatch.Inc()
	}
	if d.Accepted && len(holds) > 0 {
		d.FlowID = e.flows.add(now, holds)
	}
	return true
}

// count counts the decision ld of the component of ref.
func (e *Engine) count(ref *componentRef, ld *LimiterDecision) {
	if ref.remaining != nil && !ld.PassThrough {
		ref.remaining.Set(ld.Remaining)
		if ld.Dropped && ld.Reason == ReasonRateLimited {
			ref.hits.Inc()
		}
	}
	switch {
	case !ld.Dropped:
		ref.accepted.Inc()
	case ld.DryRun:
		ref.dryRun.Inc()
	case ld.Reason == rejectReasonOf(ref.c):
		ref.rejected.Inc()
	default:
		ref.otherRejected.get(ld.Reason).Inc()
	}
}

// MayWait reports whether Check at controlPoint may wait, with the
// policies installed now: a scheduler (load, quota, concurrency) or an
// adaptive_concurrency limiter may queue the flow, a rate limiter kept in
// Redis in exact mode makes a round trip, and a Rego classifier evaluates
// a module. Local and lazily synced rate limiters, samplers, concurrency
// limiters (whose flows never wait), flux meters and classifiers without
// Rego answer at once. TryCheck decides on the spot what Check would
// without waiting; MayWait says whether Check can be called where it
// must not wait at all.
func (e *Engine) MayWait(controlPoint string) bool {
	pt := e.snap.Load().points[controlPoint]
	return pt != nil && pt.mayWait
}

// AnyMayWait reports whether a check at any control point may wait
// (MayWait), for a caller that learns the control point only by decoding
// the request.
func (e *Engine) AnyMayWait() bool { return e.snap.Load().mayWait }

// EndFlow reports that the admitted flow with id (a Decision's FlowID)
// ended at now, failed or not: the slots held for it are freed, and the
// components that hold them learn its latency. It reports whether the
// flow was held: false for an id ended already, freed after its
// max_flow_duration, or never issued.
func (e *Engine) EndFlow(now time.Time, id uint64, failed bool) bool {
	if id == 0 {
		return false
	}
	return e.flows.end(now, id, failed)
}

// undo gives back the tokens that earlier components took for a flow that
// was rejected after all.
func (e *Engine) undo(now time.Time, pt *point, labels map[string]string, tokens float64, earlier []LimiterDecision, marks []mark) {
	for i := range earlier {
		if tookTokens(&earlier[i], marks[i]) {
			pt.components[marks[i].ref].c.undo(now, labels, tokens)
		}
	}
}

// rampSelects reports whether a ramp (a sampler in ramp_mode) selects a
// flow with labels.
func (pt *point) rampSelects(labels map[string]string) bool {
	for i := range pt.components {
		if s, ok := pt.components[i].c.(*sampler); ok && s.spec.Parameters.RampMode && anyMatch(pt.components[i].sels, labels) {
			return true
		}
	}
	return false
}

// noRamp rejects a ramp-mode flow that no ramp selected, as Aperture does:
// 403, reason no_matching_ramp, no component named.
func (e *Engine) noRamp(now time.Time, cp string, d *Decision) {
	d.Accepted = false
	d.Reason = ReasonNoMatchingRamp
	d.StatusCode = 403
	e.points.noRampCounter(cp, e.decisions).Inc()
	e.logDecision(now, d)
}

func (e *Engine) noMatch(cp string) {
	e.points.noMatchCounter(cp, e.decisions).Inc()
}

func (e *Engine) classify(ctx context.Context, pt *point, req *Request, d *Decision) {
	if req.Labels == nil {
		req.Labels = map[string]string{}
	}
	ctx = classifier.WithBudget(ctx) // one Rego budget for the whole check
	for i := range pt.classifiers {
		ref := &pt.classifiers[i]
		if !anyMatch(ref.sels, req.Labels) {
			continue
		}
		res := ClassifierResult{PolicyName: ref.policy.key.Name, PolicyNamespace: ref.policy.key.Namespace, Index: ref.index}
		labels, err := ref.c.Classify(ctx, req.ControlPoint, req.Labels)
		if err != nil {
			res.Error = err.Error()
		}
		for k, v := range labels {
			req.Labels[k] = v
		}
		res.Labels = labels
		d.Classifiers = append(d.Classifiers, res)
	}
}

// logDecision writes a rejection to the sampled decision log.
func (e *Engine) logDecision(now time.Time, d *Decision) {
	if e.logLimit == nil || !e.logLimit.Take(now, "", 1).Allowed {
		return
	}
	r := d.Rejector()
	if r == nil {
		e.logger.Info("flow rejected", "control_point", d.ControlPoint, "reason", flow.ReasonLabel(d.Reason))
		return
	}
	e.logger.Info("flow rejected",
		"control_point", d.ControlPoint,
		"policy_name", r.PolicyName,
		"policy_namespace", r.PolicyNamespace,
		"component_id", r.ComponentID,
		"component_type", r.ComponentType,
		"reason", flow.ReasonLabel(r.Reason),
		"limit_key", r.LimitKey,
		"remaining", r.Remaining,
		"wait", r.Wait,
	)
}

// Run drops idle rate-limiter buckets every SweepInterval and frees, every
// second, the slots of flows whose end was not reported within their
// max_flow_duration, until ctx is done. It is the only goroutine the
// engine needs.
func (e *Engine) Run(ctx context.Context) {
	t := time.NewTicker(SweepInterval)
	defer t.Stop()
	flows := time.NewTicker(time.Second)
	defer flows.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			e.Sweep(now)
		case now := <-flows.C:
			e.expired.Add(float64(e.flows.expire(now)))
		}
	}
}

// SweepInterval is how often Run drops idle buckets.
const SweepInterval = time.Minute

// Sweep drops the buckets that have been idle longer than their limiter's
// max_idle_time and returns how many it dropped.
func (e *Engine) Sweep(now time.Time) int {
	n := 0
	for _, r := range componentsOf[*rateLimiter](e) {
		n += r.sweep(now)
	}
	for _, q := range componentsOf[*quotaScheduler](e) {
		n += q.sweep(now)
	}
	return n
}

// componentsOf lists the installed flow-control components of type T.
func componentsOf[T flowComponent](e *Engine) []T {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []T
	for _, cp := range e.compiled {
		for _, c := range cp.components {
			if x, ok := c.c.(T); ok {
				out = append(out, x)
			}
		}
	}
	return out
}

// MatchFluxMeters appends to dst the flux meters ("namespace/policy/name")
// whose selectors match a flow at controlPoint with labels, and returns
// it. Classifiers do not run. It lets the flux meter processor place spans
// that do not name their flux meters.
func (e *Engine) MatchFluxMeters(controlPoint string, labels map[string]string, dst []string) []string {
	pt := e.snap.Load().points[controlPoint]
	if pt == nil {
		return dst
	}
	for i := range pt.fluxMeters {
		if anyMatch(pt.fluxMeters[i].sels, labels) {
			dst = append(dst, pt.fluxMeters[i].name)
		}
	}
	return dst
}

// SetComponentInput sets a signal-driven input port of a flow-control
// component: the circuit of policy key calls it every tick (it implements
// circuit.ActuatorSink). component is the index in spec.circuit.components;
// NaN means the signal has no valid value, and the component falls back to
// its declared mode (pass-through). The new value applies to the next
// Check.
func (e *Engine) SetComponentInput(key policies.Key, component int, port string, value float64) error {
	e.mu.Lock()
	cp := e.compiled[key]
	e.mu.Unlock()
	if cp == nil {
		return fmt.Errorf("controlpoint: no policy %s", key)
	}
	for _, c := range cp.components {
		if c.index == component {
			return c.c.setInput(port, value)
		}
	}
	return fmt.Errorf("controlpoint: policy %s has no flow-control component %d", key, component)
}

// reasonCounters holds the rejection counters of one component at one
// control point for reasons other than its own, created on first use.
type reasonCounters struct {
	vec      *prometheus.CounterVec
	labels   [3]string // policy_name, component_id, control_point
	mu       sync.Mutex
	byReason map[Reason]prometheus.Counter // guarded by mu
}

func (r *reasonCounters) get(reason Reason) prometheus.Counter {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.byReason[reason]
	if c == nil {
		if r.byReason == nil {
			r.byReason = map[Reason]prometheus.Counter{}
		}
		c = r.vec.WithLabelValues(r.labels[0], r.labels[1], r.labels[2], metricnames.DecisionRejected, flow.ReasonLabel(reason))
		r.byReason[reason] = c
	}
	return c
}
