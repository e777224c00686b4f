package agent

import "time"

// TSDBConfig is the embedded Prometheus TSDB that circuits query by
// default: the agent appends its own metrics to it.
type TSDBConfig struct {
	ScrapeInterval time.Duration `yaml:"scrape_interval" validate:"positive" desc:"How often the agent appends its own metrics to the embedded TSDB that circuits query. Keep rate windows of queries (the service-protection blueprint's latency_window, 2s) at least 4 × this."`
	Retention      time.Duration `yaml:"retention" validate:"positive" desc:"How long the embedded TSDB keeps samples."`
	Dir            string        `yaml:"dir" desc:"Directory of the embedded TSDB; empty means a temporary directory removed at exit."`
}

// PrometheusConfig points circuits at a Prometheus-compatible server
// instead of the embedded TSDB, for fleets.
type PrometheusConfig struct {
	Address string        `yaml:"address" desc:"Prometheus-compatible HTTP API (Prometheus, Thanos, Mimir) that circuits query; empty means the embedded TSDB."`
	Timeout time.Duration `yaml:"timeout" validate:"positive" desc:"Deadline of one query to prometheus.address."`
}

// AlertmanagerConfig is where circuit alerters send their alerts.
type AlertmanagerConfig struct {
	Address string `yaml:"address" desc:"Alertmanager base URL (http://host:9093) that circuit alerters fire into; empty means alerts are only logged."`
}
