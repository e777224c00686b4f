package circuit

import (
	"fmt"
	"math"

	"github.com/fluxgate/fluxgate/policies"
)

func init() {
	Register("gradient_controller", func() Spec {
		s := &GradientController{}
		s.Parameters.MinGradient = -math.MaxFloat64
		s.Parameters.MaxGradient = math.MaxFloat64
		return s
	})
}

// GradientController moves a control variable by the ratio of a signal to
// its setpoint:
//
//	gradient = clamp((signal / setpoint) ^ slope, min_gradient, max_gradient)
//	output   = clamp(gradient · control_variable + optimize, min, max)
//
// A negative slope lowers the output as the signal rises above the
// setpoint (latency against a concurrency limit); |slope| < 1 reacts
// gradually. min_gradient and max_gradient default to no bound.
//
// An invalid signal, setpoint or control_variable, a zero setpoint or a
// non-finite gradient makes the output invalid. The optional optimize, min
// and max inputs are ignored while invalid.
type GradientController struct {
	InPorts struct {
		Signal          *policies.InPort `yaml:"signal"`
		Setpoint        *policies.InPort `yaml:"setpoint"`
		ControlVariable *policies.InPort `yaml:"control_variable"`
		Optimize        *policies.InPort `yaml:"optimize,omitempty"`
		Max             *policies.InPort `yaml:"max,omitempty"`
		Min             *policies.InPort `yaml:"min,omitempty"`
	} `yaml:"in_ports"`
	OutPorts struct {
		Output *policies.OutPort `yaml:"output"`
	} `yaml:"out_ports"`
	Parameters struct {
		Slope       float64 `yaml:"slope"`
		MinGradient float64 `yaml:"min_gradient,omitempty"`
		MaxGradient float64 `yaml:"max_gradient,omitempty"`
	} `yaml:"parameters"`
}

// Validate implements the parser's validation hook.
func (s *GradientController) Validate() []error {
	errs := requirePorts(nil, map[string]*policies.InPort{
		"signal": s.InPorts.Signal, "setpoint": s.InPorts.Setpoint, "control_variable": s.InPorts.ControlVariable,
	})
	errs = optionalPorts(errs, map[string]*policies.InPort{"optimize": s.InPorts.Optimize, "max": s.InPorts.Max, "min": s.InPorts.Min})
	p := s.Parameters
	if p.Slope == 0 {
		errs = append(errs, fmt.Errorf("parameters.slope is required and must not be 0"))
	}
	if p.MinGradient > p.MaxGradient {
		errs = append(errs, fmt.Errorf("parameters.min_gradient %v is above max_gradient %v", p.MinGradient, p.MaxGradient))
	}
	return errs
}

// Ports implements Spec.
func (s *GradientController) Ports() ([]InPort, []OutPort) {
	return []InPort{
			{"signal", s.InPorts.Signal}, {"setpoint", s.InPorts.Setpoint}, {"control_variable", s.InPorts.ControlVariable},
			{"optimize", s.InPorts.Optimize}, {"max", s.InPorts.Max}, {"min", s.InPorts.Min},
		},
		[]OutPort{{"output", s.OutPorts.Output}}
}

// Build implements Spec.
func (s *GradientController) Build(*Env) (Component, error) {
	p := s.Parameters
	return gradient{slope: p.Slope, minGrad: p.MinGradient, maxGrad: p.MaxGradient}, nil
}

type gradient struct {
	slope, minGrad, maxGrad float64
}

var _ Component = gradient{}

func (g gradient) Step(_ Tick, in, out []Signal) {
	signal, setpoint, cv, optimize, hi, lo := in[0], in[1], in[2], in[3], in[4], in[5]
	if !signal.Valid || !setpoint.Valid || !cv.Valid || setpoint.V == 0 {
		return
	}
	grad := math.Pow(signal.V/setpoint.V, g.slope)
	if math.IsNaN(grad) {
		return
	}
	grad = math.Max(g.minGrad, math.Min(g.maxGrad, grad))
	v := grad * cv.V
	if optimize.Valid {
		v += optimize.V
	}
	out[0] = Value(clamp(v, lo, hi))
}
