package circuit

import (
	"fmt"
	"time"

	"github.com/fluxgate/fluxgate/policies"
)

func init() { Register("ema", func() Spec { return &EMA{} }) }

// EMA is an exponential moving average of its input over ema_window.
//
// During warmup_window the output is the plain mean of the samples so far
// and is invalid unless valid_during_warmup. After it, each tick
// ema = α·input + (1−α)·ema with α = 2/(N+1), N = ema_window / interval.
// When the average leaves the [min_envelope, max_envelope] band it is
// multiplied by the matching correction factor (defaults 1: no correction).
// An invalid input leaves the average unchanged; the output keeps its
// previous validity.
type EMA struct {
	InPorts struct {
		Input       *policies.InPort `yaml:"input"`
		MaxEnvelope *policies.InPort `yaml:"max_envelope,omitempty"`
		MinEnvelope *policies.InPort `yaml:"min_envelope,omitempty"`
	} `yaml:"in_ports"`
	OutPorts struct {
		Output *policies.OutPort `yaml:"output"`
	} `yaml:"out_ports"`
	Parameters struct {
		EMAWindow                              time.Duration `yaml:"ema_window"`
		WarmupWindow                           time.Duration `yaml:"warmup_window,omitempty"`
		CorrectionFactorOnMaxEnvelopeViolation float64       `yaml:"correction_factor_on_max_envelope_violation,omitempty"`
		CorrectionFactorOnMinEnvelopeViolation float64       `yaml:"correction_factor_on_min_envelope_violation,omitempty"`
		ValidDuringWarmup                      bool          `yaml:"valid_during_warmup,omitempty"`
	} `yaml:"parameters"`
}

// Validate implements the parser's validation hook.
func (s *EMA) Validate() []error {
	errs := requirePorts(nil, map[string]*policies.InPort{"input": s.InPorts.Input})
	if s.Parameters.EMAWindow <= 0 {
		errs = append(errs, fmt.Errorf("parameters.ema_window is required and must be positive"))
	}
	if s.Parameters.WarmupWindow < 0 {
		errs = append(errs, fmt.Errorf("parameters.warmup_window must not be negative"))
	}
	return errs
}

// Ports implements Spec.
func (s *EMA) Ports() ([]InPort, []OutPort) {
	return []InPort{{"input", s.InPorts.Input}, {"max_envelope", s.InPorts.MaxEnvelope}, {"min_envelope", s.InPorts.MinEnvelope}},
		[]OutPort{{"output", s.OutPorts.Output}}
}

// Build implements Spec.
func (s *EMA) Build(env *Env) (Component, error) {
	p := s.Parameters
	n := float64(p.EMAWindow) / float64(env.Interval)
	if n < 1 {
		n = 1
	}
	e := &ema{alpha: 2 / (n + 1), warmup: int(p.WarmupWindow / env.Interval), validWarm: p.ValidDuringWarmup,
		corrMax: p.CorrectionFactorOnMaxEnvelopeViolation, corrMin: p.CorrectionFactorOnMinEnvelopeViolation}
	if e.corrMax == 0 {
		e.corrMax = 1
	}
	if e.corrMin == 0 {
		e.corrMin = 1
	}
	return e, nil
}

type ema struct {
	alpha            float64
	warmup           int
	validWarm        bool
	corrMax, corrMin float64

	samples int     // valid samples seen
	sum     float64 // during warm-up
	avg     float64
}

func (e *ema) Step(_ Tick, in, out []Signal) {
	x, maxEnv, minEnv := in[0], in[1], in[2]
	if x.Valid {
		e.samples++
		if e.samples <= e.warmup || e.samples == 1 {
			e.sum += x.V
			e.avg = e.sum / float64(e.samples)
		} else {
			e.avg = e.alpha*x.V + (1-e.alpha)*e.avg
		}
		if maxEnv.Valid && e.avg > maxEnv.V {
			e.avg *= e.corrMax
		}
		if minEnv.Valid && e.avg < minEnv.V {
			e.avg *= e.corrMin
		}
	}
	switch {
	case e.samples == 0:
	case e.samples < e.warmup && !e.validWarm:
	default:
		out[0] = Value(e.avg)
	}
}
