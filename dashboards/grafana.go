package dashboards

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
)

// SchemaVersion is the Grafana dashboard schema version the generated
// JSON follows (Grafana 11).
const SchemaVersion = 39

// DatasourceVar is the name of the data source template variable every
// panel queries through.
const DatasourceVar = "datasource"

// Dashboard is Grafana's dashboard JSON model, limited to what FluxGate
// uses. Marshal it with JSON.
type Dashboard struct {
	ID            *int       `json:"id"` // always null: Grafana assigns it on import
	UID           string     `json:"uid"`
	Title         string     `json:"title"`
	Description   string     `json:"description,omitempty"`
	Tags          []string   `json:"tags"`
	Timezone      string     `json:"timezone"`
	Editable      bool       `json:"editable"`
	GraphTooltip  int        `json:"graphTooltip"`
	Refresh       string     `json:"refresh"`
	SchemaVersion int        `json:"schemaVersion"`
	Version       int        `json:"version"`
	Time          TimeRange  `json:"time"`
	Templating    Templating `json:"templating"`
	Annotations   struct {
		List []any `json:"list"`
	} `json:"annotations"`
	Panels []*Panel `json:"panels"`
}

// TimeRange is the dashboard's default time range.
type TimeRange struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// Templating holds the dashboard's variables.
type Templating struct {
	List []Variable `json:"list"`
}

// Variable is a dashboard template variable.
type Variable struct {
	Name       string   `json:"name"`
	Label      string   `json:"label,omitempty"`
	Type       string   `json:"type"` // datasource, query, custom
	Query      any      `json:"query"`
	Datasource *Ref     `json:"datasource,omitempty"`
	Current    *Current `json:"current,omitempty"`
	Regex      string   `json:"regex"`
	Refresh    int      `json:"refresh,omitempty"` // 2: on time range change
	IncludeAll bool     `json:"includeAll,omitempty"`
	AllValue   string   `json:"allValue,omitempty"`
	Multi      bool     `json:"multi,omitempty"`
	Hide       int      `json:"hide"`
	Sort       int      `json:"sort,omitempty"`
}

// Current is a variable's selected value.
type Current struct {
	Text  any `json:"text"`
	Value any `json:"value"`
}

// Ref points to a data source.
type Ref struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// Panel is one dashboard panel, or a row when Type is "row".
type Panel struct {
	ID          int          `json:"id"`
	Type        string       `json:"type"`
	Title       string       `json:"title"`
	Description string       `json:"description,omitempty"`
	GridPos     GridPos      `json:"gridPos"`
	Datasource  *Ref         `json:"datasource,omitempty"`
	Targets     []Target     `json:"targets,omitempty"`
	FieldConfig *FieldConfig `json:"fieldConfig,omitempty"`
	Options     any          `json:"options,omitempty"`
	Collapsed   *bool        `json:"collapsed,omitempty"` // rows only
	Panels      []*Panel     `json:"panels,omitempty"`    // rows only, when collapsed
}

// GridPos places a panel on Grafana's 24-column grid.
type GridPos struct {
	H int `json:"h"`
	W int `json:"w"`
	X int `json:"x"`
	Y int `json:"y"`
}

// Target is one PromQL query of a panel.
type Target struct {
	RefID        string `json:"refId"`
	Datasource   *Ref   `json:"datasource"`
	Expr         string `json:"expr"`
	LegendFormat string `json:"legendFormat,omitempty"`
	Format       string `json:"format,omitempty"` // time_series (default), heatmap, table
	Instant      bool   `json:"instant,omitempty"`
	Range        bool   `json:"range"`
}

// FieldConfig sets units, thresholds and value mappings.
type FieldConfig struct {
	Defaults  FieldDefaults `json:"defaults"`
	Overrides []any         `json:"overrides"`
}

// FieldDefaults apply to every field of a panel.
type FieldDefaults struct {
	Unit       string         `json:"unit,omitempty"`
	Min        *float64       `json:"min,omitempty"`
	Max        *float64       `json:"max,omitempty"`
	Decimals   *int           `json:"decimals,omitempty"`
	Thresholds *Thresholds    `json:"thresholds,omitempty"`
	Mappings   []ValueMapping `json:"mappings,omitempty"`
	Color      map[string]any `json:"color,omitempty"`
	Custom     map[string]any `json:"custom,omitempty"`
}

// Thresholds colour values by steps.
type Thresholds struct {
	Mode  string `json:"mode"` // absolute, percentage
	Steps []Step `json:"steps"`
}

// Step is one threshold: Value nil is the base step.
type Step struct {
	Color string   `json:"color"`
	Value *float64 `json:"value"`
}

// ValueMapping maps values to text, such as a breaker state to "open".
type ValueMapping struct {
	Type    string                  `json:"type"` // value
	Options map[string]MappingValue `json:"options"`
}

// MappingValue is the text and colour of a mapped value.
type MappingValue struct {
	Text  string `json:"text"`
	Color string `json:"color,omitempty"`
	Index int    `json:"index"`
}

// JSON returns the dashboard as indented JSON, ending with a newline.
func (d *Dashboard) JSON() ([]byte, error) {
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Query is one panel query with where it comes from.
type Query struct {
	Panel string // panel title
	RefID string
	Expr  string
}

// Queries returns every panel query of the dashboard, rows included.
func (d *Dashboard) Queries() []Query {
	var out []Query
	var walk func(ps []*Panel)
	walk = func(ps []*Panel) {
		for _, p := range ps {
			for _, t := range p.Targets {
				out = append(out, Query{Panel: p.Title, RefID: t.RefID, Expr: t.Expr})
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

var varRE = regexp.MustCompile(`\$(?:\{(\w+)(?::\w+)?\}|(\w+))`)

// Expand replaces the Grafana variables ($name, ${name}, ${name:format})
// in expr with their values, as Grafana does before sending a query. It
// fails on a variable values does not hold.
func Expand(expr string, values map[string]string) (string, error) {
	var missing []string
	out := varRE.ReplaceAllStringFunc(expr, func(m string) string {
		sub := varRE.FindStringSubmatch(m)
		name := sub[1] + sub[2]
		v, ok := values[name]
		if !ok {
			missing = append(missing, "$"+name)
		}
		return v
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("dashboards: no value for %s in %q", strings.Join(missing, ", "), expr)
	}
	return out, nil
}
