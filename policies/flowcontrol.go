package policies

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

func init() {
	RegisterComponent("flow_control.rate_limiter", func() any { return &RateLimiter{} })
	RegisterComponent("flow_control.sampler", func() any { return &Sampler{} })
}

// InPort is a component input: a signal another circuit component
// produces, or a constant. Exactly one is set.
type InPort struct {
	SignalName     string          `yaml:"signal_name,omitempty"`
	ConstantSignal *ConstantSignal `yaml:"constant_signal,omitempty"`
}

// ConstantSignal is a fixed input value. SpecialValue, when set, is one of
// NaN, +Inf, -Inf and wins over Value.
type ConstantSignal struct {
	Value        float64 `yaml:"value,omitempty"`
	SpecialValue string  `yaml:"special_value,omitempty"`
}

// Float is the constant's value.
func (c *ConstantSignal) Float() float64 {
	switch c.SpecialValue {
	case "NaN":
		return math.NaN()
	case "+Inf":
		return math.Inf(1)
	case "-Inf":
		return math.Inf(-1)
	}
	return c.Value
}

// Constant returns the port's constant value and true, or false when the
// port reads a signal.
func (p *InPort) Constant() (float64, bool) {
	if p == nil || p.ConstantSignal == nil {
		return 0, false
	}
	return p.ConstantSignal.Float(), true
}

func checkInPort(errs []error, name string, p *InPort, required bool) []error {
	switch {
	case p == nil:
		if required {
			errs = append(errs, fmt.Errorf("in_ports.%s is required", name))
		}
	case (p.SignalName == "") == (p.ConstantSignal == nil):
		errs = append(errs, fmt.Errorf("in_ports.%s: set exactly one of signal_name and constant_signal", name))
	case p.ConstantSignal != nil:
		switch p.ConstantSignal.SpecialValue {
		case "", "NaN", "+Inf", "-Inf":
		default:
			errs = append(errs, fmt.Errorf("in_ports.%s.constant_signal.special_value: %q is not one of NaN, +Inf, -Inf", name, p.ConstantSignal.SpecialValue))
		}
	}
	return errs
}

// checkSelectors validates a component's selectors and fills their
// defaults (agent_group).
func checkSelectors(errs []error, sels []Selector) []error {
	setSelectorDefaults(sels)
	var v validator
	validateSelectors(&v, fieldPath{"selectors"}, sels)
	for _, e := range v.errs {
		errs = append(errs, e)
	}
	return errs
}

func checkStatus(errs []error, field string, code int) []error {
	if code != 0 && (code < 100 || code > 599) {
		errs = append(errs, fmt.Errorf("%s: %d is not an HTTP status code", field, code))
	}
	return errs
}

// RateLimiter is the flow_control.rate_limiter component: a token bucket
// per value of limit_by_label_key (one shared bucket when unset), holding
// bucket_capacity tokens and refilled with fill_amount tokens per interval.
// A flow costs one token, or the value of its tokens_label_key label, or
// the tokens of its check request.
//
// When an input port has no valid value (a signal not produced yet, NaN),
// the limiter lets every flow pass and reports it in the decision.
type RateLimiter struct {
	Selectors         []Selector                   `yaml:"selectors"`
	InPorts           RateLimiterInPorts           `yaml:"in_ports"`
	Parameters        RateLimiterParameters        `yaml:"parameters"`
	RequestParameters RateLimiterRequestParameters `yaml:"request_parameters,omitempty"`
	// DryRun counts the flows the limiter would reject and rejects none.
	DryRun bool `yaml:"dry_run,omitempty"`
}

// RateLimiterInPorts are the rate limiter's inputs.
type RateLimiterInPorts struct {
	BucketCapacity *InPort `yaml:"bucket_capacity"`
	FillAmount     *InPort `yaml:"fill_amount"`
	// PassThrough, while true (valid and not 0), admits every flow the
	// component selects at once, taking nothing (Aperture's pass_through).
	PassThrough *InPort `yaml:"pass_through,omitempty"`
}

// RateLimiterParameters configure the buckets.
type RateLimiterParameters struct {
	// LimitByLabelKey keys the buckets by the value of this flow label.
	// At most one of it and KeyExtractor is set; with neither, every flow
	// shares one bucket.
	LimitByLabelKey string `yaml:"limit_by_label_key,omitempty"`
	// KeyExtractor keys the buckets by a property of the flow:
	// "header.<Name>" (an HTTP request header), "ip" (the client
	// address, see TrustedProxies), "api_key" (a hash of the bearer token
	// of the Authorization header, else of the X-API-Key header: the key
	// itself never reaches Redis, metrics or logs) or "label.<key>" (any
	// flow label, as limit_by_label_key). A flow without its key shares
	// one bucket, "unknown", with every other such flow.
	KeyExtractor string `yaml:"key_extractor,omitempty"`
	// TrustedProxies is how many proxies in front of the agent append to
	// X-Forwarded-For (key_extractor: ip only). 0, the default, keys by
	// source.address and ignores X-Forwarded-For; N takes the Nth address
	// from the right, so addresses a client prepends cannot change its
	// key. With fewer than N addresses, source.address is used.
	TrustedProxies int           `yaml:"trusted_proxies,omitempty"`
	Interval       time.Duration `yaml:"interval"`
	// ContinuousFill spreads fill_amount over the interval (default true);
	// false adds it whole at each interval boundary.
	ContinuousFill *bool `yaml:"continuous_fill,omitempty"`
	// MaxIdleTime drops buckets unused this long (default 2h).
	MaxIdleTime time.Duration `yaml:"max_idle_time,omitempty"`
	// DelayInitialFill starts buckets empty instead of full.
	DelayInitialFill bool `yaml:"delay_initial_fill,omitempty"`

	// Backend keeps the buckets in this agent's memory (local, the
	// default) or in the agent's Redis (redis), where every agent that
	// loads the policy shares them: the limit then holds across agents.
	Backend string `yaml:"backend,omitempty"`
	// Algorithm is token_bucket (the default) or sliding_window. A
	// sliding window (redis only) admits at most min(bucket_capacity,
	// fill_amount) tokens in any interval, estimated from the current and
	// the previous window's counts, the previous one weighted by how much
	// of it the sliding interval still covers.
	Algorithm string `yaml:"algorithm,omitempty"`
	// FailureMode says what a redis limiter decides when Redis does not
	// answer within redis_timeout (or its breaker is open): fail_open (the
	// default) admits and says so in the decision, fail_closed rejects
	// with status 503 and reason FAILED_CLOSED, local_fallback decides with
	// a local bucket holding local_fallback_share of the limit.
	FailureMode string `yaml:"failure_mode,omitempty"`
	// RedisTimeout is the hard deadline of one Redis call (default 5ms,
	// at most 1s); the caller's deadline wins when it is earlier.
	RedisTimeout time.Duration `yaml:"redis_timeout,omitempty"`
	// LocalFallbackShare is the fraction (0, 1] of bucket_capacity and
	// fill_amount that the local_fallback bucket of one agent holds: set
	// it to 1/N for N agents sharing the limit. Default 1.
	LocalFallbackShare float64 `yaml:"local_fallback_share,omitempty"`
	// LazySync (backend redis, token_bucket) decides every flow from a
	// local share of the limit and reconciles it with Redis num_sync
	// times per interval, off the decision path. Its overshoot bound is
	// documented in package controlpoint/ratelimit.
	LazySync *LazySync `yaml:"lazy_sync,omitempty"`
}

// LazySync is the lazy_sync parameter of a rate limiter.
type LazySync struct {
	Enabled bool `yaml:"enabled"`
	// NumSync is how many times per interval an agent reconciles a busy
	// bucket with Redis (default 4, at most 1000).
	NumSync int `yaml:"num_sync,omitempty"`
}

// DefaultNumSync is lazy_sync.num_sync when unset.
const DefaultNumSync = 4

// Lazy reports whether lazy sync is on, and num_sync with its default.
func (p *RateLimiterParameters) Lazy() (numSync int, ok bool) {
	if p.LazySync == nil || !p.LazySync.Enabled {
		return 0, false
	}
	if p.LazySync.NumSync == 0 {
		return DefaultNumSync, true
	}
	return p.LazySync.NumSync, true
}

// Key extractor kinds, the part of key_extractor before the first '.'.
const (
	KeyHeader = "header"
	KeyIP     = "ip"
	KeyAPIKey = "api_key"
	KeyLabel  = "label"
)

// ParseKeyExtractor splits a key_extractor into its kind and argument:
// ("header", "X-Client-Id"), ("ip", ""), ("api_key", ""), ("label",
// "user"). It reports what is wrong with a bad one.
func ParseKeyExtractor(s string) (kind, arg string, err error) {
	const want = `; want "header.<Name>", "ip", "api_key" or "label.<key>"`
	kind, arg, hasArg := strings.Cut(s, ".")
	switch {
	case (s == KeyIP || s == KeyAPIKey) && !hasArg:
		return kind, "", nil
	case kind == KeyHeader && hasArg:
		if !isHeaderName(arg) {
			return "", "", fmt.Errorf("invalid key_extractor %q: bad header name%s", s, want)
		}
		return kind, arg, nil
	case kind == KeyLabel && arg != "":
		return kind, arg, nil
	}
	return "", "", fmt.Errorf("invalid key_extractor %q%s", s, want)
}

// isHeaderName reports whether s is an HTTP field name (an RFC 9110
// token).
func isHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

// maxTrustedProxies bounds trusted_proxies; maxNumSync bounds num_sync.
const (
	maxTrustedProxies = 32
	maxNumSync        = 1000
)

// Values of the rate limiter's backend, algorithm and failure_mode
// parameters, and the default redis_timeout.
const (
	BackendLocal           = "local"
	BackendRedis           = "redis"
	AlgorithmTokenBucket   = "token_bucket"
	AlgorithmSlidingWindow = "sliding_window"
	FailOpen               = "fail_open"
	FailClosed             = "fail_closed"
	FailLocalFallback      = "local_fallback"
	DefaultRedisTimeout    = 5 * time.Millisecond
	maxRedisTimeout        = time.Second
)

// WithDefaults returns p with every unset backend parameter at its
// default: backend local, algorithm token_bucket, failure_mode fail_open,
// redis_timeout 5ms, local_fallback_share 1.
func (p RateLimiterParameters) WithDefaults() RateLimiterParameters {
	if p.Backend == "" {
		p.Backend = BackendLocal
	}
	if p.Algorithm == "" {
		p.Algorithm = AlgorithmTokenBucket
	}
	if p.FailureMode == "" {
		p.FailureMode = FailOpen
	}
	if p.RedisTimeout == 0 {
		p.RedisTimeout = DefaultRedisTimeout
	}
	if p.LocalFallbackShare == 0 {
		p.LocalFallbackShare = 1
	}
	return p
}

// RateLimiterRequestParameters say how a flow is charged and refused.
type RateLimiterRequestParameters struct {
	// TokensLabelKey names a flow label holding the flow's cost.
	TokensLabelKey string `yaml:"tokens_label_key,omitempty"`
	// DeniedResponseStatusCode is the HTTP status of a rejection (default 429).
	DeniedResponseStatusCode int `yaml:"denied_response_status_code,omitempty"`
}

// Continuous reports whether the bucket fills continuously.
func (p *RateLimiterParameters) Continuous() bool {
	return p.ContinuousFill == nil || *p.ContinuousFill
}

// Validate implements the component registry's validation hook.
func (r *RateLimiter) Validate() []error {
	var errs []error
	errs = checkSelectors(errs, r.Selectors)
	errs = checkInPort(errs, "bucket_capacity", r.InPorts.BucketCapacity, true)
	errs = checkInPort(errs, "fill_amount", r.InPorts.FillAmount, true)
	errs = checkInPort(errs, "pass_through", r.InPorts.PassThrough, false)
	for name, p := range map[string]*InPort{"bucket_capacity": r.InPorts.BucketCapacity, "fill_amount": r.InPorts.FillAmount} {
		if v, ok := p.Constant(); ok && v < 0 {
			errs = append(errs, fmt.Errorf("in_ports.%s: must not be negative, got %v", name, v))
		}
	}
	if r.Parameters.Interval <= 0 {
		errs = append(errs, fmt.Errorf("parameters.interval is required and must be positive"))
	}
	if r.Parameters.MaxIdleTime < 0 {
		errs = append(errs, fmt.Errorf("parameters.max_idle_time must not be negative"))
	}
	errs = r.Parameters.checkBackend(errs)
	errs = r.Parameters.checkKey(errs)
	return checkStatus(errs, "request_parameters.denied_response_status_code", r.RequestParameters.DeniedResponseStatusCode)
}

// checkBackend validates backend, algorithm, failure_mode, redis_timeout
// and local_fallback_share.
func (p *RateLimiterParameters) checkBackend(errs []error) []error {
	oneOf := func(field, v string, allowed ...string) {
		if v != "" && !slices.Contains(allowed, v) {
			errs = append(errs, fmt.Errorf("parameters.%s: %q is not one of %s", field, v, strings.Join(allowed, ", ")))
		}
	}
	oneOf("backend", p.Backend, BackendLocal, BackendRedis)
	oneOf("algorithm", p.Algorithm, AlgorithmTokenBucket, AlgorithmSlidingWindow)
	oneOf("failure_mode", p.FailureMode, FailOpen, FailClosed, FailLocalFallback)
	d := p.WithDefaults()
	if d.Backend == BackendLocal {
		if d.Algorithm == AlgorithmSlidingWindow {
			errs = append(errs, fmt.Errorf("parameters.algorithm: sliding_window needs backend: redis"))
		}
		for _, f := range []struct {
			name string
			set  bool
		}{{"failure_mode", p.FailureMode != ""}, {"redis_timeout", p.RedisTimeout != 0}, {"local_fallback_share", p.LocalFallbackShare != 0}} {
			if f.set {
				errs = append(errs, fmt.Errorf("parameters.%s: applies only to backend: redis", f.name))
			}
		}
	}
	errs = p.checkLazySync(errs, d)
	if p.RedisTimeout < 0 || p.RedisTimeout > maxRedisTimeout {
		errs = append(errs, fmt.Errorf("parameters.redis_timeout: must be within 0..%v, got %v", maxRedisTimeout, p.RedisTimeout))
	}
	if s := p.LocalFallbackShare; s < 0 || s > 1 || math.IsNaN(s) {
		errs = append(errs, fmt.Errorf("parameters.local_fallback_share: must be within (0, 1], got %v", s))
	} else if s != 0 && d.FailureMode != FailLocalFallback && d.Backend == BackendRedis {
		errs = append(errs, fmt.Errorf("parameters.local_fallback_share: applies only to failure_mode: local_fallback"))
	}
	return errs
}

// checkLazySync validates lazy_sync against the backend and algorithm in
// effect (d, p with defaults).
func (p *RateLimiterParameters) checkLazySync(errs []error, d RateLimiterParameters) []error {
	ls := p.LazySync
	if ls == nil {
		return errs
	}
	switch {
	case ls.NumSync < 0 || ls.NumSync > maxNumSync:
		errs = append(errs, fmt.Errorf("parameters.lazy_sync.num_sync: must be within 1..%d, got %d", maxNumSync, ls.NumSync))
	case ls.Enabled && d.Backend != BackendRedis:
		errs = append(errs, fmt.Errorf("parameters.lazy_sync: applies only to backend: redis"))
	case ls.Enabled && d.Algorithm != AlgorithmTokenBucket:
		errs = append(errs, fmt.Errorf("parameters.lazy_sync: needs algorithm: token_bucket"))
	case ls.Enabled && (p.FailureMode != "" || p.LocalFallbackShare != 0):
		errs = append(errs, fmt.Errorf("parameters.failure_mode: does not apply with lazy_sync, which always decides locally"))
	}
	if n, ok := p.Lazy(); ok && n <= maxNumSync && p.Interval > 0 && p.Interval/time.Duration(n) < time.Millisecond {
		errs = append(errs, fmt.Errorf("parameters.lazy_sync.num_sync: interval/num_sync must be at least 1ms, got %v", p.Interval/time.Duration(n)))
	}
	return errs
}

// checkKey validates limit_by_label_key, key_extractor and
// trusted_proxies.
func (p *RateLimiterParameters) checkKey(errs []error) []error {
	if p.LimitByLabelKey != "" && p.KeyExtractor != "" {
		errs = append(errs, fmt.Errorf("parameters: set at most one of limit_by_label_key and key_extractor"))
	}
	kind := ""
	if p.KeyExtractor != "" {
		var err error
		if kind, _, err = ParseKeyExtractor(p.KeyExtractor); err != nil {
			errs = append(errs, fmt.Errorf("parameters.key_extractor: %w", err))
		}
	}
	switch n := p.TrustedProxies; {
	case n < 0 || n > maxTrustedProxies:
		errs = append(errs, fmt.Errorf("parameters.trusted_proxies: must be within 0..%d, got %d", maxTrustedProxies, n))
	case n != 0 && kind != KeyIP:
		errs = append(errs, fmt.Errorf("parameters.trusted_proxies: applies only to key_extractor: ip"))
	}
	return errs
}

// Sampler is the flow_control.sampler component: it admits
// accept_percentage percent of the flows it selects. With
// session_label_key, the choice is sticky: every flow with the same value
// of that label gets the same answer while the percentage stays the same.
//
// When accept_percentage has no valid value the sampler admits every flow,
// unless it is a ramp (parameters.ramp_mode): a ramp then admits none.
// A flow whose session_label_key value (the empty string when the key is
// not set or the flow lacks the label) is one of pass_through_label_values
// is always admitted.
type Sampler struct {
	Selectors  []Selector        `yaml:"selectors"`
	InPorts    SamplerInPorts    `yaml:"in_ports"`
	Parameters SamplerParameters `yaml:"parameters,omitempty"`
	// PassThroughLabelValues are session_label_key values whose flows the
	// sampler always admits, whatever the percentage.
	PassThroughLabelValues []string `yaml:"pass_through_label_values,omitempty"`
	DryRun                 bool     `yaml:"dry_run,omitempty"`
}

// SamplerInPorts are the sampler's inputs.
type SamplerInPorts struct {
	AcceptPercentage *InPort `yaml:"accept_percentage"`
}

// SamplerParameters configure the sampler.
type SamplerParameters struct {
	SessionLabelKey string `yaml:"session_label_key,omitempty"`
	// DeniedResponseStatusCode is the HTTP status of a rejection (default 403).
	DeniedResponseStatusCode int `yaml:"denied_response_status_code,omitempty"`
	// RampMode makes the sampler a ramp, as Aperture's load_ramp makes
	// its sampler: a flow checked in ramp mode (Aperture's CheckRequest
	// ramp_mode) is rejected unless a ramp selects and admits it, and a
	// ramp admits nothing while its accept_percentage is invalid.
	RampMode bool `yaml:"ramp_mode,omitempty"`
}

// maxPassThroughValues bounds a sampler's pass_through_label_values.
const maxPassThroughValues = 10_000

// Validate implements the component registry's validation hook.
func (s *Sampler) Validate() []error {
	var errs []error
	errs = checkSelectors(errs, s.Selectors)
	errs = checkInPort(errs, "accept_percentage", s.InPorts.AcceptPercentage, true)
	if v, ok := s.InPorts.AcceptPercentage.Constant(); ok && (v < 0 || v > 100) {
		errs = append(errs, fmt.Errorf("in_ports.accept_percentage: must be within 0..100, got %v", v))
	}
	if n := len(s.PassThroughLabelValues); n > maxPassThroughValues {
		errs = append(errs, fmt.Errorf("pass_through_label_values: at most %d values, got %d", maxPassThroughValues, n))
	}
	return checkStatus(errs, "parameters.denied_response_status_code", s.Parameters.DeniedResponseStatusCode)
}

// OutPort is a component output: the signal it produces.
type OutPort struct {
	SignalName string `yaml:"signal_name"`
}
