package agent

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// countingCollector counts its collections and reports the count.
type countingCollector struct {
	n    int
	desc *prometheus.Desc
}

func (c *countingCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *countingCollector) Collect(ch chan<- prometheus.Metric) {
	c.n++
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(c.n))
}

// A cached collector collects once per maxAge and hands out what it
// collected then; past maxAge it collects again.
func TestCachedCollector(t *testing.T) {
	inner := &countingCollector{desc: prometheus.NewDesc("x_total", "x", nil, nil)}
	c := &cachedCollector{c: inner, maxAge: time.Hour}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	for range 3 {
		if got := testutil.ToFloat64(c); got != 1 {
			t.Fatalf("value %v, want 1 (the first collection, cached)", got)
		}
	}
	if _, err := reg.Gather(); err != nil {
		t.Fatal(err)
	}
	if inner.n != 1 {
		t.Errorf("collected %d times within maxAge, want 1", inner.n)
	}
	c.mu.Lock()
	c.at = time.Now().Add(-2 * time.Hour) // as if maxAge had passed
	c.mu.Unlock()
	if got := testutil.ToFloat64(c); got != 2 || inner.n != 2 {
		t.Errorf("after maxAge: value %v, %d collections; want 2 and 2", got, inner.n)
	}
}
