package circuit

import (
	"fmt"
	"time"

	"github.com/fluxgate/fluxgate/policies"
)

func init() { Register("pid_controller", func() Spec { return &PIDController{} }) }

// PIDController drives a signal to its setpoint. With error e = setpoint −
// signal and dt the seconds since the previous tick,
//
//	integral += ki · e · dt
//	output    = kp · e + integral + kd · (e − e_prev) / dt
//
// clamped to [min, max] when those optional inputs are valid. The
// derivative term is 0 on the first tick after a (re)start.
//
// Anti-windup keeps the integral from growing while the output is
// clamped. anti_windup: clamping (the default) is conditional integration:
// a tick's integral step is undone when the output is clamped and the
// error pushes further into the bound. back_calculation instead feeds the
// clamping excess back, integral += kt · (clamped − unclamped) · dt, with
// kt (default 1) the tracking gain.
//
// An invalid signal or setpoint makes the output invalid and resets the
// controller (integral and previous error), as does a valid non-zero
// reset input (which also makes that tick's output invalid).
type PIDController struct {
	InPorts struct {
		Signal   *policies.InPort `yaml:"signal"`
		Setpoint *policies.InPort `yaml:"setpoint"`
		Max      *policies.InPort `yaml:"max,omitempty"`
		Min      *policies.InPort `yaml:"min,omitempty"`
		Reset    *policies.InPort `yaml:"reset,omitempty"`
	} `yaml:"in_ports"`
	OutPorts struct {
		Output *policies.OutPort `yaml:"output"`
	} `yaml:"out_ports"`
	Parameters struct {
		KP         float64 `yaml:"kp,omitempty"`
		KI         float64 `yaml:"ki,omitempty"`
		KD         float64 `yaml:"kd,omitempty"`
		AntiWindup string  `yaml:"anti_windup,omitempty"` // clamping (default) or back_calculation
		KT         float64 `yaml:"kt,omitempty"`
	} `yaml:"parameters"`
}

// Validate implements the parser's validation hook.
func (s *PIDController) Validate() []error {
	errs := requirePorts(nil, map[string]*policies.InPort{"signal": s.InPorts.Signal, "setpoint": s.InPorts.Setpoint})
	errs = optionalPorts(errs, map[string]*policies.InPort{"max": s.InPorts.Max, "min": s.InPorts.Min, "reset": s.InPorts.Reset})
	p := s.Parameters
	switch p.AntiWindup {
	case "", "clamping", "back_calculation":
	default:
		errs = append(errs, fmt.Errorf("parameters.anti_windup %q is not one of clamping, back_calculation", p.AntiWindup))
	}
	if p.KP == 0 && p.KI == 0 && p.KD == 0 {
		errs = append(errs, fmt.Errorf("parameters: set at least one of kp, ki, kd"))
	}
	if p.KT < 0 {
		errs = append(errs, fmt.Errorf("parameters.kt must not be negative"))
	}
	return errs
}

// Ports implements Spec.
func (s *PIDController) Ports() ([]InPort, []OutPort) {
	return []InPort{
			{"signal", s.InPorts.Signal}, {"setpoint", s.InPorts.Setpoint},
			{"max", s.InPorts.Max}, {"min", s.InPorts.Min}, {"reset", s.InPorts.Reset},
		},
		[]OutPort{{"output", s.OutPorts.Output}}
}

// Build implements Spec.
func (s *PIDController) Build(*Env) (Component, error) {
	p := s.Parameters
	c := &pid{kp: p.KP, ki: p.KI, kd: p.KD, backCalc: p.AntiWindup == "back_calculation", kt: p.KT}
	if c.kt == 0 {
		c.kt = 1
	}
	return c, nil
}

type pid struct {
	kp, ki, kd, kt float64
	backCalc       bool

	running  bool
	last     time.Time
	prevErr  float64
	integral float64
}

var _ Component = (*pid)(nil)

func (c *pid) reset() { c.running, c.integral, c.prevErr = false, 0, 0 }

func (c *pid) Step(t Tick, in, out []Signal) {
	signal, setpoint, hi, lo, reset := in[0], in[1], in[2], in[3], in[4]
	if !signal.Valid || !setpoint.Valid || reset.True() {
		c.reset()
		return
	}
	e := setpoint.V - signal.V
	dt := t.Interval.Seconds()
	if c.running && t.Now.After(c.last) {
		dt = t.Now.Sub(c.last).Seconds()
	}
	var deriv float64
	if c.running && dt > 0 {
		deriv = c.kd * (e - c.prevErr) / dt
	}
	step := c.ki * e * dt
	c.integral += step
	u := c.kp*e + c.integral + deriv
	clamped := clamp(u, lo, hi)
	switch {
	case clamped == u:
	case c.backCalc:
		c.integral += c.kt * (clamped - u) * dt
	case (u > clamped && step > 0) || (u < clamped && step < 0):
		c.integral -= step // clamping: do not integrate into the bound
	}
	c.running, c.last, c.prevErr = true, t.Now, e
	out[0] = Value(clamped)
}
