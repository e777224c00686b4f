package ui

import (
	"context"
	"errors"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/fluxgate/fluxgate/circuit/promql"
)

// RangeSource answers PromQL range queries: the agent's embedded TSDB or
// the Prometheus server its circuits query (circuit/promql).
type RangeSource interface {
	QueryRange(ctx context.Context, q string, start, end time.Time, step time.Duration) ([]promql.Series, error)
}

// Bounds of the history answers (GET /v1/ui/trends/{view}).
const (
	// TrendWindow is how far back the history goes.
	TrendWindow = 15 * time.Minute
	// TrendPoints is the most steps in TrendWindow; the step is the
	// window divided by it, rounded up to a whole second (3 s).
	TrendPoints = 300
	// MaxTrendSeries bounds the series of one answer; the rest are left
	// out and the answer says so (truncated).
	MaxTrendSeries = 256
	// DefaultRateWindow is the range of rate() in the history queries.
	DefaultRateWindow = 15 * time.Second
	// DefaultTrendTimeout bounds one answer, its queries included.
	DefaultTrendTimeout = 5 * time.Second
	// maxTrendQueries is how many answers are computed at once; others
	// wait for a slot within their timeout.
	maxTrendQueries = 2
)

// trendViews are the queries of each view. Each is one PromQL expression
// whose series carry a stat label naming what they are, so that one range
// query (and one more for the latest point) answers a view. $W is the
// rate window.
var trendViews = map[string]string{
	// Per control point: decisions per second by type and reason (a flow
	// that several components decide counts once for each).
	"control_points": `label_replace(sum by (control_point, decision_type, reason) (rate(fluxgate_flow_decisions_total[$W])), "stat", "decisions", "", "")`,
	// Per flux meter: latency percentiles and flows per second.
	"flux_meters": `label_replace(histogram_quantile(0.5, sum by (flux_meter_name, le) (rate(flux_meter_bucket[$W]))), "stat", "p50", "", "")
or label_replace(histogram_quantile(0.9, sum by (flux_meter_name, le) (rate(flux_meter_bucket[$W]))), "stat", "p90", "", "")
or label_replace(histogram_quantile(0.99, sum by (flux_meter_name, le) (rate(flux_meter_bucket[$W]))), "stat", "p99", "", "")
or label_replace(sum by (flux_meter_name) (rate(flux_meter_count[$W])), "stat", "rate", "", "")`,
	// Per upstream target: requests per second, the share of 5xx answers,
	// p99 latency and effective weight; per breaker its state, per route
	// its canary weight.
	"gateway": `label_replace(sum by (upstream_host) (rate(fluxgate_http_requests_total[$W])), "stat", "requests", "", "")
or label_replace(
     (sum by (upstream_host) (rate(fluxgate_http_requests_total{status=~"5.."}[$W])) or 0 * sum by (upstream_host) (rate(fluxgate_http_requests_total[$W])))
   / sum by (upstream_host) (rate(fluxgate_http_requests_total[$W])), "stat", "errors", "", "")
or label_replace(histogram_quantile(0.99, sum by (upstream_host, le) (rate(fluxgate_http_request_duration_seconds_bucket[$W]))), "stat", "p99", "", "")
or label_replace(max by (upstream, upstream_host) (fluxgate_upstream_weight), "stat", "weight", "", "")
or label_replace(max by (circuit_name) (fluxgate_circuit_breaker_state), "stat", "breaker", "", "")
or label_replace(max by (route_id) (fluxgate_canary_weight), "stat", "canary_weight", "", "")`,
}

// Trends is the body of GET /v1/ui/trends/{view}: a view's series over
// the last TrendWindow, on a grid of StepMs-aligned times.
type Trends struct {
	View string `json:"view"`
	// Source names where the history comes from.
	Source       string `json:"source"`
	NowMs        int64  `json:"now_ms"`
	StepMs       int64  `json:"step_ms"`
	WindowMs     int64  `json:"window_ms"`
	RateWindowMs int64  `json:"rate_window_ms"`
	// T are the times of the points, unix ms: the grid steps after the
	// request's since (the whole window without it), then, when Tail,
	// one more at NowMs that the next answer replaces.
	T    []int64 `json:"t"`
	Tail bool    `json:"tail"`
	// Series each have one value per T.
	Series []TrendSeries `json:"series"`
	// Truncated: more than MaxTrendSeries series; the first by labels
	// are kept.
	Truncated bool `json:"truncated,omitempty"`
}

// TrendSeries is one series of a view.
type TrendSeries struct {
	Labels map[string]string `json:"labels"`
	// V has one value per Trends.T; null where the series had none (no
	// sample, or NaN such as a percentile without flows).
	V []*float64 `json:"v"`
}

// trendStep is the grid step: TrendWindow / TrendPoints, rounded up to a
// whole second.
func trendStep() time.Duration {
	step := TrendWindow / TrendPoints
	if step%time.Second != 0 {
		step = step.Truncate(time.Second) + time.Second
	}
	return step
}

func (u *UI) serveTrends(w http.ResponseWriter, r *http.Request) {
	view := r.PathValue("view")
	if _, ok := trendViews[view]; !ok {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not_found", "message": "no history view " + strconv.Quote(view) + "; there are control_points, flux_meters and gateway"})
		return
	}
	var since int64
	if s := r.URL.Query().Get("since"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil || v < 0 {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "bad_request", "message": "since must be unix milliseconds"})
			return
		}
		since = v
	}
	if u.opts.Range == nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "no_source",
			"message": "no history: this agent has neither an embedded TSDB nor a Prometheus server to query"})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), u.opts.TrendTimeout)
	defer cancel()
	select {
	case u.trendSlots <- struct{}{}:
		defer func() { <-u.trendSlots }()
	case <-ctx.Done():
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "busy", "message": "history queries are busy; try again"})
		return
	}
	out, err := u.trends(ctx, view, trendQuery(view, u.opts.RateWindow), since)
	if err != nil {
		code, kind := http.StatusBadGateway, "query_failed"
		if errors.Is(err, context.DeadlineExceeded) {
			code, kind = http.StatusGatewayTimeout, "timeout"
		}
		writeJSON(w, code, map[string]string{"error": kind, "message": u.opts.RangeName + ": " + err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// trendQuery is the expression of view with rate window w.
func trendQuery(view string, w time.Duration) string {
	return strings.ReplaceAll(trendViews[view], "$W", promDuration(w))
}

// trends evaluates expr on the grid after since and at now.
func (u *UI) trends(ctx context.Context, view, expr string, since int64) (Trends, error) {
	step := trendStep()
	stepMs := step.Milliseconds()
	now := u.opts.Now()
	nowMs := now.UnixMilli()
	gridEnd := nowMs - nowMs%stepMs
	start := gridEnd - TrendWindow.Milliseconds() + stepMs
	if next := since - since%stepMs + stepMs; since > 0 && next > start {
		start = next
	}
	out := Trends{View: view, Source: u.opts.RangeName, NowMs: nowMs, StepMs: stepMs, WindowMs: TrendWindow.Milliseconds(),
		RateWindowMs: u.opts.RateWindow.Milliseconds(), T: []int64{}, Series: []TrendSeries{}}
	var got []promql.Series
	if start <= gridEnd {
		s, err := u.opts.Range.QueryRange(ctx, expr, time.UnixMilli(start), time.UnixMilli(gridEnd), step)
		if err != nil {
			return out, err
		}
		got = s
		for t := start; t <= gridEnd; t += stepMs {
			out.T = append(out.T, t)
		}
	}
	if nowMs > gridEnd {
		s, err := u.opts.Range.QueryRange(ctx, expr, time.UnixMilli(nowMs), time.UnixMilli(nowMs), step)
		if err != nil {
			return out, err
		}
		got = append(got, s...)
		out.T = append(out.T, nowMs)
		out.Tail = true
	}
	out.Series, out.Truncated = align(out.T, got)
	return out, nil
}

// align puts the values of got on the times ts, one TrendSeries per label
// set (a series may come in several parts), sorted by labels: the first
// MaxTrendSeries of them, and whether there were more.
func align(ts []int64, got []promql.Series) ([]TrendSeries, bool) {
	at := make(map[int64]int, len(ts))
	for i, t := range ts {
		at[t] = i
	}
	byKey := map[string]*TrendSeries{}
	for _, s := range got {
		k := labelKey(s.Labels)
		ser := byKey[k]
		if ser == nil {
			ser = &TrendSeries{Labels: s.Labels, V: make([]*float64, len(ts))}
			byKey[k] = ser
		}
		for i, t := range s.T {
			j, ok := at[t]
			if !ok || math.IsNaN(s.V[i]) || math.IsInf(s.V[i], 0) {
				continue
			}
			v := s.V[i]
			ser.V[j] = &v
		}
	}
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	truncated := len(keys) > MaxTrendSeries
	if truncated {
		keys = keys[:MaxTrendSeries]
	}
	out := make([]TrendSeries, 0, len(keys))
	for _, k := range keys {
		out = append(out, *byKey[k])
	}
	return out, truncated
}

// labelKey is a label set as a sortable string.
func labelKey(ls map[string]string) string {
	names := make([]string, 0, len(ls))
	for n := range ls {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		b.WriteString(n)
		b.WriteByte(0)
		b.WriteString(ls[n])
		b.WriteByte(0)
	}
	return b.String()
}

// promDuration writes d as a PromQL duration in whole milliseconds.
func promDuration(d time.Duration) string {
	if d%time.Second == 0 {
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
}
