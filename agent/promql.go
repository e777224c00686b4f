package agent

import (
	"fmt"

	"github.com/fluxgate/fluxgate/circuit"
	"github.com/fluxgate/fluxgate/circuit/promql"
)

// querySource is where circuits' PromQL goes.
type querySource interface {
	circuit.QueryAPI
	Close() error
}

// newQuerySource picks the PromQL source: a Prometheus-compatible server
// when prometheus.address is set, else the embedded TSDB, which the agent
// fills with its own registry every tsdb.scrape_interval.
func (a *Agent) newQuerySource() error {
	if addr := a.cfg.Prometheus.Address; addr != "" {
		r, err := promql.NewRemote(promql.RemoteOptions{Address: addr, Timeout: a.cfg.Prometheus.Timeout, Registerer: a.registry})
		if err != nil {
			return fmt.Errorf("agent: prometheus.address: %w", err)
		}
		a.query = r
		a.health.Register("promql", false, remoteHealth("circuits query", addr, r.Health))
		return nil
	}
	e, err := promql.NewEmbedded(promql.EmbeddedOptions{
		Gatherer:       a.registry,
		Dir:            a.cfg.TSDB.Dir,
		ScrapeInterval: a.cfg.TSDB.ScrapeInterval,
		Retention:      a.cfg.TSDB.Retention,
		Registerer:     a.registry,
		Logger:         a.logger,
	})
	if err != nil {
		return fmt.Errorf("agent: embedded TSDB: %w", err)
	}
	a.query, a.tsdb = e, e
	a.health.Register("promql", false, func() ComponentHealth {
		return ComponentHealth{Status: StatusHealthy, Message: "circuits query the embedded TSDB"}
	})
	return nil
}
