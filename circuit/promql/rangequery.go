package promql

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
	promengine "github.com/prometheus/prometheus/promql"
)

// Series is one series of a range query's answer: its labels and its
// float samples, oldest first. Steps where the series had no value are
// left out, so T may have holes; NaN and ±Inf values are kept as they
// are.
type Series struct {
	Labels map[string]string
	T      []int64 // unix milliseconds
	V      []float64
}

// checkRange refuses a range no source should evaluate.
func checkRange(start, end time.Time, step time.Duration) error {
	switch {
	case step <= 0:
		return fmt.Errorf("promql: range query step %v; want > 0", step)
	case end.Before(start):
		return fmt.Errorf("promql: range query ends (%s) before it starts (%s)", end.Format(time.RFC3339), start.Format(time.RFC3339))
	}
	return nil
}

// QueryRange evaluates q at start, start+step, … up to end and returns
// every float series of the answer. Unlike Query it is not one of the
// circuits' queries: it is not counted in fluxgate_promql_query_*. The
// engine's QueryTimeout and MaxSamples bound it, as does ctx.
func (e *Embedded) QueryRange(ctx context.Context, q string, start, end time.Time, step time.Duration) ([]Series, error) {
	if err := checkRange(start, end, step); err != nil {
		return nil, err
	}
	qry, err := e.engine.NewRangeQuery(ctx, e.db, nil, q, start, end, step)
	if err != nil {
		return nil, err
	}
	defer qry.Close()
	res := qry.Exec(ctx)
	if res.Err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var te promengine.ErrQueryTimeout
		if errors.As(res.Err, &te) {
			return nil, fmt.Errorf("%s: %w", strings.TrimSpace(te.Error()), context.DeadlineExceeded)
		}
		return nil, res.Err
	}
	m, err := res.Matrix()
	if err != nil {
		return nil, fmt.Errorf("promql: range query returned %s; want a range vector", res.Value.Type())
	}
	out := make([]Series, 0, len(m))
	for _, s := range m {
		if len(s.Floats) == 0 {
			continue // native histograms only
		}
		ser := Series{Labels: s.Metric.Map(), T: make([]int64, len(s.Floats)), V: make([]float64, len(s.Floats))}
		for i, p := range s.Floats {
			ser.T[i], ser.V[i] = p.T, p.F
		}
		out = append(out, ser)
	}
	return out, nil
}

// QueryRange sends q (with the configured matchers added) as a range
// query from start to end by step and returns every float series of the
// answer. The source's timeout bounds it, sent to the server and
// enforced locally. It is not counted in fluxgate_promql_query_*.
func (r *Remote) QueryRange(ctx context.Context, q string, start, end time.Time, step time.Duration) ([]Series, error) {
	if err := checkRange(start, end, step); err != nil {
		return nil, err
	}
	q, err := InjectMatchers(q, r.matchers)
	if err != nil {
		return nil, err
	}
	qctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	val, _, _, err := r.api.QueryRange(qctx, q, promv1.Range{Start: start, End: end, Step: step}, promv1.WithTimeout(r.timeout))
	if ctx.Err() == nil {
		r.heard(err, qctx.Err())
	}
	if err != nil {
		if qctx.Err() != nil {
			return nil, qctx.Err()
		}
		return nil, err
	}
	m, ok := val.(model.Matrix)
	if !ok {
		if val == nil {
			return nil, nil
		}
		return nil, fmt.Errorf("promql: range query returned %s; want a matrix", val.Type())
	}
	out := make([]Series, 0, len(m))
	for _, s := range m {
		if len(s.Values) == 0 {
			continue
		}
		ser := Series{Labels: make(map[string]string, len(s.Metric)), T: make([]int64, len(s.Values)), V: make([]float64, len(s.Values))}
		for k, v := range s.Metric {
			ser.Labels[string(k)] = string(v)
		}
		for i, p := range s.Values {
			ser.T[i], ser.V[i] = int64(p.Timestamp), float64(p.Value)
		}
		out = append(out, ser)
	}
	return out, nil
}
