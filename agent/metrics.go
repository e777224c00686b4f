package agent

import (
	"net/http"
	"runtime"
	"runtime/debug"
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
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
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

// metricsHandler serves the registry as Prometheus text, or as OpenMetrics
// when the scraper's Accept header asks for it.
func metricsHandler(g prometheus.Gatherer, reg prometheus.Registerer) http.Handler {
	return promhttp.InstrumentMetricHandler(reg, promhttp.HandlerFor(g, promhttp.HandlerOpts{
		EnableOpenMetrics: true,
		ErrorHandling:     promhttp.ContinueOnError,
	}))
}
