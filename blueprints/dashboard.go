package blueprints

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"

	"github.com/fluxgate/fluxgate/circuit"
	"github.com/fluxgate/fluxgate/policies"
)

// grafanaSchemaVersion is the dashboard JSON schema the dashboards are
// written in (Grafana 10/11 read it, and migrate older ones on load).
const grafanaSchemaVersion = 39

// panel is one Grafana time series panel with its queries.
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

// dashboard builds the Grafana dashboard of p: a panel per circuit signal
// (signal_reading), per flux meter (latency quantiles and throughput by
// flow status), per flow-control component (decisions), then extra.
func dashboard(b *Blueprint, p *policies.Policy, extra []panel) ([]byte, error) {
	name := p.Metadata.Name
	policy := eq("policy_name", name)
	var panels []panel
	panels = append(panels, extra...)
	if hasFlowControl(p) {
		panels = append(panels, panel{Title: "Flow decisions", Unit: "reqps", Targets: []target{{
			Expr:   fmt.Sprintf("sum by (component_id, decision_type, reason) (rate(%s[$__rate_interval]))", sel("fluxgate_flow_decisions_total", policy)),
			Legend: "{{component_id}} {{decision_type}} {{reason}}",
		}}})
	}
	meters := make([]string, 0, len(p.Spec.Resources.FluxMeters))
	for m := range p.Spec.Resources.FluxMeters {
		meters = append(meters, m)
	}
	sort.Strings(meters)
	for _, m := range meters {
		fm := sel("flux_meter_bucket", eq("flux_meter_name", m), policy, eq("decision_type", "DECISION_TYPE_ACCEPTED"))
		var qs []target
		for _, q := range []string{"0.5", "0.95", "0.99"} {
			qs = append(qs, target{
				Expr:   fmt.Sprintf("histogram_quantile(%s, sum by (le) (rate(%s[$__rate_interval])))", q, fm),
				Legend: "p" + q[2:],
			})
		}
		panels = append(panels,
			panel{Title: "Flux meter " + m + ": latency", Unit: "ms", Targets: qs},
			panel{Title: "Flux meter " + m + ": flows", Unit: "reqps", Targets: []target{{
				Expr:   fmt.Sprintf("sum by (decision_type, flow_status) (rate(%s[$__rate_interval]))", sel("flux_meter_count", eq("flux_meter_name", m), policy)),
				Legend: "{{decision_type}} {{flow_status}}",
			}}})
	}
	if c, err := circuit.Compile(p, circuit.Env{}); err == nil { // checked before
		for _, r := range c.Readings() {
			panels = append(panels, panel{Title: "Signal " + r.Name, Unit: "short", Targets: []target{{
				Expr:   sel("signal_reading", policy, eq("signal_name", r.Name)),
				Legend: r.Name,
			}}})
		}
	}
	return json.MarshalIndent(grafanaDashboard(b, p, panels), "", "  ")
}

func hasFlowControl(p *policies.Policy) bool {
	for _, c := range p.Spec.Circuit.Components {
		switch c.Spec.(type) {
		case *policies.RateLimiter, *policies.Sampler, *policies.LoadScheduler, *policies.AdaptiveConcurrency:
			return true
		}
	}
	return false
}

// grafanaDashboard lays the panels out two to a row.
func grafanaDashboard(b *Blueprint, p *policies.Policy, panels []panel) map[string]any {
	ds := map[string]any{"type": "prometheus", "uid": "${datasource}"}
	var out []any
	for i, pn := range panels {
		var targets []any
		for j, t := range pn.Targets {
			targets = append(targets, map[string]any{
				"refId":        string(rune('A' + j)),
				"datasource":   ds,
				"expr":         t.Expr,
				"legendFormat": t.Legend,
			})
		}
		out = append(out, map[string]any{
			"id":          i + 1,
			"type":        "timeseries",
			"title":       pn.Title,
			"datasource":  ds,
			"gridPos":     map[string]int{"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i / 2)},
			"fieldConfig": map[string]any{"defaults": map[string]any{"unit": pn.Unit}, "overrides": []any{}},
			"targets":     targets,
		})
	}
	return map[string]any{
		"uid":           dashboardUID(p),
		"title":         fmt.Sprintf("FluxGate policy %s (%s)", p.Metadata.Name, b.Name),
		"tags":          []string{"fluxgate", "blueprint:" + b.Name},
		"schemaVersion": grafanaSchemaVersion,
		"version":       1,
		"editable":      true,
		"refresh":       "10s",
		"time":          map[string]string{"from": "now-1h", "to": "now"},
		"templating": map[string]any{"list": []any{map[string]any{
			"name":    "datasource",
			"label":   "Data source",
			"type":    "datasource",
			"query":   "prometheus",
			"current": map[string]any{},
			"hide":    0,
		}}},
		"panels": out,
	}
}

// dashboardUID is "fluxgate-" and the policy's namespace and name, or a
// hash of them when that would pass Grafana's 40 characters.
func dashboardUID(p *policies.Policy) string {
	uid := "fluxgate-" + p.Metadata.Namespace + "-" + p.Metadata.Name
	if len(uid) <= 40 {
		return uid
	}
	sum := sha256.Sum256([]byte(p.Metadata.Namespace + "/" + p.Metadata.Name))
	return "fluxgate-" + hex.EncodeToString(sum[:])[:31]
}
