package policies

import (
	"fmt"
	"math"
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
}

// RateLimiterParameters configure the buckets.
type RateLimiterParameters struct {
	LimitByLabelKey string        `yaml:"limit_by_label_key,omitempty"`
	Interval        time.Duration `yaml:"interval"`
	// ContinuousFill spreads fill_amount over the interval (default true);
	// false adds it whole at each interval boundary.
	ContinuousFill *bool `yaml:"continuous_fill,omitempty"`
	// MaxIdleTime drops buckets unused this long (default 2h).
	MaxIdleTime time.Duration `yaml:"max_idle_time,omitempty"`
	// DelayInitialFill starts buckets empty instead of full.
	DelayInitialFill bool `yaml:"delay_initial_fill,omitempty"`
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
	return checkStatus(errs, "request_parameters.denied_response_status_code", r.RequestParameters.DeniedResponseStatusCode)
}

// Sampler is the flow_control.sampler component: it admits
// accept_percentage percent of the flows it selects. With
// session_label_key, the choice is sticky: every flow with the same value
// of that label gets the same answer while the percentage stays the same.
//
// When accept_percentage has no valid value the sampler admits every flow.
type Sampler struct {
	Selectors  []Selector        `yaml:"selectors"`
	InPorts    SamplerInPorts    `yaml:"in_ports"`
	Parameters SamplerParameters `yaml:"parameters,omitempty"`
	DryRun     bool              `yaml:"dry_run,omitempty"`
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
}

// Validate implements the component registry's validation hook.
func (s *Sampler) Validate() []error {
	var errs []error
	errs = checkSelectors(errs, s.Selectors)
	errs = checkInPort(errs, "accept_percentage", s.InPorts.AcceptPercentage, true)
	if v, ok := s.InPorts.AcceptPercentage.Constant(); ok && (v < 0 || v > 100) {
		errs = append(errs, fmt.Errorf("in_ports.accept_percentage: must be within 0..100, got %v", v))
	}
	return checkStatus(errs, "parameters.denied_response_status_code", s.Parameters.DeniedResponseStatusCode)
}

// OutPort is a component output: the signal it produces.
type OutPort struct {
	SignalName string `yaml:"signal_name"`
}
