package ratelimit

import (
	"context"
	_ "embed" // the Lua scripts
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/fluxgate/fluxgate/controlpoint/breaker"
)

// A RedisBackend keeps the buckets of global rate limiters in Redis, so
// every agent that loads a policy shares its limit. Each decision is one
// atomic Lua script (EVALSHA, reloaded on NOSCRIPT) that reads the time
// with Redis TIME: the agents' clocks never change a decision.
//
// Every call has a hard deadline (the limiter's Timeout, or the caller's
// deadline when earlier). After BreakerErrors consecutive failures the
// backend stops calling Redis for BreakerCooldown, then lets one probe
// through; a probe that succeeds closes the breaker. A call its caller
// cut short (canceled, or the caller's deadline came before the
// limiter's Timeout) is not a failure of Redis and does not count. While Redis cannot
// answer, each RedisLimiter decides by its FailureMode.
//
// A RedisBackend is safe for concurrent use.
type RedisBackend struct {
	client   RedisClient
	pipe     pipe
	streams  []*stream // standalone Redis: exact calls go here, not on pipe
	next     atomic.Uint32
	tb, sw   *redis.Script
	lz       *redis.Script
	breaker  *breaker.Breaker // consecutive failures, one probe
	duration prometheus.Observer
	errs     *prometheus.CounterVec
	failOpen *prometheus.CounterVec
	degraded *prometheus.CounterVec
	syncs    *prometheus.CounterVec

	mu      sync.Mutex // guards lastErr and errAt
	lastErr string
	errAt   time.Time
	okAt    atomic.Int64 // unix nanoseconds of the last answer
}

// RedisOptions configures a RedisBackend.
type RedisOptions struct {
	// Client runs the scripts: a *redis.Client or *redis.ClusterClient.
	// Required. It should be built with ContextTimeoutEnabled (so a
	// deadline bounds every socket read and write) and MaxRetries -1 (a
	// retried take could be charged twice).
	Client RedisClient
	// Registerer receives the backend's metrics. Nil means none.
	Registerer prometheus.Registerer
	// BreakerErrors consecutive failed calls open the breaker. Default 5.
	BreakerErrors int
	// BreakerCooldown is how long an open breaker skips Redis before it
	// lets a probe through. Default 250ms.
	BreakerCooldown time.Duration
	// Pipelines is how many calls or pipelines of calls may be in flight
	// at once while Redis is busy (round trips carry several calls each);
	// concurrent decisions beyond it share the next round trip (see
	// pipe.go). Default 2.
	Pipelines int
	// WidePipelines is how many may be in flight at once while round
	// trips carry few calls each (light load), so that calls that arrive
	// together go at once rather than wait a round trip for company.
	// Default 8; below Pipelines it counts as Pipelines.
	WidePipelines int
	// Streams is how many connections of their own the exact decisions
	// of a standalone Redis (a *redis.Client) are written on, each call
	// the moment it comes, replies read in order (see stream.go). Default
	// 1; -1 sends them on pipelines (Pipelines, WidePipelines) instead. A
	// Cluster client, a client whose options a stream cannot honour
	// (OnConnect, credential providers), and lazy syncs always use
	// pipelines.
	Streams int
}

var (
	//go:embed tokenbucket.lua
	tokenBucketLua string
	//go:embed slidingwindow.lua
	slidingWindowLua string
	//go:embed lazysync.lua
	lazySyncLua string
)

// NewRedisBackend returns a backend on opts.Client. It does not contact
// Redis: the scripts are loaded by Load or by the first call that finds
// them missing.
func NewRedisBackend(opts RedisOptions) (*RedisBackend, error) {
	if opts.Client == nil {
		return nil, errors.New("ratelimit: RedisOptions.Client is required")
	}
	if opts.BreakerErrors <= 0 {
		opts.BreakerErrors = 5
	}
	if opts.BreakerCooldown <= 0 {
		opts.BreakerCooldown = 250 * time.Millisecond
	}
	if opts.Pipelines <= 0 {
		opts.Pipelines = defaultPipeLanes
	}
	if opts.WidePipelines <= 0 {
		opts.WidePipelines = defaultPipeWideLanes
	}
	if opts.Streams == 0 {
		opts.Streams = defaultStreams
	}
	br, err := newRedisBreaker(opts.BreakerErrors, opts.BreakerCooldown)
	if err != nil {
		return nil, err
	}
	dur := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "fluxgate_redis_call_duration_seconds",
		Help:    "Duration of the Redis calls of global rate limiters, failed ones included.",
		Buckets: []float64{.0001, .00025, .0005, .001, .002, .005, .01, .025, .1},
	})
	b := &RedisBackend{
		client:   opts.Client,
		pipe:     pipe{client: opts.Client, lanes: opts.Pipelines, wideLanes: max(opts.WidePipelines, opts.Pipelines), maxBatch: defaultPipeMaxBatch},
		tb:       redis.NewScript(tokenBucketLua),
		sw:       redis.NewScript(slidingWindowLua),
		lz:       redis.NewScript(lazySyncLua),
		breaker:  br,
		duration: dur,
		errs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fluxgate_redis_errors_total",
			Help: "Redis calls of global rate limiters that failed, by reason (timeout, canceled, error) and calls skipped by the open breaker (breaker_open).",
		}, []string{"reason"}),
		failOpen: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fluxgate_failopen_total",
			Help: "Flows that fail_open rate limiters admitted because Redis did not decide, by reason.",
		}, []string{"reason"}),
		degraded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fluxgate_redis_degraded_decisions_total",
			Help: "Decisions of global rate limiters made by their failure_mode because Redis did not decide, by failure mode and reason.",
		}, []string{"failure_mode", "reason"}),
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fluxgate_redis_lazy_syncs_total",
			Help: "Lazy syncs of rate limiters with Redis, by result: ok, or why it failed (timeout, canceled, breaker_open, error); a limiter whose sync fails keeps deciding locally.",
		}, []string{"result"}),
	}
	if c, ok := opts.Client.(interface{ Options() *redis.Options }); ok && opts.Streams > 0 {
		if o := c.Options(); streamable(o) == nil {
			for range opts.Streams {
				b.streams = append(b.streams, &stream{opts: o, client: opts.Client})
			}
		}
	}
	if r := opts.Registerer; r != nil {
		open := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "fluxgate_redis_breaker_open",
			Help: "1 while the Redis breaker skips Redis (open or probing), else 0.",
		}, func() float64 {
			if b.breaker.State() != breaker.Closed {
				return 1
			}
			return 0
		})
		for _, c := range []prometheus.Collector{dur, b.errs, b.failOpen, b.degraded, b.syncs, open} {
			if err := r.Register(c); err != nil {
				return nil, fmt.Errorf("ratelimit: register redis metrics: %w", err)
			}
		}
	}
	return b, nil
}

// Close closes the backend's own connections to Redis (its streams),
// not its Client. Calls after Close fail by their failure mode.
func (b *RedisBackend) Close() error {
	for _, s := range b.streams {
		_ = s.Close()
	}
	return nil
}

// Streaming reports whether exact decisions are written on streams
// (stream.go) rather than pipelines.
func (b *RedisBackend) Streaming() bool { return len(b.streams) > 0 }

// Load loads the scripts into Redis (SCRIPT LOAD). Calling it at start
// saves the first decisions a round trip and shows early whether Redis
// answers.
func (b *RedisBackend) Load(ctx context.Context) error {
	for _, s := range []*redis.Script{b.tb, b.sw, b.lz} {
		if err := s.Load(ctx, b.client).Err(); err != nil {
			b.noteError(time.Now(), err)
			return fmt.Errorf("ratelimit: load script: %w", err)
		}
	}
	return nil
}

// RedisState is what health reports about the backend.
type RedisState struct {
	// Breaker is closed, open (Redis is skipped) or probing.
	Breaker string
	// ConsecutiveErrors is the number of failed calls since the last
	// success.
	ConsecutiveErrors int
	LastError         string
	LastErrorAt       time.Time
	LastOK            time.Time // zero until Redis first answered
}

// State reports the breaker and the last error. It does not block.
func (b *RedisBackend) State(now time.Time) RedisState {
	s := RedisState{Breaker: breakerState(b.breaker, now), ConsecutiveErrors: b.breaker.Failures()}
	if ok := b.okAt.Load(); ok != 0 {
		s.LastOK = time.Unix(0, ok)
	}
	b.mu.Lock()
	s.LastError, s.LastErrorAt = b.lastErr, b.errAt
	b.mu.Unlock()
	return s
}

// Algorithm is how a RedisLimiter counts.
type Algorithm string

// Algorithms.
const (
	TokenBucket   Algorithm = "token_bucket"
	SlidingWindow Algorithm = "sliding_window"
)

// FailureMode is what a RedisLimiter decides when Redis does not.
type FailureMode string

// Failure modes.
const (
	// FailOpen admits the flow and reports why in RedisResult.Failure.
	FailOpen FailureMode = "fail_open"
	// FailClosed rejects the flow.
	FailClosed FailureMode = "fail_closed"
	// LocalFallback decides with a local token bucket holding
	// FallbackShare of the limits.
	LocalFallback FailureMode = "local_fallback"
)

// RedisLimiterOptions configures a RedisLimiter.
type RedisLimiterOptions struct {
	// Scope names the limiter in keys, e.g. "default/checkout:0"
	// (namespace/policy:component): two limiters with different scopes
	// never share a bucket. Required.
	Scope     string
	Algorithm Algorithm // default TokenBucket
	Limits    Limits
	// Timeout is the hard deadline of one Redis call. Default 5ms.
	Timeout     time.Duration
	FailureMode FailureMode // default FailOpen
	// FallbackShare is the fraction of Limits the local_fallback bucket
	// holds (1/N for N agents). Default 1.
	FallbackShare float64
	// MaxIdle and DelayInitialFill are as in Options. A Redis bucket
	// expires once it would be full again from empty, plus one interval
	// (a full bucket and a missing one are the same), however long that
	// is; without a fill rate after MaxIdle; with DelayInitialFill it
	// lives at least MaxIdle.
	MaxIdle          time.Duration
	DelayInitialFill bool
	// MaxMemory bounds the local buckets (lazy sync's shares and
	// local_fallback's buckets, each set apart) as in Options. Default
	// DefaultMaxMemory. Redis's own memory is bounded by the keys'
	// expiry and MaxKeyBytes.
	MaxMemory int64
	// NumSync > 0 turns on lazy sync (token bucket only): decisions take
	// from a local share and never wait on Redis; each busy bucket is
	// reconciled with Redis NumSync times per interval. FailureMode and
	// FallbackShare do not apply. See the package documentation for the
	// overshoot bound.
	NumSync int
}

// RedisLimiter is one rate limiter whose buckets live in Redis, one per
// key. It is safe for concurrent use.
type RedisLimiter struct {
	b        *RedisBackend
	scope    string // escaped
	alg      Algorithm
	script   *redis.Script
	timeout  time.Duration
	mode     FailureMode
	share    float64
	maxIdle  time.Duration
	delay    bool
	limits   atomic.Pointer[Limits]
	args     atomic.Pointer[scriptArgs] // of the limits stored last
	fallback *Limiter
	lazy     *lazy // nil unless lazy sync is on
}

// NewLimiter returns a limiter whose buckets live in b.
func (b *RedisBackend) NewLimiter(opts RedisLimiterOptions) *RedisLimiter {
	if opts.Algorithm == "" {
		opts.Algorithm = TokenBucket
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Millisecond
	}
	if opts.FailureMode == "" {
		opts.FailureMode = FailOpen
	}
	if opts.FallbackShare <= 0 || opts.FallbackShare > 1 {
		opts.FallbackShare = 1
	}
	if opts.MaxIdle <= 0 {
		opts.MaxIdle = 2 * time.Hour
	}
	l := &RedisLimiter{
		b: b, scope: escapeTag(opts.Scope), alg: opts.Algorithm, script: b.tb,
		timeout: opts.Timeout, mode: opts.FailureMode, share: opts.FallbackShare,
		maxIdle: opts.MaxIdle, delay: opts.DelayInitialFill,
	}
	if l.alg == SlidingWindow {
		l.script = b.sw
	}
	lim := opts.Limits
	l.limits.Store(&lim)
	l.args.Store(l.argsFor(&lim))
	if opts.NumSync > 0 && l.alg == TokenBucket && lim.Interval > 0 {
		l.script = b.lz
		mem := opts.MaxMemory
		if mem <= 0 {
			mem = DefaultMaxMemory
		}
		l.lazy = newLazy(l, opts.NumSync, lim.Interval, mem)
	}
	l.fallback = New(Options{Limits: l.shareOf(lim), MaxIdle: opts.MaxIdle, DelayInitialFill: opts.DelayInitialFill, MaxMemory: opts.MaxMemory})
	return l
}

func (l *RedisLimiter) shareOf(lim Limits) Limits {
	lim.Capacity *= l.share
	lim.FillAmount *= l.share
	return lim
}

// Limits returns the current limits.
func (l *RedisLimiter) Limits() Limits { return *l.limits.Load() }

// SetLimits replaces the limits of every bucket; Redis applies them on
// each bucket's next use, clamping its tokens to the new capacity.
func (l *RedisLimiter) SetLimits(lim Limits) {
	if cur := l.limits.Load(); *cur == lim {
		return
	}
	l.limits.Store(&lim)
	l.args.Store(l.argsFor(&lim))
	l.fallback.SetLimits(l.shareOf(lim))
}

// Fallback is the local bucket set of local_fallback (it exists whatever
// the failure mode, and stays empty unless it is local_fallback). The
// engine sweeps it like a local limiter.
func (l *RedisLimiter) Fallback() *Limiter { return l.fallback }

// Key is the Redis key of key's bucket: {fluxgate:SCOPE:KEY}:ALG, where
// ALG is tb (token bucket), sw (sliding window) or lz (lazy sync). The
// whole scope and key are the hash tag, so a bucket's keys map to one
// Redis Cluster slot; a '}' or '%' in them is escaped as %7D or %25 so it
// cannot end the tag early.
func (l *RedisLimiter) Key(key string) string {
	key = BoundKey(key)
	suffix := ":tb"
	switch {
	case l.lazy != nil:
		suffix = ":lz"
	case l.alg == SlidingWindow:
		suffix = ":sw"
	}
	return "{fluxgate:" + l.scope + ":" + escapeTag(key) + "}" + suffix
}

func escapeTag(s string) string {
	if !strings.ContainsAny(s, "}%") {
		return s
	}
	return strings.NewReplacer("%", "%25", "}", "%7D").Replace(s)
}

// RedisResult is the outcome of a RedisLimiter call.
type RedisResult struct {
	Result
	// Failure is empty when Redis decided. Otherwise the failure mode
	// decided and Failure says why Redis did not: timeout, canceled (the
	// caller gave up: it canceled, or its own deadline, earlier than the
	// limiter's Timeout, passed), breaker_open or error.
	Failure string
}

// Take removes n tokens from key's bucket if it holds them. now is used
// only by the local fallback and lazy sync's local share: Redis decides
// on its own clock.
func (l *RedisLimiter) Take(ctx context.Context, now time.Time, key string, n float64) RedisResult {
	key = BoundKey(key)
	if r, bad := l.badCost(n); bad {
		return r
	}
	if l.lazy != nil {
		return RedisResult{Result: l.lazy.do(now, key, n, true)}
	}
	return l.do(ctx, now, key, n, "t")
}

// Peek reports what Take would answer without changing the bucket.
func (l *RedisLimiter) Peek(ctx context.Context, now time.Time, key string, n float64) RedisResult {
	key = BoundKey(key)
	if r, bad := l.badCost(n); bad {
		return r
	}
	if l.lazy != nil {
		return RedisResult{Result: l.lazy.do(now, key, n, false)}
	}
	return l.do(ctx, now, key, n, "p")
}

// badCost refuses, without asking Redis, a cost that is negative, NaN or
// infinite: the scripts would add tokens for a negative one and cannot
// read the others.
func (l *RedisLimiter) badCost(n float64) (RedisResult, bool) {
	if n >= 0 && !math.IsInf(n, 1) {
		return RedisResult{}, false
	}
	return RedisResult{Result: Result{Limit: l.limits.Load().Capacity, Wait: waitNever}}, true
}

// Lazy reports whether the limiter syncs lazily.
func (l *RedisLimiter) Lazy() bool { return l.lazy != nil }

// SweepLazy drops the local shares of lazy sync unused for MaxIdle that
// owe Redis nothing, and returns how many it dropped. A lazy limiter
// also sweeps a shard of them, at most once a minute, when a new key
// arrives in it, so memory stays bounded without calling SweepLazy.
func (l *RedisLimiter) SweepLazy(now time.Time) int {
	if l.lazy == nil {
		return 0
	}
	return l.lazy.sweep(now)
}

// LazyLen is the number of local shares held by lazy sync.
func (l *RedisLimiter) LazyLen() int {
	if l.lazy == nil {
		return 0
	}
	return l.lazy.len()
}

// LazyBytes is the memory of lazy sync's local shares, as counted
// against MaxMemory.
func (l *RedisLimiter) LazyBytes() int64 {
	if l.lazy == nil {
		return 0
	}
	return l.lazy.bytes()
}

// LazyEvictions is the number of lazy sync's local shares evicted to
// keep within MaxMemory.
func (l *RedisLimiter) LazyEvictions() uint64 {
	if l.lazy == nil {
		return 0
	}
	return l.lazy.evictions.Load()
}

// Return gives n tokens back to key's bucket, for a flow that a later
// component rejected after this one had admitted it. With the sliding
// window it takes them off the newest count.
func (l *RedisLimiter) Return(ctx context.Context, now time.Time, key string, n float64) {
	key = BoundKey(key)
	if l.lazy != nil {
		l.lazy.giveBack(now, key, n)
		return
	}
	l.do(ctx, now, key, n, "r")
}

func (l *RedisLimiter) do(ctx context.Context, now time.Time, key string, n float64, mode string) RedisResult {
	lim := l.limits.Load()
	res, err := l.call(ctx, lim, key, n, mode)
	if err == nil {
		return RedisResult{Result: res}
	}
	reason := errorReason(err)
	if mode == "r" {
		return RedisResult{Failure: reason} // nothing to decide
	}
	l.b.degraded.WithLabelValues(string(l.mode), reason).Inc()
	out := RedisResult{Failure: reason, Result: Result{Limit: lim.Capacity}}
	switch l.mode {
	case FailClosed:
	case LocalFallback:
		if mode == "t" {
			out.Result = l.fallback.Take(now, key, n)
		} else {
			out.Result = l.fallback.Peek(now, key, n)
		}
	default:
		l.b.failOpen.WithLabelValues(reason).Inc()
		out.Allowed = true
	}
	return out
}

// errBreakerOpen is returned while the breaker skips Redis.
var errBreakerOpen = errors.New("ratelimit: redis breaker open")

// errCallerGone wraps the error of a call cut short by its caller (see
// cutByCaller).
var errCallerGone = errors.New("ratelimit: the caller gave up before redis_timeout")

func errorReason(err error) string {
	switch {
	case errors.Is(err, errBreakerOpen):
		return "breaker_open"
	case errors.Is(err, errCallerGone):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded), isTimeout(err):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	return "error"
}

// cutByCaller reports whether a call that failed with err at end was
// cut short by its caller rather than by Redis: the caller canceled, or
// the caller's own deadline, earlier than the call's (own: its start plus
// redis_timeout), had passed. Such a failure says nothing about Redis and
// must not count towards opening the breaker: when many callers share
// one deadline (a client's, or a load generator's end), their calls in
// flight all end at once and would open it, and every decision would
// then fail by its failure mode for the whole cool-down. The price: a
// Redis that hangs opens the breaker only through calls whose caller
// waits at least redis_timeout.
//
// go-redis reports a socket deadline set from the context as a network
// timeout, and may do so an instant before the context itself is done,
// so the caller's deadline is compared with end rather than read from
// its Err alone. An error Redis answered (a reply, a refused connection)
// is Redis's, whenever it came.
func cutByCaller(caller context.Context, err error, own, end time.Time) bool {
	if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) && !isTimeout(err) {
		return false
	}
	d, ok := caller.Deadline()
	if ok && d.Before(own) && !end.Before(d) {
		return true
	}
	return errors.Is(caller.Err(), context.Canceled)
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// call runs the limiter's script for one decision.
func (l *RedisLimiter) call(ctx context.Context, lim *Limits, key string, n float64, mode string) (Result, error) {
	a := l.args.Load()
	if a.lim != lim { // limits changed between the two loads
		a = l.argsFor(lim)
	}
	c := &pipeCall{ctx: ctx, script: l.script, argv: a.argv}
	c.key[0] = l.Key(key)
	c.keys = c.key[:]
	c.argv[a.n], c.argv[a.mode] = tokensArg(n), modeArg(mode)
	c.args = c.argv[:a.len]
	reply, err := l.eval(c)
	if err != nil {
		return Result{}, err
	}
	return parseReply(reply, lim)
}

// scriptArgs are the arguments of a limiter's script for one set of its
// limits, boxed once when the limits are set: a decision then boxes only
// its own two, the tokens it asks for (at n) and the mode (at mode).
type scriptArgs struct {
	lim     *Limits
	argv    [maxScriptArgs]any
	len     int
	n, mode int
}

// maxScriptArgs is the most arguments a decision's script takes.
const maxScriptArgs = 8

// argsFor boxes the script's arguments for lim.
func (l *RedisLimiter) argsFor(lim *Limits) *scriptArgs {
	a := &scriptArgs{lim: lim}
	if l.alg == SlidingWindow {
		limit := math.Min(lim.Capacity, lim.FillAmount)
		a.len, a.n, a.mode = 5, 2, 3
		a.argv = [maxScriptArgs]any{limit, lim.Interval.Microseconds(), nil, nil, (2*lim.Interval + time.Second).Milliseconds()}
		return a
	}
	cont := "0"
	if lim.Continuous {
		cont = "1"
	}
	delay := "0"
	if l.delay {
		delay = "1"
	}
	a.len, a.n, a.mode = 8, 4, 5
	a.argv = [maxScriptArgs]any{lim.Capacity, lim.FillAmount, lim.Interval.Microseconds(), cont, nil, nil, l.ttl(lim).Milliseconds(), delay}
	return a
}

// oneToken is 1.0 boxed: what most decisions ask for.
var oneToken any = 1.0

// tokensArg is n as a script argument, boxed without allocating for 1.
func tokensArg(n float64) any {
	if n == 1 {
		return oneToken
	}
	return n
}

// modeArg is a decision's mode as a script argument: the modes are
// constants, whose boxes need no allocation.
func modeArg(mode string) any {
	switch mode {
	case "t":
		return "t"
	case "p":
		return "p"
	case "r":
		return "r"
	}
	return mode
}

// eval runs script with the limiter's deadline, through the breaker.
func (l *RedisLimiter) eval(call *pipeCall) ([]any, error) {
	b := l.b
	start := time.Now()
	permit, err := b.breaker.AllowAt(start)
	if err != nil {
		b.errs.WithLabelValues("breaker_open").Inc()
		return nil, errBreakerOpen
	}
	caller := call.ctx
	// Concurrent calls share round trips; a script Redis lost is loaded
	// again within the same deadline. A stream's call carries the
	// deadline itself (no context a call); a pipe's, in its context.
	call.deadline = start.Add(l.timeout)
	var reply []any
	if n := len(b.streams); n > 0 {
		s := b.streams[0]
		if n > 1 {
			s = b.streams[b.next.Add(1)%uint32(n)]
		}
		reply, err = s.do(call)
	} else {
		var cancel context.CancelFunc
		call.ctx, cancel = context.WithDeadline(caller, call.deadline)
		call.deadline = time.Time{}
		reply, err = b.pipe.do(call)
		cancel()
	}
	end := time.Now()
	b.duration.Observe(end.Sub(start).Seconds())
	if err != nil {
		if cutByCaller(caller, err, start.Add(l.timeout), end) {
			// The caller gave up, or its own deadline came before
			// redis_timeout: that says nothing about Redis.
			b.breaker.RecordAt(end, permit, breaker.Ignored)
			return nil, fmt.Errorf("%w: %w", errCallerGone, err)
		}
		b.breaker.RecordAt(end, permit, breaker.Failure)
		b.errs.WithLabelValues(errorReason(err)).Inc()
		b.noteError(end, err)
		b.reloadTopology()
		return nil, err
	}
	b.breaker.RecordAt(end, permit, breaker.Success)
	b.okAt.Store(end.UnixNano())
	return reply, nil
}

// reloadTopology asks a Redis Cluster client to read the cluster's slot
// map again after a failed call. go-redis follows MOVED by itself, but a
// master that died answers nothing: until the map is read again (every
// minute by itself, ClusterStateReloadInterval) the client keeps calling
// it, though its replica took over its slots. The client reloads in the background, at most one
// reload at a time; a standalone client has nothing to reload.
func (b *RedisBackend) reloadTopology() {
	if c, ok := b.client.(interface{ ReloadState(context.Context) }); ok {
		c.ReloadState(context.Background())
	}
}

func (b *RedisBackend) noteError(now time.Time, err error) {
	b.mu.Lock()
	b.lastErr, b.errAt = err.Error(), now
	b.mu.Unlock()
}

func isNoScript(err error) bool {
	return redis.HasErrorPrefix(err, "NOSCRIPT")
}

// ttl is how long an untouched token bucket is kept: until it would be
// full again from empty, plus one interval, so that its expiry never hands
// out tokens (a full bucket and a missing one are the same). Without a fill
// rate a bucket never fills again: it is kept MaxIdle. With
// DelayInitialFill (a missing bucket is an empty one) at least MaxIdle.
func (l *RedisLimiter) ttl(lim *Limits) time.Duration {
	full := l.maxIdle
	if lim.FillAmount > 0 && lim.Interval > 0 {
		full = clampDuration(math.Ceil(lim.Capacity/lim.FillAmount) * float64(lim.Interval))
	}
	ttl := maxTTL
	if full < maxTTL-lim.Interval {
		ttl = full + lim.Interval
	}
	if l.delay && ttl < l.maxIdle {
		ttl = l.maxIdle
	}
	if ttl < time.Second {
		ttl = time.Second
	}
	return ttl
}

// maxTTL bounds a bucket's expiry, for PEXPIRE.
const maxTTL = 100 * 365 * 24 * time.Hour

// parseReply reads {allowed, tokens, wait_us, reset_us}.
func parseReply(reply []any, lim *Limits) (Result, error) {
	if len(reply) != 4 {
		return Result{}, fmt.Errorf("ratelimit: unexpected script reply %v", reply)
	}
	allowed, _ := reply[0].(int64)
	tokens, _ := reply[1].(string)
	wait, _ := reply[2].(int64)
	reset, _ := reply[3].(int64)
	rem, err := strconv.ParseFloat(tokens, 64)
	if err != nil {
		return Result{}, fmt.Errorf("ratelimit: unexpected script reply %v", reply)
	}
	return Result{Allowed: allowed == 1, Remaining: rem, Limit: lim.Capacity, Wait: micros(wait), Reset: micros(reset)}, nil
}

func micros(us int64) time.Duration {
	if us < 0 || us > math.MaxInt64/int64(time.Microsecond) {
		return waitNever
	}
	return time.Duration(us) * time.Microsecond
}

// newRedisBreaker is the backend's breaker: threshold failed calls in a
// row open it for cooldown, then one call at a time probes Redis until
// one succeeds.
func newRedisBreaker(threshold int, cooldown time.Duration) (*breaker.Breaker, error) {
	br, err := breaker.New(breaker.Options{
		Name:   "redis",
		Config: breaker.Config{ConsecutiveFailures: threshold, OpenFor: cooldown, HalfOpenProbes: 1},
	})
	if err != nil {
		return nil, fmt.Errorf("ratelimit: %w", err)
	}
	return br, nil
}

// breakerState names br's state at now for health: closed, open (Redis is
// skipped) or probing (the cool-down is over: the next call probes, or a
// probe is in flight).
func breakerState(br *breaker.Breaker, now time.Time) string {
	switch br.StateAt(now) {
	case breaker.Closed:
		return "closed"
	case breaker.Open:
		return "open"
	}
	return "probing"
}
