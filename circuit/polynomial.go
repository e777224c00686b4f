package circuit

import (
	"errors"
	"fmt"
	"math"
	"sort"

	"github.com/fluxgate/fluxgate/policies"
)

func init() {
	Register("polynomial_range_function", func() Spec {
		s := &PolynomialRangeFunction{}
		s.Parameters.Degree = 1
		return s
	})
}

// PolynomialRangeFunction maps its input through the polynomial of degree
// (default 1) that fits data_points best (least squares; with degree + 1
// points it passes through every point). Outside the inputs of the data
// points the input is clamped to the first or last point's input
// (clamp_to_datapoint, the default) or the polynomial is evaluated as it
// is (continue_curve).
//
// An invalid input, or a non-finite result, makes the output invalid.
type PolynomialRangeFunction struct {
	InPorts struct {
		Input *policies.InPort `yaml:"input"`
	} `yaml:"in_ports"`
	OutPorts struct {
		Output *policies.OutPort `yaml:"output"`
	} `yaml:"out_ports"`
	Parameters struct {
		DataPoints       []DataPoint `yaml:"data_points"`
		Degree           int         `yaml:"degree,omitempty"`
		ClampToDatapoint bool        `yaml:"clamp_to_datapoint,omitempty"`
		ContinueCurve    bool        `yaml:"continue_curve,omitempty"`
	} `yaml:"parameters"`
}

// DataPoint is one point a PolynomialRangeFunction fits.
type DataPoint struct {
	Input  float64 `yaml:"input"`
	Output float64 `yaml:"output"`
}

// Validate implements the parser's validation hook.
func (s *PolynomialRangeFunction) Validate() []error {
	errs := requirePorts(nil, map[string]*policies.InPort{"input": s.InPorts.Input})
	p := s.Parameters
	if p.ClampToDatapoint && p.ContinueCurve {
		errs = append(errs, fmt.Errorf("parameters: set at most one of clamp_to_datapoint and continue_curve"))
	}
	if p.Degree < 0 {
		errs = append(errs, fmt.Errorf("parameters.degree must not be negative"))
	} else if len(p.DataPoints) < p.Degree+1 {
		errs = append(errs, fmt.Errorf("parameters.data_points: a polynomial of degree %d needs at least %d points, got %d", p.Degree, p.Degree+1, len(p.DataPoints)))
	} else if _, err := fitPolynomial(p.DataPoints, p.Degree); err != nil {
		errs = append(errs, fmt.Errorf("parameters.data_points: %w", err))
	}
	return errs
}

// Ports implements Spec.
func (s *PolynomialRangeFunction) Ports() ([]InPort, []OutPort) {
	return []InPort{{"input", s.InPorts.Input}}, []OutPort{{"output", s.OutPorts.Output}}
}

// Build implements Spec.
func (s *PolynomialRangeFunction) Build(*Env) (Component, error) {
	p := s.Parameters
	coef, err := fitPolynomial(p.DataPoints, p.Degree)
	if err != nil {
		return nil, err
	}
	f := &polynomial{coef: coef, clamp: !p.ContinueCurve, lo: math.Inf(1), hi: math.Inf(-1)}
	for _, d := range p.DataPoints {
		f.lo, f.hi = math.Min(f.lo, d.Input), math.Max(f.hi, d.Input)
	}
	return f, nil
}

// fitPolynomial returns the coefficients, constant first, of the
// least-squares polynomial of the given degree through points.
func fitPolynomial(points []DataPoint, degree int) ([]float64, error) {
	if degree < 0 || len(points) < degree+1 {
		return nil, errors.New("too few points for the degree")
	}
	xs := make([]float64, len(points))
	for i, p := range points {
		xs[i] = p.Input
	}
	sort.Float64s(xs)
	distinct := 1
	for i := 1; i < len(xs); i++ {
		if xs[i] != xs[i-1] {
			distinct++
		}
	}
	if distinct < degree+1 {
		return nil, fmt.Errorf("a polynomial of degree %d needs %d distinct inputs, got %d", degree, degree+1, distinct)
	}
	// Normal equations A·c = b, A[i][j] = Σ x^(i+j), b[i] = Σ y·x^i.
	n := degree + 1
	a := make([][]float64, n)
	for i := range a {
		a[i] = make([]float64, n+1)
	}
	for _, p := range points {
		for i := 0; i < n; i++ {
			xi := math.Pow(p.Input, float64(i))
			for j := 0; j < n; j++ {
				a[i][j] += xi * math.Pow(p.Input, float64(j))
			}
			a[i][n] += p.Output * xi
		}
	}
	// Gaussian elimination with partial pivoting.
	for col := 0; col < n; col++ {
		pivot := col
		for r := col + 1; r < n; r++ {
			if math.Abs(a[r][col]) > math.Abs(a[pivot][col]) {
				pivot = r
			}
		}
		if a[pivot][col] == 0 {
			return nil, errors.New("the points do not determine a polynomial")
		}
		a[col], a[pivot] = a[pivot], a[col]
		for r := 0; r < n; r++ {
			if r == col {
				continue
			}
			f := a[r][col] / a[col][col]
			for c := col; c <= n; c++ {
				a[r][c] -= f * a[col][c]
			}
		}
	}
	coef := make([]float64, n)
	for i := range coef {
		coef[i] = a[i][n] / a[i][i]
		if math.IsNaN(coef[i]) || math.IsInf(coef[i], 0) {
			return nil, errors.New("the fit is not finite")
		}
	}
	return coef, nil
}

type polynomial struct {
	coef   []float64
	clamp  bool
	lo, hi float64
}

var _ Component = (*polynomial)(nil)

func (f *polynomial) Step(_ Tick, in, out []Signal) {
	if !in[0].Valid {
		return
	}
	x := in[0].V
	if f.clamp {
		x = math.Max(f.lo, math.Min(f.hi, x))
	}
	var y float64
	for i := len(f.coef) - 1; i >= 0; i-- { // Horner
		y = y*x + f.coef[i]
	}
	out[0] = Value(y)
}
