package circuit

import (
	"fmt"
	"time"

	"github.com/fluxgate/fluxgate/policies"
)

func init() { Register("decider", func() Spec { return &Decider{} }) }

// Decider compares lhs with rhs (operator gt, lt, gte, lte, eq, neq) and
// outputs 1 or 0. The output turns true only once the comparison has held
// for true_for, and false once it has failed for false_for (both default
// 0: at once); until then it keeps its previous value. It starts false. An
// invalid input makes the output invalid and restarts it.
type Decider struct {
	Operator string        `yaml:"operator"`
	TrueFor  time.Duration `yaml:"true_for,omitempty"`
	FalseFor time.Duration `yaml:"false_for,omitempty"`
	InPorts  struct {
		LHS *policies.InPort `yaml:"lhs"`
		RHS *policies.InPort `yaml:"rhs"`
	} `yaml:"in_ports"`
	OutPorts struct {
		Output *policies.OutPort `yaml:"output"`
	} `yaml:"out_ports"`
}

var comparisons = map[string]func(a, b float64) bool{
	"gt":  func(a, b float64) bool { return a > b },
	"lt":  func(a, b float64) bool { return a < b },
	"gte": func(a, b float64) bool { return a >= b },
	"lte": func(a, b float64) bool { return a <= b },
	"eq":  func(a, b float64) bool { return a == b },
	"neq": func(a, b float64) bool { return a != b },
}

// Validate implements the parser's validation hook.
func (s *Decider) Validate() []error {
	var errs []error
	if comparisons[s.Operator] == nil {
		errs = append(errs, fmt.Errorf("operator %q is not one of gt, lt, gte, lte, eq, neq", s.Operator))
	}
	if s.TrueFor < 0 || s.FalseFor < 0 {
		errs = append(errs, fmt.Errorf("true_for and false_for must not be negative"))
	}
	return requirePorts(errs, map[string]*policies.InPort{"lhs": s.InPorts.LHS, "rhs": s.InPorts.RHS})
}

// Ports implements Spec.
func (s *Decider) Ports() ([]InPort, []OutPort) {
	return []InPort{{"lhs", s.InPorts.LHS}, {"rhs", s.InPorts.RHS}}, []OutPort{{"output", s.OutPorts.Output}}
}

// Build implements Spec.
func (s *Decider) Build(*Env) (Component, error) {
	cmp := comparisons[s.Operator]
	if cmp == nil {
		return nil, fmt.Errorf("operator %q is unknown", s.Operator)
	}
	return &decider{cmp: cmp, trueFor: s.TrueFor, falseFor: s.FalseFor}, nil
}

type decider struct {
	cmp               func(a, b float64) bool
	trueFor, falseFor time.Duration

	out       Signal
	since     time.Time // when the comparison last changed its result
	lastValue bool
	started   bool
}

func (d *decider) Step(t Tick, in, out []Signal) {
	if !in[0].Valid || !in[1].Valid {
		d.started = false
		d.out = Invalid
		return
	}
	v := d.cmp(in[0].V, in[1].V)
	if !d.started {
		d.out = Bool(false) // starts false; true_for delays the first true too
	}
	if !d.started || v != d.lastValue {
		d.started, d.lastValue, d.since = true, v, t.Now
	}
	held := t.Now.Sub(d.since)
	switch {
	case v && held >= d.trueFor:
		d.out = Bool(true)
	case !v && held >= d.falseFor:
		d.out = Bool(false)
	}
	out[0] = d.out
}
