package controlpoint

import (
	"github.com/prometheus/client_golang/prometheus"
)

// adaptiveCollector exports the state of every adaptive_concurrency
// component at scrape time.
type adaptiveCollector struct{ e *Engine }

var (
	adaptiveLabels = []string{"policy_namespace", "policy_name", "component_id"}
	descLimit      = prometheus.NewDesc("fluxgate_adaptive_concurrency_limit",
		"The concurrency limit an adaptive_concurrency component has learned: flows it lets be in flight at once.", adaptiveLabels, nil)
	descInFlight = prometheus.NewDesc("fluxgate_adaptive_concurrency_in_flight",
		"Admitted flows of an adaptive_concurrency component whose end has not been reported yet.", adaptiveLabels, nil)
	descQueued = prometheus.NewDesc("fluxgate_adaptive_concurrency_queued",
		"Flows waiting for a slot of an adaptive_concurrency component.", adaptiveLabels, nil)
	descNoLoad = prometheus.NewDesc("fluxgate_adaptive_concurrency_no_load_latency_seconds",
		"The service's no-load latency as an adaptive_concurrency component learned it (absent until known).", adaptiveLabels, nil)
	descTarget = prometheus.NewDesc("fluxgate_adaptive_concurrency_target_latency_seconds",
		"The latency an adaptive_concurrency component steers to: its objective, or no-load latency × latency_tolerance (absent until known).", adaptiveLabels, nil)
	descProbing = prometheus.NewDesc("fluxgate_adaptive_concurrency_probing",
		"1 while an adaptive_concurrency component probes its service's no-load latency at low concurrency.", adaptiveLabels, nil)
)

func (adaptiveCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descLimit, descInFlight, descQueued, descNoLoad, descTarget, descProbing} {
		ch <- d
	}
}

func (c adaptiveCollector) Collect(ch chan<- prometheus.Metric) {
	for _, a := range componentsOf[*adaptiveConcurrency](c.e) {
		st := a.lim.State()
		lv := []string{a.policyNamespace, a.policyName, a.id}
		gauge := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, lv...)
		}
		gauge(descLimit, st.Limit)
		gauge(descInFlight, float64(st.InFlight))
		gauge(descQueued, float64(st.Queued))
		if st.NoLoad > 0 {
			gauge(descNoLoad, st.NoLoad.Seconds())
		}
		if st.Target > 0 {
			gauge(descTarget, st.Target.Seconds())
		}
		probing := 0.0
		if st.Probing {
			probing = 1
		}
		gauge(descProbing, probing)
	}
}
