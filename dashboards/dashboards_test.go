package dashboards

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"

	"github.com/fluxgate/fluxgate/policies"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// GrafanaVars are the values the tests give Grafana's built-in and the
// dashboards' own variables before parsing or running a query.
var GrafanaVars = map[string]string{
	"__rate_interval": "1m",
	"__interval":      "15s",
	"__range":         "1h",
	"route":           ".*",
	"policy":          ".*",
}

// substitute replaces the Grafana variables in expr, failing the test on
// one that is neither built in nor defined by the dashboard.
func substitute(t *testing.T, d *Dashboard, expr string) string {
	t.Helper()
	values := map[string]string{}
	for k, v := range GrafanaVars {
		if strings.HasPrefix(k, "__") {
			values[k] = v
		}
	}
	for _, v := range d.Templating.List {
		if val, ok := GrafanaVars[v.Name]; ok {
			values[v.Name] = val
		}
	}
	out, err := Expand(expr, values)
	if err != nil {
		t.Errorf("%s: %v", d.UID, err)
	}
	return out
}

func examplePolicies(t *testing.T) []*policies.Policy {
	t.Helper()
	files, err := filepath.Glob("../policies/examples/*.yaml")
	files = append(files, filepath.Join("testdata", "checkout.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no example policies: %v", err)
	}
	var out []*policies.Policy
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		docs, err := policies.Parse(f, data)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range docs {
			if p, ok := d.Object.(*policies.Policy); ok {
				out = append(out, p)
			}
		}
	}
	return out
}

func allDashboards(t *testing.T, opts Options) []*Dashboard {
	ds := []*Dashboard{Overview(opts)}
	for _, p := range examplePolicies(t) {
		ds = append(ds, ForPolicy(p, opts))
	}
	return ds
}

// TestDashboardsValid checks the Grafana model of every dashboard: schema
// version, the datasource variable and its default, every panel and
// target on it, unique ids, a layout within the grid, and every query
// parsing as PromQL once Grafana's variables are replaced.
func TestDashboardsValid(t *testing.T) {
	for _, ds := range []string{"", "Mimir"} {
		for _, d := range allDashboards(t, Options{Datasource: ds}) {
			t.Run(d.UID+"/"+ds, func(t *testing.T) { checkDashboard(t, d, ds) })
		}
	}
}

func checkDashboard(t *testing.T, d *Dashboard, ds string) {
	if ds == "" {
		ds = DefaultDatasource
	}
	data, err := d.JSON()
	if err != nil {
		t.Fatal(err)
	}
	// The JSON as Grafana reads it.
	var m struct {
		ID            *int   `json:"id"`
		UID           string `json:"uid"`
		Title         string `json:"title"`
		SchemaVersion int    `json:"schemaVersion"`
		Templating    struct {
			List []struct {
				Name, Type string
				Query      any
				Current    struct{ Text, Value string }
			}
		}
		Panels []json.RawMessage
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	if m.ID != nil || m.UID == "" || len(m.UID) > maxUIDLen || m.Title == "" || m.SchemaVersion != SchemaVersion {
		t.Errorf("id %v, uid %q, title %q, schemaVersion %d", m.ID, m.UID, m.Title, m.SchemaVersion)
	}
	if len(m.Templating.List) == 0 || m.Templating.List[0].Name != DatasourceVar || m.Templating.List[0].Type != "datasource" ||
		m.Templating.List[0].Query != "prometheus" || m.Templating.List[0].Current.Value != ds {
		t.Errorf("first variable %+v, want the datasource variable of type datasource, query prometheus, default %q", m.Templating.List, ds)
	}
	ids := map[int]bool{}
	occupied := map[[2]int]string{}
	queries := 0
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel %q: duplicate id %d", p.Title, p.ID)
		}
		ids[p.ID] = true
		g := p.GridPos
		if g.X < 0 || g.W <= 0 || g.X+g.W > 24 || g.H <= 0 {
			t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, g)
		}
		for x := g.X; x < g.X+g.W; x++ {
			for y := g.Y; y < g.Y+g.H; y++ {
				if other, ok := occupied[[2]int{x, y}]; ok {
					t.Errorf("panel %q overlaps %q at %d,%d", p.Title, other, x, y)
				}
				occupied[[2]int{x, y}] = p.Title
			}
		}
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" || p.Datasource.Type != "prometheus" {
			t.Errorf("panel %q: datasource %+v, want ${datasource}", p.Title, p.Datasource)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			queries++
			if tg.Datasource == nil || tg.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q target %s: datasource %+v, want ${datasource}", p.Title, tg.RefID, tg.Datasource)
			}
			if tg.RefID == "" || refs[tg.RefID] {
				t.Errorf("panel %q: refId %q empty or repeated", p.Title, tg.RefID)
			}
			refs[tg.RefID] = true
			expr := substitute(t, d, tg.Expr)
			if _, err := parser.NewParser(parser.Options{}).ParseExpr(expr); err != nil {
				t.Errorf("panel %q target %s: %q: %v", p.Title, tg.RefID, expr, err)
			}
		}
	}
	if queries != len(d.Queries()) {
		t.Errorf("Queries returns %d queries, panels hold %d", len(d.Queries()), queries)
	}
}

// TestOverviewCoversSeed checks that the overview has the panels seed 000
// promises and the flow-control ones.
func TestOverviewCoversSeed(t *testing.T) {
	d := Overview(Options{})
	if d.UID != "fluxgate-ops-01" || d.Title != "FluxGate Gateway Overview" {
		t.Errorf("uid %q title %q", d.UID, d.Title)
	}
	var all strings.Builder
	for _, q := range d.Queries() {
		all.WriteString(q.Expr + "\n")
	}
	for _, metric := range []string{
		"fluxgate_http_requests_total", "fluxgate_http_request_duration_seconds_bucket",
		"fluxgate_circuit_breaker_state", "fluxgate_ratelimiter_remaining_tokens",
		"fluxgate_tls_certificate_expiry_timestamp_seconds", "fluxgate_flow_decisions_total",
		"flux_meter_bucket", "flux_meter_count", "fluxgate_upstream_active_connections",
	} {
		if !strings.Contains(all.String(), metric) {
			t.Errorf("no panel queries %s", metric)
		}
	}
	heat := false
	for _, p := range d.Panels {
		if p.Type == "heatmap" && strings.Contains(p.Targets[0].Expr, "fluxgate_http_request_duration_seconds_bucket") && p.Targets[0].Format == "heatmap" {
			heat = true
		}
	}
	if !heat {
		t.Error("no upstream latency heatmap")
	}
}

// TestPolicyDashboard checks the service-protection example's dashboard:
// a panel per signal, the load scheduler with the signal that drives it,
// the flux meter's quantiles.
func TestPolicyDashboard(t *testing.T) {
	var sp, limit *policies.Policy
	for _, p := range examplePolicies(t) {
		switch p.Metadata.Name {
		case "service-protection":
			sp = p
		case "per-user-limit":
			limit = p
		}
	}
	if sp == nil || limit == nil {
		t.Fatal("example policies service-protection and per-user-limit not found")
	}
	want := []string{"LATENCY_RAW", "LATENCY", "COMPLETED", "INCOMING", "PEAK_COMPLETED", "BASELINE_INPUT", "BASELINE_EMA", "BASELINE", "SETPOINT", "OVERLOADED", "DECREASED",
		"COMPLETED_SHARE", "AT_MOST_COMPLETED", "DECREASED_TO_COMPLETED", "FLOOR_RAW", "FLOOR", "CUT", "GROWN", "GROWN_PLUS", "RECOVERY_RATE", "RECOVERY_RAW", "RECOVERY",
		"INCREASED", "PROPOSED", "AT_LEAST_MIN", "BOUNDED", "MULTIPLIER"}
	if got := Signals(sp); !slices.Equal(got, want) {
		t.Errorf("Signals = %v, want %v", got, want)
	}
	acts := Actuators(sp)
	if len(acts) != 1 || acts[0].Kind != "flow_control.load_scheduler" || len(acts[0].Ports) != 1 ||
		acts[0].Ports[0] != (Port{Name: "load_multiplier", Signal: "MULTIPLIER"}) {
		t.Errorf("Actuators = %+v", acts)
	}
	acts = Actuators(limit)
	if len(acts) != 2 || acts[0].Index != 0 || len(acts[0].Ports) != 2 || acts[0].Ports[0].Name != "bucket_capacity" ||
		acts[0].Ports[0].Constant == nil || *acts[0].Ports[0].Constant != 5 || acts[1].Ports[0].Name != "accept_percentage" {
		t.Errorf("Actuators(per-user-limit) = %+v", acts)
	}

	d := ForPolicy(sp, Options{})
	if d.UID != "fluxgate-default-service-protection" {
		t.Errorf("uid %q", d.UID)
	}
	var exprs []string
	for _, q := range d.Queries() {
		exprs = append(exprs, q.Expr)
	}
	all := strings.Join(exprs, "\n")
	for _, s := range want {
		if !strings.Contains(all, `signal_reading{policy_name="service-protection",signal_name="`+s+`"}`) {
			t.Errorf("no panel for signal %s", s)
		}
	}
	for _, q := range []string{"0.5", "0.95", "0.99"} {
		if !strings.Contains(all, `histogram_quantile(`+q+`, sum by (le) (rate(flux_meter_bucket{policy_name="service-protection",flux_meter_name="checkout-latency"`) {
			t.Errorf("no p%s of the checkout-latency flux meter", q)
		}
	}
	if id := fmt.Sprint(acts0Index(sp)); !strings.Contains(all, `component_id="`+id+`"`) {
		t.Errorf("no decisions panel of the load scheduler (component %s)", id)
	}
}

func TestPolicyUID(t *testing.T) {
	long := PolicyUID(policies.Key{Namespace: "payments-production", Name: "checkout-service-protection"})
	if len(long) != maxUIDLen || !strings.HasPrefix(long, "fluxgate-payments-production-") {
		t.Errorf("PolicyUID = %q (%d chars)", long, len(long))
	}
	other := PolicyUID(policies.Key{Namespace: "payments-production", Name: "checkout-service-protection-2"})
	if other == long {
		t.Errorf("two policies share uid %q", long)
	}
}

// TestGolden compares the generated JSON with testdata; -update rewrites.
func TestGolden(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "checkout.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	docs, err := policies.Parse("checkout.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []*Dashboard{Overview(Options{}), ForPolicy(docs[0].Object.(*policies.Policy), Options{})} {
		got, err := d.JSON()
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join("testdata", d.UID+".json")
		if *update {
			if err := os.MkdirAll("testdata", 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test ./dashboards -run TestGolden -update)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from the generated dashboard; run go test ./dashboards -run TestGolden -update and review the diff", path)
		}
	}
}

// acts0Index is the index of p's first actuator (its load scheduler).
func acts0Index(p *policies.Policy) int { return Actuators(p)[0].Index }
