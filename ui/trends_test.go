package ui

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fluxgate/fluxgate/circuit/promql"
)

// fakeRange answers every range query with one series per label set in
// series, valued by fn at each step, and records what it was asked.
type fakeRange struct {
	mu     sync.Mutex
	asked  []rangeCall
	series []map[string]string
	fn     func(i int, t int64) float64
	err    error
	block  bool // wait for the context to end
}

type rangeCall struct {
	q          string
	start, end int64
	step       time.Duration
}

func (f *fakeRange) QueryRange(ctx context.Context, q string, start, end time.Time, step time.Duration) ([]promql.Series, error) {
	f.mu.Lock()
	f.asked = append(f.asked, rangeCall{q, start.UnixMilli(), end.UnixMilli(), step})
	f.mu.Unlock()
	if f.block {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if f.err != nil {
		return nil, f.err
	}
	var out []promql.Series
	for i, ls := range f.series {
		s := promql.Series{Labels: ls}
		for t := start.UnixMilli(); t <= end.UnixMilli(); t += step.Milliseconds() {
			s.T = append(s.T, t)
			s.V = append(s.V, f.fn(i, t))
		}
		out = append(out, s)
	}
	return out, nil
}

func (f *fakeRange) calls() []rangeCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]rangeCall(nil), f.asked...)
}

func serve(t *testing.T, u *UI) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	u.Register(func(pattern string, h http.Handler) { mux.Handle(pattern, h) })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, url string, into any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if into != nil {
		if err := json.NewDecoder(resp.Body).Decode(into); err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
	}
	return resp.StatusCode
}

// now is 1,000,001.5 s after the epoch: between two 3 s steps.
var trendNow = time.UnixMilli(1_000_001_500)

func TestTrendsGrid(t *testing.T) {
	f := &fakeRange{
		series: []map[string]string{{"flux_meter_name": "lat", "stat": "p50"}, {"flux_meter_name": "lat", "stat": "p99"}},
		fn: func(i int, t int64) float64 {
			if i == 1 && t%6000 == 0 {
				return math.NaN() // a percentile without flows
			}
			return float64(t / 1000)
		},
	}
	u := New(Options{Range: f, RangeName: "the fake", Now: func() time.Time { return trendNow }})
	srv := serve(t, u)

	var tr Trends
	if code := get(t, srv.URL+"/v1/ui/trends/flux_meters", &tr); code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	gridEnd := int64(999_999_000) // the last multiple of 3 s before now
	if tr.StepMs != 3000 || tr.WindowMs != 900_000 || tr.NowMs != trendNow.UnixMilli() || tr.Source != "the fake" || tr.RateWindowMs != 15000 {
		t.Errorf("answer = %+v", tr)
	}
	// 300 steps ending at the last one before now, then now.
	if len(tr.T) != TrendPoints+1 || !tr.Tail || tr.T[0] != gridEnd-299*3000 || tr.T[299] != gridEnd || tr.T[300] != trendNow.UnixMilli() {
		t.Fatalf("times: %d of them, %v … %v, tail %v", len(tr.T), tr.T[:2], tr.T[len(tr.T)-2:], tr.Tail)
	}
	if len(tr.Series) != 2 || tr.Series[0].Labels["stat"] != "p50" || tr.Series[1].Labels["stat"] != "p99" {
		t.Fatalf("series = %+v", tr.Series)
	}
	for i, v := range tr.Series[0].V {
		if v == nil || *v != float64(tr.T[i]/1000) {
			t.Fatalf("p50 at %d = %v", tr.T[i], v)
		}
	}
	nulls := 0
	for i, v := range tr.Series[1].V {
		if (v == nil) != (tr.T[i]%6000 == 0) {
			t.Fatalf("p99 at %d = %v", tr.T[i], v)
		}
		if v == nil {
			nulls++
		}
	}
	if nulls == 0 {
		t.Error("no NaN became null")
	}
	calls := f.calls()
	if len(calls) != 2 || calls[0].step != 3*time.Second || calls[0].start != tr.T[0] || calls[0].end != gridEnd ||
		calls[1].start != trendNow.UnixMilli() || calls[1].end != trendNow.UnixMilli() {
		t.Errorf("queries = %+v", calls)
	}
	if q := calls[0].q; !strings.Contains(q, "flux_meter_bucket[15s]") || !strings.Contains(q, `"stat", "p99"`) {
		t.Errorf("query %s", q)
	}

	// since: only the steps after it, then now.
	var more Trends
	get(t, fmt.Sprintf("%s/v1/ui/trends/gateway?since=%d", srv.URL, gridEnd-3000), &more)
	if len(more.T) != 2 || more.T[0] != gridEnd || more.T[1] != trendNow.UnixMilli() || !more.Tail {
		t.Errorf("since the step before last: times %v", more.T)
	}
	if q := f.calls()[2].q; !strings.Contains(q, "fluxgate_http_requests_total") || !strings.Contains(q, "fluxgate_canary_weight") {
		t.Errorf("gateway query %s", q)
	}
	// since the last step: no range query, only now.
	n := len(f.calls())
	get(t, fmt.Sprintf("%s/v1/ui/trends/gateway?since=%d", srv.URL, gridEnd), &more)
	if len(more.T) != 1 || len(f.calls()) != n+1 {
		t.Errorf("since the last step: times %v after %d queries", more.T, len(f.calls())-n)
	}
	// A since older than the window gives the whole window.
	get(t, srv.URL+"/v1/ui/trends/gateway?since=1", &more)
	if len(more.T) != TrendPoints+1 {
		t.Errorf("since=1: %d times", len(more.T))
	}
}

// On a step, there is no tail point.
func TestTrendsOnAStep(t *testing.T) {
	f := &fakeRange{series: []map[string]string{{"stat": "requests"}}, fn: func(int, int64) float64 { return 1 }}
	u := New(Options{Range: f, Now: func() time.Time { return time.UnixMilli(999_999_000) }})
	var tr Trends
	get(t, serve(t, u).URL+"/v1/ui/trends/gateway", &tr)
	if tr.Tail || len(tr.T) != TrendPoints || tr.T[len(tr.T)-1] != 999_999_000 || len(f.calls()) != 1 {
		t.Errorf("times %d, tail %v, queries %d", len(tr.T), tr.Tail, len(f.calls()))
	}
}

func TestTrendsBounds(t *testing.T) {
	var many []map[string]string
	for i := 0; i < MaxTrendSeries+10; i++ {
		many = append(many, map[string]string{"upstream_host": fmt.Sprintf("10.0.0.%03d:80", i), "stat": "requests"})
	}
	f := &fakeRange{series: many, fn: func(int, int64) float64 { return 1 }}
	srv := serve(t, New(Options{Range: f, Now: func() time.Time { return trendNow }}))
	var tr Trends
	get(t, srv.URL+"/v1/ui/trends/gateway", &tr)
	if len(tr.Series) != MaxTrendSeries || !tr.Truncated || tr.Series[0].Labels["upstream_host"] != "10.0.0.000:80" {
		t.Errorf("%d series, truncated %v", len(tr.Series), tr.Truncated)
	}

	for _, tc := range []struct {
		name string
		opts Options
		path string
		code int
		kind string
	}{
		{"no source", Options{}, "/v1/ui/trends/flux_meters", http.StatusServiceUnavailable, "no_source"},
		{"unknown view", Options{Range: f}, "/v1/ui/trends/nope", http.StatusNotFound, "not_found"},
		{"bad since", Options{Range: f}, "/v1/ui/trends/gateway?since=yesterday", http.StatusBadRequest, "bad_request"},
		{"negative since", Options{Range: f}, "/v1/ui/trends/gateway?since=-5", http.StatusBadRequest, "bad_request"},
		{"query error", Options{Range: &fakeRange{err: errors.New("connection refused")}, RangeName: "Prometheus at x"}, "/v1/ui/trends/gateway", http.StatusBadGateway, "query_failed"},
		{"timeout", Options{Range: &fakeRange{block: true}, TrendTimeout: 50 * time.Millisecond}, "/v1/ui/trends/gateway", http.StatusGatewayTimeout, "timeout"},
	} {
		var body map[string]string
		if code := get(t, serve(t, New(tc.opts)).URL+tc.path, &body); code != tc.code || body["error"] != tc.kind || body["message"] == "" {
			t.Errorf("%s: %d %v, want %d %s", tc.name, code, body, tc.code, tc.kind)
		}
	}
}

// At most maxTrendQueries answers are computed at once: a third waits
// for a slot, and gives up (503) when its timeout ends first.
func TestTrendsSlots(t *testing.T) {
	f := &fakeRange{block: true}
	u := New(Options{Range: f, TrendTimeout: time.Hour})
	srv := serve(t, u)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := 0; i < maxTrendQueries; i++ {
		wg.Go(func() {
			req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/v1/ui/trends/gateway", nil)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		})
	}
	for len(f.calls()) < maxTrendQueries {
		time.Sleep(5 * time.Millisecond)
	}
	u.opts.TrendTimeout = 50 * time.Millisecond
	var body map[string]string
	if code := get(t, srv.URL+"/v1/ui/trends/gateway", &body); code != http.StatusServiceUnavailable || body["error"] != "busy" {
		t.Errorf("third answer: %d %v", code, body)
	}
	if n := len(f.calls()); n != maxTrendQueries {
		t.Errorf("%d queries ran, want %d", n, maxTrendQueries)
	}
	cancel()
	wg.Wait()
}

func TestPromDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{15 * time.Second: "15s", time.Minute: "60s", 1500 * time.Millisecond: "1500ms"} {
		if got := promDuration(d); got != want {
			t.Errorf("promDuration(%v) = %s, want %s", d, got, want)
		}
	}
}
