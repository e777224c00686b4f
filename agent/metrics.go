package agent

import (
	"net/http"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/fluxgate/fluxgate/metricnames"
)

// Version is the agent's release version, set at link time with
// -ldflags "-X github.com/fluxgate/fluxgate/agent.Version=v1.2.3" (make build
// does). Report it with BuildVersion, which falls back to what Go recorded.
var Version = "dev"

// revision is the VCS revision the binary was built from, when Go recorded it.
func revision() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				return s.Value
			}
		}
	}
	return "unknown"
}

// NewRegistry returns a registry holding the process-wide collectors every
// agent exposes: Go runtime, process, fluxgate_build_info and
// fluxgate_system_uptime_seconds (measured from started).
func NewRegistry(started time.Time) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		&cachedCollector{c: collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), maxAge: processMetricsMaxAge},
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "fluxgate_build_info",
			Help: "A metric with a constant '1' value labeled by the version, revision and Go version FluxGate was built with.",
			ConstLabels: prometheus.Labels{
				"version":   BuildVersion(),
				"revision":  revision(),
				"goversion": runtime.Version(),
			},
		}, func() float64 { return 1 }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: metricnames.SystemUptimeSeconds,
			Help: "Seconds since the agent started.",
		}, func() float64 { return time.Since(started).Seconds() }),
	)
	return reg
}

// processMetricsMaxAge is how old the process_* values a gather returns
// may be. Reading them means reading several /proc files and parsing them
// (the network counters with regular expressions): most of the cost of
// the embedded TSDB's append every 250 ms, and an agent's check latency
// shows it. A Prometheus scraping /metrics every 10 s or more sees values
// at most this old.
const processMetricsMaxAge = 5 * time.Second

// cachedCollector collects c at most once every maxAge and hands out the
// metrics it collected then in between (they are immutable).
type cachedCollector struct {
	c      prometheus.Collector
	maxAge time.Duration

	mu   sync.Mutex
	at   time.Time           // guarded by mu: when last was collected
	last []prometheus.Metric // guarded by mu
}

func (c *cachedCollector) Describe(ch chan<- *prometheus.Desc) { c.c.Describe(ch) }

func (c *cachedCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	if c.last == nil || time.Since(c.at) >= c.maxAge {
		got := make(chan prometheus.Metric, 16)
		go func() { c.c.Collect(got); close(got) }()
		var ms []prometheus.Metric
		for m := range got {
			ms = append(ms, m)
		}
		c.last, c.at = ms, time.Now()
	}
	ms := c.last
	c.mu.Unlock()
	for _, m := range ms {
		ch <- m
	}
}

// metricsHandler serves the registry as Prometheus text, or as OpenMetrics
// when the scraper's Accept header asks for it.
func metricsHandler(g prometheus.Gatherer, reg prometheus.Registerer) http.Handler {
	return promhttp.InstrumentMetricHandler(reg, promhttp.HandlerFor(g, promhttp.HandlerOpts{
		EnableOpenMetrics: true,
		ErrorHandling:     promhttp.ContinueOnError,
	}))
}
