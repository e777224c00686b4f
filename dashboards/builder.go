package dashboards

import "strings"

// Options configure generated dashboards.
type Options struct {
	// Datasource is the default of the datasource variable: the name of a
	// Prometheus data source in Grafana. Default "Prometheus".
	Datasource string
	// Blueprint names the blueprint a policy was generated from: ForPolicy
	// tags its dashboard "blueprint:NAME" and puts Extra in a first row
	// of that name. Empty: none.
	Blueprint string
	// Extra are panels of the blueprint's own (time series), before the
	// generic ones.
	Extra []Extra
}

// Extra is one time series panel a blueprint adds to its policy's
// dashboard.
type Extra struct {
	Title, Description string
	Unit               string // Grafana unit id: "ms", "percentunit", "reqps", "short"
	Queries            []ExtraQuery
}

// ExtraQuery is one PromQL range query of an Extra panel.
type ExtraQuery struct{ Expr, Legend string }

// DefaultDatasource is the data source a dashboard selects unless
// Options.Datasource names another.
const DefaultDatasource = "Prometheus"

// dsRef is how panels and targets refer to the data source variable.
var dsRef = &Ref{Type: "prometheus", UID: "${" + DatasourceVar + "}"}

// builder lays panels out left to right in rows of the 24-column grid.
type builder struct {
	d      *Dashboard
	id     int
	x, y   int
	rowMax int // height of the tallest panel in the current line
}

func newBuilder(uid, title, description string, tags []string, opts Options) *builder {
	ds := opts.Datasource
	if ds == "" {
		ds = DefaultDatasource
	}
	d := &Dashboard{
		UID:           uid,
		Title:         title,
		Description:   description,
		Tags:          tags,
		Timezone:      "browser",
		Editable:      true,
		GraphTooltip:  1, // shared crosshair
		Refresh:       "30s",
		SchemaVersion: SchemaVersion,
		Version:       1,
		Time:          TimeRange{From: "now-1h", To: "now"},
	}
	d.Annotations.List = []any{}
	d.Templating.List = []Variable{{
		Name:    DatasourceVar,
		Label:   "Data source",
		Type:    "datasource",
		Query:   "prometheus",
		Current: &Current{Text: ds, Value: ds},
	}}
	return &builder{d: d}
}

// labelVariable adds a query variable over the values of label in metric,
// with an "All" option matching every value (and the empty one).
func (b *builder) labelVariable(name, label, metric, labelName string) {
	b.d.Templating.List = append(b.d.Templating.List, Variable{
		Name:       name,
		Label:      label,
		Type:       "query",
		Datasource: dsRef,
		Query: map[string]any{
			"query": "label_values(" + metric + ", " + labelName + ")",
			"refId": "PrometheusVariableQueryEditor-VariableQuery",
		},
		Current:    &Current{Text: "All", Value: "$__all"},
		Refresh:    2,
		IncludeAll: true,
		AllValue:   ".*",
		Multi:      true,
		Sort:       1,
	})
}

// row starts a new row of panels.
func (b *builder) row(title string) {
	b.newline()
	b.id++
	collapsed := false
	b.d.Panels = append(b.d.Panels, &Panel{ID: b.id, Type: "row", Title: title, Collapsed: &collapsed,
		GridPos: GridPos{H: 1, W: 24, X: 0, Y: b.y}})
	b.y++
}

func (b *builder) newline() {
	if b.x > 0 {
		b.x, b.y, b.rowMax = 0, b.y+b.rowMax, 0
	}
}

// add places p, w columns wide and h high, after the previous panel or on
// a new line when it does not fit.
func (b *builder) add(p *Panel, w, h int) {
	if b.x+w > 24 {
		b.newline()
	}
	b.id++
	p.ID = b.id
	p.GridPos = GridPos{H: h, W: w, X: b.x, Y: b.y}
	p.Datasource = dsRef
	for i := range p.Targets {
		p.Targets[i].RefID = string(rune('A' + i))
		p.Targets[i].Datasource = dsRef
		if !p.Targets[i].Instant {
			p.Targets[i].Range = true
		}
	}
	b.x += w
	b.rowMax = max(b.rowMax, h)
	b.d.Panels = append(b.d.Panels, p)
}

func (b *builder) dashboard() *Dashboard {
	b.newline()
	return b.d
}

// q is a range query with a legend.
func q(expr, legend string) Target {
	return Target{Expr: strings.TrimSpace(expr), LegendFormat: legend}
}

// instant is an instant query, for stats and tables.
func instant(expr, legend string) Target {
	return Target{Expr: strings.TrimSpace(expr), LegendFormat: legend, Instant: true}
}

func timeseries(title, desc, unit string, targets ...Target) *Panel {
	return &Panel{
		Type: "timeseries", Title: title, Description: desc, Targets: targets,
		FieldConfig: &FieldConfig{Defaults: FieldDefaults{Unit: unit, Custom: map[string]any{"fillOpacity": 10, "showPoints": "never"}}, Overrides: []any{}},
		Options:     map[string]any{"legend": map[string]any{"displayMode": "table", "placement": "bottom", "calcs": []string{"lastNotNull", "max"}}, "tooltip": map[string]any{"mode": "multi", "sort": "desc"}},
	}
}

func stat(title, desc, unit string, th *Thresholds, targets ...Target) *Panel {
	return &Panel{
		Type: "stat", Title: title, Description: desc, Targets: targets,
		FieldConfig: &FieldConfig{Defaults: FieldDefaults{Unit: unit, Thresholds: th}, Overrides: []any{}},
		Options:     map[string]any{"reduceOptions": map[string]any{"calcs": []string{"lastNotNull"}, "fields": "", "values": false}, "colorMode": "background", "graphMode": "area"},
	}
}

func heatmap(title, desc, unit string, t Target) *Panel {
	t.Format = "heatmap"
	t.LegendFormat = "{{le}}"
	return &Panel{
		Type: "heatmap", Title: title, Description: desc, Targets: []Target{t},
		FieldConfig: &FieldConfig{Defaults: FieldDefaults{Custom: map[string]any{}}, Overrides: []any{}},
		Options: map[string]any{
			"calculate": false,
			"yAxis":     map[string]any{"unit": unit},
			"cellGap":   1,
			"color":     map[string]any{"mode": "scheme", "scheme": "Oranges", "exponent": 0.5, "steps": 64},
			"rowsFrame": map[string]any{"layout": "auto"},
		},
	}
}

func stateTimeline(title, desc string, mappings []ValueMapping, targets ...Target) *Panel {
	return &Panel{
		Type: "state-timeline", Title: title, Description: desc, Targets: targets,
		FieldConfig: &FieldConfig{Defaults: FieldDefaults{Mappings: mappings, Color: map[string]any{"mode": "thresholds"},
			Thresholds: steps("green", 1, "red")}, Overrides: []any{}},
		Options: map[string]any{"showValue": "auto", "mergeValues": true, "rowHeight": 0.9},
	}
}

// steps builds absolute thresholds: base colour, then value, colour, ...
func steps(base string, rest ...any) *Thresholds {
	th := &Thresholds{Mode: "absolute", Steps: []Step{{Color: base}}}
	for i := 0; i+1 < len(rest); i += 2 {
		v := toFloat(rest[i])
		th.Steps = append(th.Steps, Step{Color: rest[i+1].(string), Value: &v})
	}
	return th
}

func toFloat(v any) float64 {
	switch v := v.(type) {
	case int:
		return float64(v)
	case float64:
		return v
	}
	return 0
}
