package prometheus

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql/parser"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/fluxgate/fluxgate/agent"
	"github.com/fluxgate/fluxgate/dashboards"
	"github.com/fluxgate/fluxgate/fluxmeter"
	"github.com/fluxgate/fluxgate/metricnames"
	"github.com/fluxgate/fluxgate/policies"
)

// dashboardPolicy has a flux meter, a circuit with a PromQL signal and a
// variable, and a rate limiter driven by the variable: every row of a
// policy dashboard has data once flows are checked and spans sent.
const dashboardPolicy = `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: dash}
spec:
  resources:
    flux_meters:
      checkout-latency:
        selectors:
          - control_point: ingress
            label_matcher: {match_labels: {http.target: /checkout}}
        static_buckets: {buckets: [10, 25, 50, 100, 250, 500, 1000]}
  circuit:
    evaluation_interval: 1s
    components:
      - query:
          promql:
            query_string: sum(rate(flux_meter_count{flux_meter_name="checkout-latency"}[5s]))
            evaluation_interval: 1s
            out_ports: {output: {signal_name: FLOW_RATE}}
      - variable:
          constant_output: {value: 5}
          out_ports: {output: {signal_name: CAPACITY}}
      - flow_control:
          rate_limiter:
            selectors: [{control_point: ingress}]
            in_ports: {bucket_capacity: {signal_name: CAPACITY}, fill_amount: {signal_name: CAPACITY}}
            parameters: {interval: 1s}
`

// exercised are the metrics this test makes the agent export; a panel
// query that reads only these must return data.
var exercised = map[string]bool{
	"fluxgate_flow_decisions_total":       true,
	"flux_meter_bucket":                   true,
	"flux_meter_count":                    true,
	"flux_meter_sum":                      true,
	"signal_reading":                      true,
	"invalid_signal_readings_total":       true,
	"fluxgate_circuit_ticks_total":        true,
	"fluxgate_circuit_missed_ticks_total": true,
	"up":                                  true,
	"fluxgate_policies_loaded":            true,
	"fluxgate_policy_reload_errors_total": true,
	"fluxgate_system_uptime_seconds":      true,
}

// TestDashboardQueries runs every panel query of the overview dashboard
// and of the policy's dashboard against a real Prometheus that scraped an
// agent which checked flows and measured spans. Every query must be
// accepted; those reading only the metrics the test exercised must return
// data. The others (gateway, breakers, Redis, TLS) are listed in the log.
func TestDashboardQueries(t *testing.T) {
	a := startAgent(t, dashboardPolicy)
	prom := Start(t, time.Second, a.Addr(agent.ListenerMetrics).String())
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	if err := prom.WaitScraped(ctx, 1); err != nil {
		t.Fatal(err)
	}

	exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(a.Addr(agent.ListenerOTLPGRPC).String()), otlptracegrpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(50*time.Millisecond)))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	tr := tp.Tracer("checkout-service")
	checkURL := "http://" + a.Addr(agent.ListenerHTTP).String() + "/v1/check"

	// For 6 s, 30 checks a second against a limit of 5 (some accepted,
	// most rejected) and 30 spans, one in ten a 500.
	tick := time.NewTicker(100 * time.Millisecond)
	for i := 0; i < 60; i++ {
		<-tick.C
		for j := 0; j < 3; j++ {
			resp, err := http.Post(checkURL, "application/json", strings.NewReader(`{"control_point":"ingress","labels":{"http.target":"/checkout"}}`))
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("check: %s", resp.Status)
			}
			status := 200
			if (i*3+j)%10 == 0 {
				status = 500
			}
			_, sp := tr.Start(ctx, "POST /checkout")
			sp.SetAttributes(
				attribute.String(fluxmeter.AttrControlPoint, "ingress"),
				attribute.String("http.target", "/checkout"),
				attribute.String(fluxmeter.AttrDecisionType, metricnames.DecisionAccepted),
				attribute.Int(fluxmeter.AttrHTTPStatus, status),
				attribute.Float64(fluxmeter.AttrWorkloadMillis, float64(20+j*40)),
			)
			sp.End()
		}
	}
	tick.Stop()
	if err := tp.ForceFlush(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2500 * time.Millisecond) // two more scrapes

	docs, err := policies.Parse("dash.yaml", []byte(dashboardPolicy))
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]string{"__rate_interval": "1m", "__range": "1h", "route": ".*", "policy": ".*"}
	var noData []string
	for _, d := range []*dashboards.Dashboard{
		dashboards.Overview(dashboards.Options{}),
		dashboards.ForPolicy(docs[0].Object.(*policies.Policy), dashboards.Options{}),
	} {
		for _, q := range d.Queries() {
			expr, err := dashboards.Expand(q.Expr, values)
			if err != nil {
				t.Fatal(err)
			}
			parsed, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
			if err != nil {
				t.Fatalf("%s / %s: %v", d.UID, q.Panel, err)
			}
			var metrics, missing []string
			parser.Inspect(parsed, func(n parser.Node, _ []parser.Node) error {
				if vs, ok := n.(*parser.VectorSelector); ok {
					metrics = append(metrics, vs.Name)
					if !exercised[vs.Name] {
						missing = append(missing, vs.Name)
					}
				}
				return nil
			})
			v, err := prom.Query(ctx, expr)
			if err != nil {
				t.Errorf("%s / %s %s: %v", d.UID, q.Panel, q.RefID, err)
				continue
			}
			switch {
			case len(v) > 0:
			case len(missing) == 0:
				t.Errorf("%s / %s %s: no data from %s", d.UID, q.Panel, q.RefID, expr)
			default:
				noData = append(noData, d.UID+" / "+q.Panel+" "+q.RefID+": "+strings.Join(missing, ", "))
			}
		}
	}
	t.Logf("%d queries without data, as their metrics are not exported in this test:\n%s", len(noData), strings.Join(noData, "\n"))
}
