package promql

import (
	"context"
	"errors"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

var t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func newEmbedded(t testing.TB, g prometheus.Gatherer, reg prometheus.Registerer) *Embedded {
	t.Helper()
	e, err := NewEmbedded(EmbeddedOptions{Gatherer: g, Dir: t.TempDir(), Instance: "test:9100", Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Error(err)
		}
	})
	return e
}

func query(t *testing.T, e *Embedded, q string, at time.Time) float64 {
	t.Helper()
	v, err := e.Query(context.Background(), q, at)
	if err != nil {
		t.Fatalf("%s at %s: %v", q, at.Format(time.TimeOnly), err)
	}
	return v
}

// Known observations every 15 s: per batch 60 at 0.05 s, 30 at 0.3 s and
// 10 at 0.8 s, so 90 of 100 are ≤ 0.5 and the p95 is halfway into the
// (0.5, 1] bucket: 0.75. The counter grows by 30 per batch: 2/s.
func TestEmbeddedHistogramAndCounter(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "x", Buckets: []float64{0.1, 0.5, 1}})
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "c"})
	s := prometheus.NewSummary(prometheus.SummaryOpts{Name: "s", Objectives: map[float64]float64{0.5: 0.01}})
	reg.MustRegister(h, c, s)
	self := prometheus.NewRegistry()
	e := newEmbedded(t, reg, self)

	batch := func() {
		for i := 0; i < 60; i++ {
			h.Observe(0.05)
		}
		for i := 0; i < 30; i++ {
			h.Observe(0.3)
		}
		for i := 0; i < 10; i++ {
			h.Observe(0.8)
		}
		c.Add(30)
		s.Observe(4)
	}
	batch() // before the first scrape, so that no series starts at zero
	var last time.Time
	for i := 0; i <= 8; i++ {
		last = t0.Add(time.Duration(i) * 15 * time.Second)
		if err := e.ScrapeAt(last); err != nil {
			t.Fatal(err)
		}
		batch()
	}
	for _, tc := range []struct {
		q    string
		want float64
	}{
		{`histogram_quantile(0.95, sum(rate(x_bucket[1m])) by (le))`, 0.75},
		{`histogram_quantile(0.5, sum(rate(x_bucket[1m])) by (le))`, 0.1 * 50 / 60},
		{`rate(c[1m])`, 2},
		{`sum(rate(x_count[1m]))`, 100.0 / 15},
		{`rate(x_sum[1m])`, (60*0.05 + 30*0.3 + 10*0.8) / 15},
		{`x_bucket{le="0.5"}`, 90 * 9},
		{`sum(x_bucket{le="+Inf"}) - sum(x_count)`, 0},
		{`c{job="fluxgate",instance="test:9100"}`, 30 * 9},
		{`s{quantile="0.5"}`, 4},
		{`s_count`, 9},
		{`up`, 1},
		{`scalar(c) / 10`, 27},
	} {
		if got := query(t, e, tc.q, last); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("%s = %v, want %v", tc.q, got, tc.want)
		}
	}
	// 4 buckets (with +Inf), x_sum, x_count, c, s{quantile="0.5"}, s_sum,
	// s_count and up: 11 series, each appended 9 times.
	if got := counterValue(t, self, "fluxgate_tsdb_head_series"); got != 11 {
		t.Errorf("fluxgate_tsdb_head_series = %v, want 11", got)
	}
	if n, err := testutil.GatherAndCount(self, "fluxgate_tsdb_appends_total"); err != nil || n != 1 {
		t.Fatalf("fluxgate_tsdb_appends_total: %d series, %v", n, err)
	}
	if got := counterValue(t, self, "fluxgate_tsdb_appends_total"); got != 11*9 {
		t.Errorf("fluxgate_tsdb_appends_total = %v, want %v", got, 11*9)
	}
}

func TestEmbeddedResultRules(t *testing.T) {
	reg := prometheus.NewRegistry()
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "g"}, []string{"l"})
	reg.MustRegister(g)
	g.WithLabelValues("a").Set(1)
	g.WithLabelValues("b").Set(2)
	g.WithLabelValues("c").Set(math.Inf(1))
	self := prometheus.NewRegistry()
	e := newEmbedded(t, reg, self)
	if err := e.ScrapeAt(t0); err != nil {
		t.Fatal(err)
	}
	ctx := WithPolicy(context.Background(), "p")
	for _, tc := range []struct {
		q, err, reason string
	}{
		{`g`, "query returned 3 series; want 1", "many_series"},
		{`nothing_here`, "query returned no data", "no_data"},
		{`g{l="c"}`, "query returned +Inf", "not_finite"},
		{`0/0`, "query returned NaN", "not_finite"},
		{`g[1m]`, "query returned a range vector; want a scalar or an instant vector", "type"},
		{`sum(`, "1:5: parse error", "error"},
	} {
		_, err := e.Query(ctx, tc.q, t0)
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: error %v, want %q", tc.q, err, tc.err)
		}
		var re *ResultError
		if isResult := errors.As(err, &re); isResult != (tc.reason != "error") {
			t.Errorf("%s: %v is a ResultError: %v", tc.q, err, isResult)
		}
		if got := testutil.ToFloat64(mustCounterVec(t, self).WithLabelValues("embedded", "p", tc.reason)); got < 1 {
			t.Errorf("%s: errors_total{reason=%q} = %v", tc.q, tc.reason, got)
		}
	}
	if got := query(t, e, `g{l="b"}`, t0); got != 2 {
		t.Errorf(`g{l="b"} = %v`, got)
	}
}

// A series that leaves the registry gets a staleness marker: queries stop
// seeing it at once instead of for the 5 m lookback.
func TestEmbeddedStaleness(t *testing.T) {
	reg := prometheus.NewRegistry()
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "g"}, []string{"l"})
	reg.MustRegister(g)
	g.WithLabelValues("a").Set(1)
	g.WithLabelValues("b").Set(2)
	e := newEmbedded(t, reg, nil)
	if err := e.ScrapeAt(t0); err != nil {
		t.Fatal(err)
	}
	if got := query(t, e, `count(g)`, t0.Add(time.Second)); got != 2 {
		t.Fatalf("count(g) = %v, want 2", got)
	}
	g.DeleteLabelValues("b")
	if err := e.ScrapeAt(t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if got := query(t, e, `count(g)`, t0.Add(2*time.Second)); got != 1 {
		t.Errorf("count(g) after removal = %v, want 1", got)
	}
	if _, err := e.Query(context.Background(), `g{l="b"}`, t0.Add(2*time.Second)); !errors.Is(err, ErrNoData) {
		t.Errorf(`g{l="b"} after removal: %v, want no data`, err)
	}
	// Before the marker the old value is still visible.
	if got := query(t, e, `g{l="b"}`, t0.Add(999*time.Millisecond)); got != 2 {
		t.Errorf(`g{l="b"} before removal = %v, want 2`, got)
	}
	// It comes back when the series does.
	g.WithLabelValues("b").Set(3)
	if err := e.ScrapeAt(t0.Add(2 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if got := query(t, e, `g{l="b"}`, t0.Add(2*time.Second)); got != 3 {
		t.Errorf(`g{l="b"} after return = %v, want 3`, got)
	}
}

func TestEmbeddedScrapeOutOfOrder(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: "g"}))
	e := newEmbedded(t, reg, nil)
	if err := e.ScrapeAt(t0); err != nil {
		t.Fatal(err)
	}
	if err := e.ScrapeAt(t0.Add(-time.Second)); err == nil || !strings.Contains(err.Error(), "refused 2 of 2 samples") {
		t.Fatalf("scrape in the past: %v, want refused samples", err)
	}
}

func TestEmbeddedRunAndTempDir(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "c"})
	reg.MustRegister(c)
	c.Add(5)
	e, err := NewEmbedded(EmbeddedOptions{Gatherer: reg, ScrapeInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- e.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		v, err := e.Query(context.Background(), `count_over_time(c[10s])`, time.Time{})
		if err == nil && v >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Run did not scrape 3 times: %v %v", v, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	dir := e.tempDir
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("temp dir %s after Close: %v", dir, err)
	}
}

func TestCheck(t *testing.T) {
	for q, want := range map[string]string{
		`sum(rate(x[1m]))`: "",
		`1`:                "",
		`x[1m]`:            "expression is a range vector",
		`"s"`:              "expression is a string",
		`sum(rate(x[1m])`:  "1:16: parse error",
	} {
		err := Check(q)
		if (want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), want)) {
			t.Errorf("Check(%s) = %v, want %q", q, err, want)
		}
	}
}

// collectorOf re-exposes one gathered counter or gauge as a Collector for
// testutil.
type collectorOf struct {
	g    prometheus.Gatherer
	name string
}

func (c collectorOf) Describe(chan<- *prometheus.Desc) {}
func (c collectorOf) Collect(ch chan<- prometheus.Metric) {
	mfs, _ := c.g.Gather()
	for _, mf := range mfs {
		if mf.GetName() == c.name {
			for _, m := range mf.GetMetric() {
				v := m.GetGauge().GetValue() + m.GetCounter().GetValue()
				ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(c.name, "", nil, nil), prometheus.UntypedValue, v)
			}
		}
	}
}

// counterValue is the value of the counter or gauge name in g.
func counterValue(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	return testutil.ToFloat64(collectorOf{g, name})
}

func mustCounterVec(t *testing.T, reg *prometheus.Registry) *prometheus.CounterVec {
	t.Helper()
	m, err := newQueryMetrics(reg) // the registered one, reused
	if err != nil {
		t.Fatal(err)
	}
	return m.errors
}
