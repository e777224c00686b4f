package promql

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// BenchmarkEmbeddedP95 is the target: a flux meter p95 over 5
// minutes of 1 s samples on the embedded TSDB, ≤ 5 ms per query. The TSDB
// holds 300 scrapes of a flux_meter histogram with 10 buckets plus +Inf
// (11 bucket series per label set) for 4 label sets, two of them queried.
func BenchmarkEmbeddedP95(b *testing.B) {
	reg := prometheus.NewRegistry()
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "flux_meter",
		Buckets: []float64{5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000},
	}, []string{"flux_meter_name", "decision_type"})
	reg.MustRegister(h)
	e := newEmbedded(b, reg, nil)
	rnd := rand.New(rand.NewPCG(1, 2))
	start := t0
	for i := 0; i < 300; i++ {
		for _, name := range []string{"x", "y"} {
			for _, d := range []string{"DECISION_TYPE_ACCEPTED", "DECISION_TYPE_REJECTED"} {
				o := h.WithLabelValues(name, d)
				for j := 0; j < 100; j++ {
					o.Observe(math.Exp(rnd.NormFloat64()) * 40)
				}
			}
		}
		if err := e.ScrapeAt(start.Add(time.Duration(i) * time.Second)); err != nil {
			b.Fatal(err)
		}
	}
	end := start.Add(299 * time.Second)
	const q = `histogram_quantile(0.95, sum(rate(flux_meter_bucket{flux_meter_name="x"}[5m])) by (le))`
	ctx := context.Background()
	v, err := e.Query(ctx, q, end)
	if err != nil {
		b.Fatal(err)
	}
	// Log-normal with median 40 ms and σ = 1: the p95 is 40·e^1.645 ≈ 207,
	// interpolated within the (100, 250] bucket.
	if v < 100 || v > 250 {
		b.Fatalf("p95 = %v, want within (100, 250]", v)
	}
	for b.Loop() {
		if _, err := e.Query(ctx, q, end); err != nil {
			b.Fatal(err)
		}
	}
}
