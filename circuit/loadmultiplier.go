package circuit

import (
	"fmt"
	"math"
	"time"

	"github.com/fluxgate/fluxgate/policies"
)

func init() {
	Register("aimd_load_multiplier", func() Spec {
		s := &AIMDLoadMultiplier{}
		s.Parameters.Gradient.MinGradient = -math.MaxFloat64
		s.Parameters.Gradient.MaxGradient = math.MaxFloat64
		s.Parameters.MaxLoadMultiplier = DefaultMaxLoadMultiplier
		s.Parameters.LoadMultiplierLinearIncrement = DefaultLoadMultiplierIncrement
		return s
	})
	Register("aiad_load_multiplier", func() Spec {
		s := &AIADLoadMultiplier{}
		s.Parameters.MaxLoadMultiplier = DefaultMaxLoadMultiplier
		s.Parameters.LoadMultiplierLinearIncrement = DefaultLoadMultiplierIncrement
		s.Parameters.LoadMultiplierLinearDecrement = DefaultLoadMultiplierDecrement
		s.Parameters.OverloadCondition = "gt"
		return s
	})
}

// Defaults of the load multiplier controllers, Aperture's.
const (
	DefaultMaxLoadMultiplier       = 2.0
	DefaultLoadMultiplierIncrement = 0.025
	DefaultLoadMultiplierDecrement = 0.05
	// LoadMultiplierStep is how often the multiplier moves linearly.
	LoadMultiplierStep = 10 * time.Second
)

// LoadMultiplierInPorts are the inputs of both load multiplier controllers.
type LoadMultiplierInPorts struct {
	Signal   *policies.InPort `yaml:"signal"`
	Setpoint *policies.InPort `yaml:"setpoint"`
	// OverloadConfirmation, when valid, must also be true (non-zero) for
	// the service to count as overloaded.
	OverloadConfirmation *policies.InPort `yaml:"overload_confirmation,omitempty"`
}

// LoadMultiplierOutPorts are the outputs of both load multiplier
// controllers.
type LoadMultiplierOutPorts struct {
	IsOverload             *policies.OutPort `yaml:"is_overload,omitempty"`
	DesiredLoadMultiplier  *policies.OutPort `yaml:"desired_load_multiplier,omitempty"`
	ObservedLoadMultiplier *policies.OutPort `yaml:"observed_load_multiplier,omitempty"`
}

// AIMDLoadMultiplier computes a load scheduler's load_multiplier by
// additive increase and multiplicative decrease, the controller of
// Aperture's aimd_load_scheduler:
//
//   - overloaded (signal above setpoint for a negative gradient slope,
//     below it for a positive one, and overload_confirmation true or
//     invalid): every tick the multiplier becomes
//     clamp((signal/setpoint)^slope, min_gradient, max_gradient) × the
//     observed multiplier;
//   - otherwise, every 10s after the last change, it grows by
//     load_multiplier_linear_increment up to max_load_multiplier.
//
// The observed multiplier is min(multiplier, 1): the share of the incoming
// token rate the scheduler admits while saturated. It is computed here,
// not measured at the agents. desired_load_multiplier is the multiplier
// while it is below max_load_multiplier and invalid (pass-through: the
// scheduler admits every flow) once it reaches it, which is where the
// controller starts. An invalid signal or setpoint leaves the multiplier
// as it is and makes desired_load_multiplier and is_overload invalid.
type AIMDLoadMultiplier struct {
	InPorts    LoadMultiplierInPorts  `yaml:"in_ports"`
	OutPorts   LoadMultiplierOutPorts `yaml:"out_ports,omitempty"`
	Parameters struct {
		Gradient struct {
			Slope       float64 `yaml:"slope"`
			MinGradient float64 `yaml:"min_gradient,omitempty"`
			MaxGradient float64 `yaml:"max_gradient,omitempty"`
		} `yaml:"gradient"`
		MaxLoadMultiplier             float64 `yaml:"max_load_multiplier,omitempty"`
		LoadMultiplierLinearIncrement float64 `yaml:"load_multiplier_linear_increment,omitempty"`
	} `yaml:"parameters"`
}

// AIADLoadMultiplier computes a load scheduler's load_multiplier by
// additive increase and additive decrease, the controller of Aperture's
// aiad_load_scheduler: overloaded (signal compared with setpoint by
// overload_condition, gt, lt, gte or lte, and overload_confirmation true
// or invalid), the observed multiplier drops by
// load_multiplier_linear_decrement, down to min_load_multiplier, on the
// first overloaded tick and every 10s while the overload lasts; otherwise
// it grows by load_multiplier_linear_increment every 10s after the last
// change. Outputs, pass-through and invalid inputs are as for
// AIMDLoadMultiplier.
type AIADLoadMultiplier struct {
	InPorts    LoadMultiplierInPorts  `yaml:"in_ports"`
	OutPorts   LoadMultiplierOutPorts `yaml:"out_ports,omitempty"`
	Parameters struct {
		OverloadCondition             string  `yaml:"overload_condition,omitempty"`
		MinLoadMultiplier             float64 `yaml:"min_load_multiplier,omitempty"`
		MaxLoadMultiplier             float64 `yaml:"max_load_multiplier,omitempty"`
		LoadMultiplierLinearIncrement float64 `yaml:"load_multiplier_linear_increment,omitempty"`
		LoadMultiplierLinearDecrement float64 `yaml:"load_multiplier_linear_decrement,omitempty"`
	} `yaml:"parameters"`
}

func (p *LoadMultiplierInPorts) validate(errs []error) []error {
	errs = requirePorts(errs, map[string]*policies.InPort{"signal": p.Signal, "setpoint": p.Setpoint})
	return optionalPorts(errs, map[string]*policies.InPort{"overload_confirmation": p.OverloadConfirmation})
}

func (p *LoadMultiplierInPorts) ports() []InPort {
	return []InPort{{"signal", p.Signal}, {"setpoint", p.Setpoint}, {"overload_confirmation", p.OverloadConfirmation}}
}

func (p *LoadMultiplierOutPorts) ports() []OutPort {
	return []OutPort{{"is_overload", p.IsOverload}, {"desired_load_multiplier", p.DesiredLoadMultiplier}, {"observed_load_multiplier", p.ObservedLoadMultiplier}}
}

func checkNonNegative(errs []error, fields map[string]float64) []error {
	for _, name := range sortedKeys(fields) {
		if v := fields[name]; v < 0 || math.IsNaN(v) {
			errs = append(errs, fmt.Errorf("parameters.%s must not be negative, got %v", name, v))
		}
	}
	return errs
}

// Validate implements the parser's validation hook.
func (s *AIMDLoadMultiplier) Validate() []error {
	errs := s.InPorts.validate(nil)
	p := s.Parameters
	if p.Gradient.Slope == 0 {
		errs = append(errs, fmt.Errorf("parameters.gradient.slope is required and must not be 0"))
	}
	if p.Gradient.MinGradient > p.Gradient.MaxGradient {
		errs = append(errs, fmt.Errorf("parameters.gradient.min_gradient %v is above max_gradient %v", p.Gradient.MinGradient, p.Gradient.MaxGradient))
	}
	if p.MaxLoadMultiplier <= 0 {
		errs = append(errs, fmt.Errorf("parameters.max_load_multiplier must be positive, got %v", p.MaxLoadMultiplier))
	}
	return checkNonNegative(errs, map[string]float64{"load_multiplier_linear_increment": p.LoadMultiplierLinearIncrement})
}

// Validate implements the parser's validation hook.
func (s *AIADLoadMultiplier) Validate() []error {
	errs := s.InPorts.validate(nil)
	p := s.Parameters
	if _, ok := overloadConditions[p.OverloadCondition]; !ok {
		errs = append(errs, fmt.Errorf("parameters.overload_condition %q is not one of gt, lt, gte, lte", p.OverloadCondition))
	}
	if p.MinLoadMultiplier > p.MaxLoadMultiplier {
		errs = append(errs, fmt.Errorf("parameters.min_load_multiplier %v is above max_load_multiplier %v", p.MinLoadMultiplier, p.MaxLoadMultiplier))
	}
	return checkNonNegative(errs, map[string]float64{
		"min_load_multiplier": p.MinLoadMultiplier, "max_load_multiplier": p.MaxLoadMultiplier,
		"load_multiplier_linear_increment": p.LoadMultiplierLinearIncrement, "load_multiplier_linear_decrement": p.LoadMultiplierLinearDecrement,
	})
}

var overloadConditions = map[string]func(signal, setpoint float64) bool{
	"gt":  func(a, b float64) bool { return a > b },
	"lt":  func(a, b float64) bool { return a < b },
	"gte": func(a, b float64) bool { return a >= b },
	"lte": func(a, b float64) bool { return a <= b },
}

// Ports implements Spec.
func (s *AIMDLoadMultiplier) Ports() ([]InPort, []OutPort) {
	return s.InPorts.ports(), s.OutPorts.ports()
}

// Ports implements Spec.
func (s *AIADLoadMultiplier) Ports() ([]InPort, []OutPort) {
	return s.InPorts.ports(), s.OutPorts.ports()
}

// Build implements Spec.
func (s *AIMDLoadMultiplier) Build(*Env) (Component, error) {
	p := s.Parameters
	cond := overloadConditions["gt"]
	if p.Gradient.Slope > 0 {
		cond = overloadConditions["lt"]
	}
	g := p.Gradient
	return &loadMultiplier{
		overloaded: cond, max: p.MaxLoadMultiplier, inc: p.LoadMultiplierLinearIncrement, lm: p.MaxLoadMultiplier,
		cut: func(signal, setpoint, observed float64) (float64, bool) {
			grad := math.Pow(signal/setpoint, g.Slope)
			if math.IsNaN(grad) || setpoint == 0 {
				return 0, false
			}
			return math.Max(g.MinGradient, math.Min(g.MaxGradient, grad)) * observed, true
		},
	}, nil
}

// Build implements Spec.
func (s *AIADLoadMultiplier) Build(*Env) (Component, error) {
	p := s.Parameters
	return &loadMultiplier{
		overloaded: overloadConditions[p.OverloadCondition], max: p.MaxLoadMultiplier, inc: p.LoadMultiplierLinearIncrement,
		lm: p.MaxLoadMultiplier, stepwiseCut: true,
		cut: func(_, _, observed float64) (float64, bool) {
			return math.Max(p.MinLoadMultiplier, observed-p.LoadMultiplierLinearDecrement), true
		},
	}, nil
}

// loadMultiplier is the state machine both controllers share.
type loadMultiplier struct {
	overloaded func(signal, setpoint float64) bool
	// cut is the multiplier under overload, from the observed one.
	cut func(signal, setpoint, observed float64) (float64, bool)
	// stepwiseCut cuts on entering overload and then every
	// LoadMultiplierStep (AIAD) instead of every tick (AIMD).
	stepwiseCut bool
	max, inc    float64

	lm         float64   // the multiplier in effect; ≥ max is pass-through
	lastChange time.Time // of lm by a step
	wasOver    bool
}

func (m *loadMultiplier) Step(t Tick, in, out []Signal) {
	signal, setpoint, confirm := in[0], in[1], in[2]
	observed := math.Min(m.lm, 1)
	if !signal.Valid || !setpoint.Valid {
		out[2] = Value(observed)
		return
	}
	over := m.overloaded(signal.V, setpoint.V) && (!confirm.Valid || confirm.V != 0)
	due := m.lastChange.IsZero() || t.Now.Sub(m.lastChange) >= LoadMultiplierStep
	switch {
	case over && (!m.stepwiseCut || !m.wasOver || due):
		if lm, ok := m.cut(signal.V, setpoint.V, observed); ok {
			m.lm, m.lastChange = lm, t.Now
		}
	case over:
	case due && m.lm < m.max:
		m.lm, m.lastChange = math.Min(m.lm+m.inc, m.max), t.Now
	}
	m.wasOver = over
	out[0] = Bool(over)
	if m.lm < m.max {
		out[1] = Value(m.lm)
	}
	out[2] = Value(math.Min(m.lm, 1))
}
