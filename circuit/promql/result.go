package promql

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// ResultError reports a query that was evaluated but did not yield one
// finite number.
type ResultError struct {
	// Kind is one of "no_data", "many_series", "not_finite", "type".
	Kind string
	msg  string
}

func (e *ResultError) Error() string { return e.msg }

// ErrNoData is the *ResultError of a query that returned an empty vector.
var ErrNoData = &ResultError{Kind: "no_data", msg: "query returned no data"}

func manySeries(n int) error {
	return &ResultError{Kind: "many_series", msg: fmt.Sprintf("query returned %d series; want 1", n)}
}

func wrongType(what string) error {
	return &ResultError{Kind: "type", msg: fmt.Sprintf("query returned %s; want a scalar or an instant vector", what)}
}

// finite checks a result value.
func finite(v float64) (float64, error) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, &ResultError{Kind: "not_finite", msg: fmt.Sprintf("query returned %v", v)}
	}
	return v, nil
}

// newParser is the parser for every query: Prometheus's defaults.
func newParser() parser.Parser { return parser.NewParser(parser.Options{}) }

// Check reports whether q is a valid PromQL expression that can yield a
// number (a scalar or an instant vector). A syntax error carries the
// position within q ("1:12: parse error: ...").
func Check(q string) error {
	expr, err := newParser().ParseExpr(q)
	if err != nil {
		return err
	}
	switch t := expr.Type(); t {
	case parser.ValueTypeScalar, parser.ValueTypeVector:
		return nil
	default:
		return fmt.Errorf("expression is a %s; want a scalar or an instant vector", documentedType(t))
	}
}

func documentedType(t parser.ValueType) string {
	switch t {
	case parser.ValueTypeMatrix:
		return "range vector"
	case parser.ValueTypeString:
		return "string"
	}
	return string(t)
}

// ParseMatchers parses label matchers such as `cluster="east"` or
// `env=~"prod|staging"`, one per element.
func ParseMatchers(ms []string) ([]*labels.Matcher, error) {
	if len(ms) == 0 {
		return nil, nil
	}
	out, err := newParser().ParseMetricSelector("{" + strings.Join(ms, ",") + "}")
	if err != nil {
		return nil, fmt.Errorf("promql: label matchers %q: %w", ms, err)
	}
	return out, nil
}

// InjectMatchers returns q with ms added to every vector selector (those
// inside range selectors and subqueries included). A selector that already
// has a matcher on the same label keeps it: both must then match, so an
// injected matcher can never be widened by the query.
func InjectMatchers(q string, ms []*labels.Matcher) (string, error) {
	if len(ms) == 0 {
		return q, nil
	}
	expr, err := newParser().ParseExpr(q)
	if err != nil {
		return "", err
	}
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			vs.LabelMatchers = append(vs.LabelMatchers, ms...)
		}
		return nil
	})
	return expr.String(), nil
}

type policyKey struct{}

// WithPolicy returns ctx naming the policy a query is evaluated for; the
// sources use it to label their error counts.
func WithPolicy(ctx context.Context, policy string) context.Context {
	return context.WithValue(ctx, policyKey{}, policy)
}

func policyOf(ctx context.Context) string {
	p, _ := ctx.Value(policyKey{}).(string)
	return p
}

// queryMetrics are shared by the sources: one registration per registry.
type queryMetrics struct {
	duration *prometheus.HistogramVec
	errors   *prometheus.CounterVec
}

func newQueryMetrics(reg prometheus.Registerer) (*queryMetrics, error) {
	m := &queryMetrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "fluxgate_promql_query_duration_seconds",
			Help:    "Duration of circuit PromQL queries, by source (embedded, remote).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"source"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fluxgate_promql_query_errors_total",
			Help: "Circuit PromQL queries that failed or did not yield one number, by source, policy and reason (error, timeout, no_data, many_series, not_finite, type).",
		}, []string{"source", "policy_name", "reason"}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	if m.duration, err = registerOrReuse(reg, m.duration); err != nil {
		return nil, err
	}
	if m.errors, err = registerOrReuse(reg, m.errors); err != nil {
		return nil, err
	}
	return m, nil
}

// registerOrReuse registers c, or returns the identical collector already
// registered (by the other source on the same registry).
func registerOrReuse[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, fmt.Errorf("promql: register metrics: %w", err)
	}
	return c, nil
}

// observe records one query's outcome.
func (m *queryMetrics) observe(ctx context.Context, source string, start time.Time, err error) {
	m.duration.WithLabelValues(source).Observe(time.Since(start).Seconds())
	if err == nil || errors.Is(err, context.Canceled) {
		return // a canceled query is a stopping caller, not a failure
	}
	reason := "error"
	var re *ResultError
	switch {
	case errors.As(err, &re):
		reason = re.Kind
	case errors.Is(err, context.DeadlineExceeded):
		reason = "timeout"
	}
	m.errors.WithLabelValues(source, policyOf(ctx), reason).Inc()
}
