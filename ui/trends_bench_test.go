package ui

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fluxgate/fluxgate/circuit/promql"
)

// BenchmarkTrendsFluxMeters is the cost of the flux meter history on the
// embedded TSDB: 15 minutes of 1 s scrapes of 10 flux meters, each with
// 10 buckets for 2 decision types (220 bucket series), answered for the
// whole window (a page that opens) and for the steps after the last one
// (a page that polls).
func BenchmarkTrendsFluxMeters(b *testing.B) {
	reg := prometheus.NewRegistry()
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "flux_meter",
		Buckets: []float64{5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000},
	}, []string{"flux_meter_name", "decision_type"})
	reg.MustRegister(h)
	e, err := promql.NewEmbedded(promql.EmbeddedOptions{Gatherer: reg, Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = e.Close() })
	rnd := rand.New(rand.NewPCG(1, 2))
	t0 := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	const scrapes = 900
	for i := 0; i < scrapes; i++ {
		for _, name := range []string{"m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "m9"} {
			for _, d := range []string{"DECISION_TYPE_ACCEPTED", "DECISION_TYPE_REJECTED"} {
				o := h.WithLabelValues(name, d)
				for j := 0; j < 20; j++ {
					o.Observe(math.Exp(rnd.NormFloat64()) * 40)
				}
			}
		}
		if err := e.ScrapeAt(t0.Add(time.Duration(i) * time.Second)); err != nil {
			b.Fatal(err)
		}
	}
	now := t0.Add((scrapes - 1) * time.Second).Add(500 * time.Millisecond)
	u := New(Options{Range: e, Now: func() time.Time { return now }})
	expr := trendQuery("flux_meters", u.opts.RateWindow)
	ctx := context.Background()
	for _, bc := range []struct {
		name   string
		since  int64
		points int
	}{
		{"window", 0, TrendPoints + 1},
		{"poll", now.UnixMilli() - 4000, 2}, // one step, then now
	} {
		b.Run(bc.name, func(b *testing.B) {
			tr, err := u.trends(ctx, "flux_meters", expr, bc.since)
			if err != nil {
				b.Fatal(err)
			}
			if len(tr.Series) != 40 || len(tr.T) != bc.points {
				b.Fatalf("%d series of %d points, want 10 meters × 4 of %d", len(tr.Series), len(tr.T), bc.points)
			}
			for b.Loop() {
				if _, err := u.trends(ctx, "flux_meters", expr, bc.since); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
