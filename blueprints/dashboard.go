package blueprints

import (
	"encoding/json"

	"github.com/fluxgate/fluxgate/dashboards"
	"github.com/fluxgate/fluxgate/policies"
)

// panel is one Grafana time series panel a blueprint adds to its policy's
// dashboard, with its queries.
type panel struct {
	Title   string
	Unit    string // Grafana unit id: "ms", "percentunit", "reqps", "short"
	Targets []target
}

// target is one PromQL query of a panel.
type target struct {
	Expr   string
	Legend string
}

// dashboard builds the Grafana dashboard of p with the one generator
// `fluxgate dashboards generate` uses (decisions, flux meters, signals,
// actuators), the blueprint's own panels first, in a row named after it.
// Its uid is the policy's, so the blueprint's dashboard and a generic one
// of the same policy are the same dashboard in Grafana.
func dashboard(b *Blueprint, p *policies.Policy, extra []panel) ([]byte, error) {
	opts := dashboards.Options{Datasource: dashboards.DefaultDatasource, Blueprint: b.Name}
	for _, pn := range extra {
		e := dashboards.Extra{Title: pn.Title, Unit: pn.Unit}
		for _, t := range pn.Targets {
			e.Queries = append(e.Queries, dashboards.ExtraQuery{Expr: t.Expr, Legend: t.Legend})
		}
		opts.Extra = append(opts.Extra, e)
	}
	return json.MarshalIndent(dashboards.ForPolicy(p, opts), "", "  ")
}
