package agent

import (
	"net/url"
	"time"

	"github.com/fluxgate/fluxgate/policies"
	"github.com/fluxgate/fluxgate/ui"
)

// registerUI mounts the live view (package ui): the page under /ui/,
// which holds no data and is served without a token while the admin
// endpoints are on (403 while they are off), and the JSON it reads,
// behind the admin token like the signals API. Start runs its history.
// The flux meter and gateway history come from the circuits' PromQL
// source: the embedded TSDB, or prometheus.address.
func (a *Agent) registerUI() {
	opts := ui.Options{
		Circuits: a.circuits,
		Policy:   a.loadedPolicy,
		Gatherer: a.registry,
		Enabled:  a.cfg.Admin.Token != "",
	}
	if src, ok := a.query.(ui.RangeSource); ok {
		opts.Range = src
		if a.tsdb != nil {
			// Four scrapes at least, as rate() needs two samples.
			opts.RangeName, opts.RateWindow = "the embedded TSDB", max(ui.DefaultRateWindow, 4*a.cfg.TSDB.ScrapeInterval)
		} else {
			// A Prometheus server's scrape interval is not known here;
			// one minute covers four of the common 15 s.
			addr := a.cfg.Prometheus.Address
			if u, err := url.Parse(addr); err == nil {
				addr = u.Redacted() // no password on the page
			}
			opts.RangeName, opts.RateWindow = "Prometheus at "+addr, time.Minute
		}
	}
	a.ui = ui.New(opts)
	a.mux.Handle("GET /ui/", a.ui.Pages())
	a.ui.Register(a.HandleHTTP)
}

// loadedPolicy is the loaded Policy with key k, or nil.
func (a *Agent) loadedPolicy(k policies.Key) *policies.Policy {
	if e := a.store.Snapshot().Entries[k]; e != nil {
		if p, ok := e.Object.(*policies.Policy); ok {
			return p
		}
	}
	return nil
}
