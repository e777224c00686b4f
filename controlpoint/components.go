package controlpoint

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fluxgate/fluxgate/controlpoint/flow"
	"github.com/fluxgate/fluxgate/controlpoint/ratelimit"
	"github.com/fluxgate/fluxgate/policies"
)

// flowComponent is a compiled flow-control component. Implementations are
// safe for concurrent use.
type flowComponent interface {
	// decide fills ld (whose identity fields are already set) for a flow.
	// With take false (explain) it changes no state. ctx carries the
	// caller's deadline, for components that may wait or call out. It
	// returns the slot a slotHolder holds for the flow (held.c is the
	// component), or the zero hold: other components hold none.
	decide(ctx context.Context, now time.Time, labels map[string]string, tokens float64, take bool, ld *LimiterDecision) (held hold)
	// undo gives back what decide took, for a flow that a later component
	// rejected.
	undo(now time.Time, labels map[string]string, tokens float64)
	// carry adopts the runtime state of the previous version of the same
	// component when its fundamentals did not change, and reports whether
	// it did.
	carry(old flowComponent) bool
	// info is the component's identity.
	info() *componentInfo
	// setInput sets a signal-driven input port; NaN means no valid value.
	setInput(port string, v float64) error
}

// componentInfo is what every compiled component knows about itself.
type componentInfo struct {
	policyName      string
	policyNamespace string
	id              string
	typ             string
	dryRun          bool
	statusCode      int
}

func (c *componentInfo) info() *componentInfo { return c }

// describe starts a decision with the component's identity.
func (c *componentInfo) describe(ld *LimiterDecision) {
	*ld = LimiterDecision{
		PolicyName:      c.policyName,
		PolicyNamespace: c.policyNamespace,
		ComponentID:     c.id,
		ComponentType:   c.typ,
		DryRun:          c.dryRun,
		StatusCode:      c.statusCode,
	}
}

// inputValue is a port value that a circuit may change at run time; a
// constant port is set once at compile time. NaN means "no valid value".
type inputValue struct{ bits atomic.Uint64 }

func newInput(p *policies.InPort) *inputValue {
	in := &inputValue{}
	v, ok := p.Constant()
	if !ok {
		v = math.NaN() // a signal: invalid until the circuit writes it
	}
	in.set(v)
	return in
}

func (in *inputValue) set(v float64) { in.bits.Store(math.Float64bits(v)) }
func (in *inputValue) get() float64  { return math.Float64frombits(in.bits.Load()) }

// passPort is Aperture's pass_through port of a limiter or scheduler:
// while its value is true (valid and not 0) the component admits every
// flow at once. The zero passPort (no port) never passes.
type passPort struct {
	port *policies.InPort
	in   *inputValue // nil without a port
}

func newPassPort(p *policies.InPort) passPort {
	if p == nil {
		return passPort{}
	}
	return passPort{port: p, in: newInput(p)}
}

// on reports whether flows pass.
func (p passPort) on() bool {
	if p.in == nil {
		return false
	}
	v := p.in.get()
	return !math.IsNaN(v) && v != 0
}

// set writes the port, as a circuit does.
func (p passPort) set(v float64) error {
	if p.in == nil {
		return fmt.Errorf("in_ports.pass_through is not wired")
	}
	p.in.set(v)
	return nil
}

// carry keeps old's signal value when the port reads a signal.
func (p passPort) carry(old passPort) {
	if p.in == nil || old.in == nil {
		return
	}
	if _, ok := p.port.Constant(); !ok {
		p.in.set(old.in.get())
	}
}

// valid reports whether v can drive an actuator.
func valid(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) && v >= 0 }

// rateLimiter is a compiled flow_control.rate_limiter. With backend
// redis its buckets live in Redis (redis) and lim holds the local_fallback
// buckets (with lazy_sync, redis holds the local shares itself);
// otherwise lim holds the buckets. keyOf picks a flow's bucket.
type rateLimiter struct {
	componentInfo
	spec     *policies.RateLimiter
	params   policies.RateLimiterParameters // spec.Parameters with defaults
	capacity *inputValue
	fill     *inputValue
	pass     passPort
	lim      *ratelimit.Limiter
	redis    *ratelimit.RedisLimiter // nil for backend local
	keyOf    ratelimit.KeyFunc       // nil: every flow shares the bucket ""
}

var _ flowComponent = (*rateLimiter)(nil)

// errNoRedis refuses a backend: redis limiter on an agent without Redis.
var errNoRedis = errors.New("flow_control.rate_limiter: parameters.backend is redis, but this agent has no Redis: set redis.address (or redis.addresses) in the agent configuration")

func init() {
	registerKind(func(info componentInfo, s *policies.RateLimiter, o *Options) (flowComponent, []policies.Selector, error) {
		r, err := newRateLimiter(info, s, o.Redis, o.RateLimiterMemory)
		return r, s.Selectors, err
	})
	registerKind(func(info componentInfo, s *policies.Sampler, _ *Options) (flowComponent, []policies.Selector, error) {
		return newSampler(info, s), s.Selectors, nil
	})
}

// newRateLimiter compiles spec; each kind of bucket it holds (local,
// lazy sync's shares, local_fallback's) keeps within maxMemory bytes
// (0: ratelimit.DefaultMaxMemory).
func newRateLimiter(info componentInfo, spec *policies.RateLimiter, rb *ratelimit.RedisBackend, maxMemory int64) (*rateLimiter, error) {
	info.typ = "rate_limiter"
	info.dryRun = spec.DryRun
	info.statusCode = spec.RequestParameters.DeniedResponseStatusCode
	if info.statusCode == 0 {
		info.statusCode = 429
	}
	r := &rateLimiter{
		componentInfo: info,
		spec:          spec,
		params:        spec.Parameters.WithDefaults(),
		capacity:      newInput(spec.InPorts.BucketCapacity),
		fill:          newInput(spec.InPorts.FillAmount),
		pass:          newPassPort(spec.InPorts.PassThrough),
	}
	var err error
	if r.keyOf, err = keyFunc(&spec.Parameters); err != nil {
		return nil, err
	}
	if r.params.Backend != policies.BackendRedis {
		r.lim = ratelimit.New(ratelimit.Options{
			Limits:           r.limits(),
			MaxIdle:          spec.Parameters.MaxIdleTime,
			DelayInitialFill: spec.Parameters.DelayInitialFill,
			MaxMemory:        maxMemory,
		})
		return r, nil
	}
	if rb == nil {
		return nil, errNoRedis
	}
	numSync, _ := r.params.Lazy()
	r.redis = rb.NewLimiter(ratelimit.RedisLimiterOptions{
		Scope:            info.policyNamespace + "/" + info.policyName + ":" + info.id,
		Algorithm:        ratelimit.Algorithm(r.params.Algorithm),
		Limits:           r.limits(),
		Timeout:          r.params.RedisTimeout,
		FailureMode:      ratelimit.FailureMode(r.params.FailureMode),
		FallbackShare:    r.params.LocalFallbackShare,
		MaxIdle:          spec.Parameters.MaxIdleTime,
		DelayInitialFill: spec.Parameters.DelayInitialFill,
		MaxMemory:        maxMemory,
		NumSync:          numSync,
	})
	r.lim = r.redis.Fallback()
	return r, nil
}

// keyFunc builds the bucket key of limit_by_label_key or key_extractor;
// nil when neither is set.
func keyFunc(p *policies.RateLimiterParameters) (ratelimit.KeyFunc, error) {
	if p.LimitByLabelKey != "" {
		return ratelimit.LabelKey(p.LimitByLabelKey), nil
	}
	if p.KeyExtractor == "" {
		return nil, nil
	}
	kind, arg, err := policies.ParseKeyExtractor(p.KeyExtractor)
	if err != nil {
		return nil, fmt.Errorf("flow_control.rate_limiter: parameters.key_extractor: %w", err)
	}
	switch kind {
	case policies.KeyHeader:
		return ratelimit.LabelKey(flow.HeaderLabel(arg)), nil
	case policies.KeyIP:
		return ratelimit.IPKey(flow.LabelSourceAddress, flow.HeaderLabel("X-Forwarded-For"), p.TrustedProxies), nil
	case policies.KeyAPIKey:
		return ratelimit.APIKey(flow.HeaderLabel("Authorization"), flow.HeaderLabel("X-API-Key")), nil
	}
	return ratelimit.LabelKey(arg), nil
}

// setLimits applies the current port values to the buckets.
func (r *rateLimiter) setLimits() {
	if r.redis != nil {
		r.redis.SetLimits(r.limits())
		return
	}
	r.lim.SetLimits(r.limits())
}

func (r *rateLimiter) limits() ratelimit.Limits {
	return ratelimit.Limits{
		Capacity:   r.capacity.get(),
		FillAmount: r.fill.get(),
		Interval:   r.spec.Parameters.Interval,
		Continuous: r.spec.Parameters.Continuous(),
	}
}

// sweep drops idle buckets: the local ones (or the local fallback of a
// Redis limiter) and the local shares of lazy sync.
func (r *rateLimiter) sweep(now time.Time) int {
	n := 0
	if r.lim != nil {
		n += r.lim.Sweep(now)
	}
	if r.redis != nil {
		n += r.redis.SweepLazy(now)
	}
	return n
}

// buckets is how many buckets the limiter holds on this agent, their
// memory as counted against the budget, and how many it evicted.
func (r *rateLimiter) buckets() (n int, bytes int64, evictions uint64) {
	if r.lim != nil {
		n, bytes, evictions = r.lim.Len(), r.lim.Bytes(), r.lim.Evictions()
	}
	if r.redis != nil {
		n += r.redis.LazyLen()
		bytes += r.redis.LazyBytes()
		evictions += r.redis.LazyEvictions()
	}
	return n, bytes, evictions
}

// setInput changes the bucket capacity or fill amount, as a circuit does
// every tick. Existing buckets are clamped on their next use.
func (r *rateLimiter) setInput(port string, v float64) error {
	switch port {
	case "bucket_capacity":
		r.capacity.set(v)
	case "fill_amount":
		r.fill.set(v)
	case "pass_through":
		return r.pass.set(v)
	default:
		return fmt.Errorf("rate_limiter has no input port %q", port)
	}
	if valid(r.capacity.get()) && valid(r.fill.get()) {
		r.setLimits()
	}
	return nil
}

// cost is what a flow takes from the bucket: the value of its
// tokens_label_key label when that is a finite number above 0, else the
// request's tokens. A value ≤ 0 would let a client through for free, so it
// costs the default like NaN, ±Inf and unparsable ones. A value the
// request's W3C baggage carries for that key is never a cost: any client
// writes its baggage, and baggage fills in a label the caller of Check (the
// gateway, the SDK) or a classifier did not set. Header labels
// (http.request.header.*) are the client's too: a policy that names one
// trusts its clients to state their cost.
func (r *rateLimiter) cost(labels map[string]string, tokens float64) float64 {
	return labelCost(labels, r.spec.RequestParameters.TokensLabelKey, tokens)
}

// labelCost is the value of the label key as a cost, by the rules of
// rateLimiter.cost, or tokens.
func labelCost(labels map[string]string, key string, tokens float64) float64 {
	if key == "" {
		return tokens
	}
	if v, ok := labels[key]; ok && !fromBaggage(labels, key, v) {
		if f, err := strconv.ParseFloat(v, 64); err == nil && f > 0 && !math.IsInf(f, 1) {
			return f
		}
	}
	return tokens
}

// fromBaggage reports whether labels[k] == v may have come from the
// request's baggage header, which HTTPLabels adds under keys nothing else
// set.
func fromBaggage(labels map[string]string, k, v string) bool {
	b, ok := labels[baggageLabel]
	if !ok || !strings.Contains(b, k) {
		return false
	}
	members := make(map[string]string, 1)
	flow.ParseBaggage(b, members)
	bv, ok := members[k]
	return ok && bv == v
}

// key is the flow's bucket: "" when the limiter has no key, UnknownKey
// when the flow lacks it. A key over ratelimit.MaxKeyBytes is bounded
// (ratelimit.BoundKey) here, so the decision, the decision log and Redis
// all see the key the bucket is kept under.
func (r *rateLimiter) key(labels map[string]string) string {
	if r.keyOf == nil {
		return ""
	}
	if k, ok := r.keyOf(labels); ok {
		return ratelimit.BoundKey(k)
	}
	return ratelimit.UnknownKey
}

// decide asks the local buckets, or Redis within ctx and redis_timeout.
// When Redis does not decide, the failure mode does, and ld.Failure says
// so: fail_open admits as a pass-through (nothing to give back),
// fail_closed rejects with FAILED_CLOSED and status 503, local_fallback
// asks this agent's share bucket.
func (r *rateLimiter) decide(ctx context.Context, now time.Time, labels map[string]string, tokens float64, take bool, ld *LimiterDecision) (held hold) {
	r.describe(ld)
	ld.LimitKey = r.key(labels)
	if r.pass.on() || !valid(r.capacity.get()) || !valid(r.fill.get()) {
		ld.PassThrough = true
		return
	}
	n := r.cost(labels, tokens)
	var res ratelimit.Result
	switch {
	case r.redis != nil:
		var rr ratelimit.RedisResult
		if take {
			rr = r.redis.Take(ctx, now, ld.LimitKey, n)
		} else {
			rr = r.redis.Peek(ctx, now, ld.LimitKey, n)
		}
		res = rr.Result
		if rr.Failure != "" {
			ld.Failure = r.params.FailureMode + ": " + rr.Failure
			switch r.params.FailureMode {
			case policies.FailOpen:
				ld.PassThrough = true
				ld.Limit = res.Limit
				return
			case policies.FailClosed:
				ld.Limit = res.Limit
				ld.Dropped = true
				ld.Reason = ReasonFailedClosed
				ld.StatusCode = 503
				return
			}
		}
	case take:
		res = r.lim.Take(now, ld.LimitKey, n)
	default:
		res = r.lim.Peek(now, ld.LimitKey, n)
	}
	ld.Remaining, ld.Limit, ld.Wait, ld.Reset = res.Remaining, res.Limit, res.Wait, res.Reset
	if !res.Allowed {
		ld.Dropped = true
		ld.Reason = ReasonRateLimited
	}
	return
}

// waits: local buckets, and lazy sync's local shares, answer at once;
// Redis in exact mode is a round trip.
func (r *rateLimiter) waits() waitKind {
	if r.redis != nil && !r.redis.Lazy() {
		return waitsAlways
	}
	return waitsNever
}

// undo gives the tokens back. undo has no caller context, so a Redis
// limiter's call is bounded by redis_timeout alone.
func (r *rateLimiter) undo(now time.Time, labels map[string]string, tokens float64) {
	if r.redis != nil {
		r.redis.Return(context.Background(), now, r.key(labels), r.cost(labels, tokens))
		return
	}
	r.lim.Return(now, r.key(labels), r.cost(labels, tokens))
}

// carry keeps the buckets when the bucket identity (key, interval, fill
// mode) is unchanged; new capacity and fill apply to them at once.
func (r *rateLimiter) carry(old flowComponent) bool {
	o, ok := old.(*rateLimiter)
	if !ok {
		return false
	}
	op, np := o.params, r.params
	if op.LimitByLabelKey != np.LimitByLabelKey || op.KeyExtractor != np.KeyExtractor || op.TrustedProxies != np.TrustedProxies ||
		op.Interval != np.Interval || op.Continuous() != np.Continuous() || op.MaxIdleTime != np.MaxIdleTime || op.DelayInitialFill != np.DelayInitialFill {
		return false
	}
	// A Redis limiter's buckets stay in Redis whatever happens here; what
	// is carried is its local_fallback buckets, so the backend settings
	// must match.
	if op.Backend != np.Backend || op.Algorithm != np.Algorithm || op.FailureMode != np.FailureMode ||
		op.RedisTimeout != np.RedisTimeout || op.LocalFallbackShare != np.LocalFallbackShare {
		return false
	}
	oSync, oLazy := op.Lazy()
	if nSync, nLazy := np.Lazy(); oSync != nSync || oLazy != nLazy {
		return false
	}
	// A port that reads a signal keeps the signal's last value.
	r.pass.carry(o.pass)
	if _, ok := r.spec.InPorts.BucketCapacity.Constant(); !ok {
		r.capacity.set(o.capacity.get())
	}
	if _, ok := r.spec.InPorts.FillAmount.Constant(); !ok {
		r.fill.set(o.fill.get())
	}
	r.lim, r.redis = o.lim, o.redis
	if valid(r.capacity.get()) && valid(r.fill.get()) {
		r.setLimits()
	}
	return true
}

// sampler is a compiled flow_control.sampler.
type sampler struct {
	componentInfo
	spec        *policies.Sampler
	pct         *inputValue
	passThrough map[string]struct{} // session values always admitted
}

var _ flowComponent = (*sampler)(nil)

func newSampler(info componentInfo, spec *policies.Sampler) *sampler {
	info.typ = "sampler"
	info.dryRun = spec.DryRun
	info.statusCode = spec.Parameters.DeniedResponseStatusCode
	if info.statusCode == 0 {
		info.statusCode = 403
	}
	s := &sampler{componentInfo: info, spec: spec, pct: newInput(spec.InPorts.AcceptPercentage)}
	if len(spec.PassThroughLabelValues) > 0 {
		s.passThrough = make(map[string]struct{}, len(spec.PassThroughLabelValues))
		for _, v := range spec.PassThroughLabelValues {
			s.passThrough[v] = struct{}{}
		}
	}
	return s
}

// setInput changes the accept percentage, as a circuit does.
func (s *sampler) setInput(port string, v float64) error {
	if port != "accept_percentage" {
		return fmt.Errorf("sampler has no input port %q", port)
	}
	s.pct.set(v)
	return nil
}

func (s *sampler) decide(_ context.Context, _ time.Time, labels map[string]string, _ float64, take bool, ld *LimiterDecision) (held hold) {
	s.describe(ld)
	var session string // the session label's value; "" without one
	k := s.spec.Parameters.SessionLabelKey
	hasSession := false
	if k != "" {
		session, hasSession = labels[k]
		ld.LimitKey = session
	}
	if _, ok := s.passThrough[session]; ok {
		return
	}
	pct := s.pct.get()
	if !valid(pct) {
		if s.spec.Parameters.RampMode {
			// A ramp that has no percentage yet admits nothing.
			ld.Dropped = true
			ld.Reason = ReasonNotSampled
			return
		}
		ld.PassThrough = true
		return
	}
	ld.Limit = pct
	var u float64 // uniform in [0, 100)
	switch {
	case hasSession:
		u = float64(fnv1a(session)%1_000_000) / 10_000
	case k == "" && !take:
		// Explain cannot predict a coin toss; report the percentage.
		return
	default:
		u = rand.Float64() * 100
	}
	if u >= pct {
		ld.Dropped = true
		ld.Reason = ReasonNotSampled
	}
	return
}

func (s *sampler) undo(time.Time, map[string]string, float64) {}

func (s *sampler) waits() waitKind { return waitsNever }

func (s *sampler) carry(old flowComponent) bool {
	o, ok := old.(*sampler)
	if !ok {
		return false
	}
	if _, ok := s.spec.InPorts.AcceptPercentage.Constant(); !ok {
		s.pct.set(o.pct.get())
	}
	return true
}

// fnv1a is the 64-bit FNV-1a hash: stable across processes and restarts,
// so a sticky sampler gives a session the same answer on every agent.
func fnv1a(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// baggageLabel is the label of a W3C baggage header.
var baggageLabel = flow.HeaderLabel("Baggage")
