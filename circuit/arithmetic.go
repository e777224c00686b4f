package circuit

import (
	"fmt"
	"math"

	"github.com/fluxgate/fluxgate/policies"
)

func init() { Register("arithmetic_combinator", func() Spec { return &ArithmeticCombinator{} }) }

// ArithmeticCombinator applies a binary operator: output = lhs OP rhs.
// Operators: add, sub, mul, div, xor, lshift, rshift (the last three on
// the integer parts). An invalid input, a division by zero or a
// non-finite result makes the output invalid.
type ArithmeticCombinator struct {
	Operator string `yaml:"operator"`
	InPorts  struct {
		LHS *policies.InPort `yaml:"lhs"`
		RHS *policies.InPort `yaml:"rhs"`
	} `yaml:"in_ports"`
	OutPorts struct {
		Output *policies.OutPort `yaml:"output"`
	} `yaml:"out_ports"`
}

var arithmeticOps = map[string]func(a, b float64) float64{
	"add": func(a, b float64) float64 { return a + b },
	"sub": func(a, b float64) float64 { return a - b },
	"mul": func(a, b float64) float64 { return a * b },
	"div": func(a, b float64) float64 {
		if b == 0 {
			return math.NaN()
		}
		return a / b
	},
	"xor":    func(a, b float64) float64 { return float64(int64(a) ^ int64(b)) },
	"lshift": func(a, b float64) float64 { return float64(int64(a) << uint64(b)) },
	"rshift": func(a, b float64) float64 { return float64(int64(a) >> uint64(b)) },
}

// Validate implements the parser's validation hook.
func (s *ArithmeticCombinator) Validate() []error {
	var errs []error
	if arithmeticOps[s.Operator] == nil {
		errs = append(errs, fmt.Errorf("operator %q is not one of add, sub, mul, div, xor, lshift, rshift", s.Operator))
	}
	errs = requirePorts(errs, map[string]*policies.InPort{"lhs": s.InPorts.LHS, "rhs": s.InPorts.RHS})
	return errs
}

// Ports implements Spec.
func (s *ArithmeticCombinator) Ports() ([]InPort, []OutPort) {
	return []InPort{{"lhs", s.InPorts.LHS}, {"rhs", s.InPorts.RHS}}, []OutPort{{"output", s.OutPorts.Output}}
}

// Build implements Spec.
func (s *ArithmeticCombinator) Build(*Env) (Component, error) {
	op := arithmeticOps[s.Operator]
	if op == nil {
		return nil, fmt.Errorf("operator %q is unknown", s.Operator)
	}
	return arithmetic(op), nil
}

type arithmetic func(a, b float64) float64

func (op arithmetic) Step(_ Tick, in, out []Signal) {
	if in[0].Valid && in[1].Valid {
		out[0] = Value(op(in[0].V, in[1].V))
	}
}
