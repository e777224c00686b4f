package circuit

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/fluxgate/fluxgate/policies"
)

func init() { Register("unary_operator", func() Spec { return &UnaryOperator{} }) }

// UnaryOperator applies a function of one argument: output = operator(input).
// Operators: abs, acos, acosh, asin, asinh, atan, atanh, cbrt, ceil, cos,
// cosh, erf, erfc, erfcinv, erfinv, exp, exp2, expm1, floor, gamma, j0, j1,
// lgamma (of |Γ|), log, log10, log1p, log2, round, round_to_even
// (Aperture's spelling roundtoeven is accepted too), sin, sinh, sqrt, tan,
// tanh, trunc, y0, y1. Trigonometric functions work in radians.
//
// An invalid input makes the output invalid, and so does a result that is
// NaN or infinite (log of 0, sqrt of -1, acos of 2).
type UnaryOperator struct {
	Operator string `yaml:"operator"`
	InPorts  struct {
		Input *policies.InPort `yaml:"input"`
	} `yaml:"in_ports"`
	OutPorts struct {
		Output *policies.OutPort `yaml:"output"`
	} `yaml:"out_ports"`
}

var unaryOps = map[string]func(float64) float64{
	"abs": math.Abs, "acos": math.Acos, "acosh": math.Acosh, "asin": math.Asin, "asinh": math.Asinh,
	"atan": math.Atan, "atanh": math.Atanh, "cbrt": math.Cbrt, "ceil": math.Ceil, "cos": math.Cos,
	"cosh": math.Cosh, "erf": math.Erf, "erfc": math.Erfc, "erfcinv": math.Erfcinv, "erfinv": math.Erfinv,
	"exp": math.Exp, "exp2": math.Exp2, "expm1": math.Expm1, "floor": math.Floor, "gamma": math.Gamma,
	"j0": math.J0, "j1": math.J1,
	"lgamma": func(x float64) float64 { v, _ := math.Lgamma(x); return v },
	"log":    math.Log, "log10": math.Log10, "log1p": math.Log1p, "log2": math.Log2,
	"round": math.Round, "round_to_even": math.RoundToEven, "roundtoeven": math.RoundToEven,
	"sin": math.Sin, "sinh": math.Sinh, "sqrt": math.Sqrt, "tan": math.Tan, "tanh": math.Tanh,
	"trunc": math.Trunc, "y0": math.Y0, "y1": math.Y1,
}

func unaryOpNames() string {
	names := make([]string, 0, len(unaryOps))
	for n := range unaryOps {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// Validate implements the parser's validation hook.
func (s *UnaryOperator) Validate() []error {
	var errs []error
	if unaryOps[s.Operator] == nil {
		errs = append(errs, fmt.Errorf("operator %q is not one of %s", s.Operator, unaryOpNames()))
	}
	return requirePorts(errs, map[string]*policies.InPort{"input": s.InPorts.Input})
}

// Ports implements Spec.
func (s *UnaryOperator) Ports() ([]InPort, []OutPort) {
	return []InPort{{"input", s.InPorts.Input}}, []OutPort{{"output", s.OutPorts.Output}}
}

// Build implements Spec.
func (s *UnaryOperator) Build(*Env) (Component, error) {
	op := unaryOps[s.Operator]
	if op == nil {
		return nil, fmt.Errorf("operator %q is unknown", s.Operator)
	}
	return unary(op), nil
}

type unary func(float64) float64

var _ Component = unary(nil)

func (op unary) Step(_ Tick, in, out []Signal) {
	if in[0].Valid {
		out[0] = Value(op(in[0].V))
	}
}
