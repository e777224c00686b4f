package controlpoint

import "github.com/prometheus/client_golang/prometheus"

// bucketCollector exports, at scrape time, how many buckets every rate
// limiter holds and how many it evicted to keep within its memory budget
// (Options.RateLimiterMemory).
type bucketCollector struct{ e *Engine }

var (
	bucketLabels = []string{"policy_namespace", "policy_name", "component_id"}
	descBuckets  = prometheus.NewDesc("fluxgate_ratelimiter_buckets",
		"Buckets a rate limiter holds on this agent: local buckets, lazy sync's local shares and local_fallback buckets.", bucketLabels, nil)
	descBucketBytes = prometheus.NewDesc("fluxgate_ratelimiter_bucket_bytes",
		"Memory a rate limiter's buckets hold on this agent as the limiter counts it against its budget (limits.rate_limiter_memory_mib, for each kind of bucket).", bucketLabels, nil)
	descEvictions = prometheus.NewDesc("fluxgate_ratelimiter_evictions_total",
		"Buckets a rate limiter evicted, least recently used first, to keep within its memory budget; an evicted bucket comes back full, so each eviction may admit up to one bucket of tokens early.", bucketLabels, nil)
)

func (bucketCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descBuckets
	ch <- descBucketBytes
	ch <- descEvictions
}

func (c bucketCollector) Collect(ch chan<- prometheus.Metric) {
	for _, r := range componentsOf[*rateLimiter](c.e) {
		n, bytes, ev := r.buckets()
		lv := []string{r.policyNamespace, r.policyName, r.id}
		ch <- prometheus.MustNewConstMetric(descBuckets, prometheus.GaugeValue, float64(n), lv...)
		ch <- prometheus.MustNewConstMetric(descBucketBytes, prometheus.GaugeValue, float64(bytes), lv...)
		ch <- prometheus.MustNewConstMetric(descEvictions, prometheus.CounterValue, float64(ev), lv...)
	}
}
