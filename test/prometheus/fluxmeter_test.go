package prometheus

import (
	"context"
	"math"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/fluxgate/fluxgate/agent"
	"github.com/fluxgate/fluxgate/agent/agenttest"
	"github.com/fluxgate/fluxgate/fluxmeter"
	"github.com/fluxgate/fluxgate/metricnames"
)

const checkoutPolicy = `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: checkout}
spec:
  resources:
    flux_meters:
      checkout-latency:
        selectors:
          - control_point: ingress
            label_matcher: {match_labels: {http.target: /checkout}}
        static_buckets: {buckets: [10, 25, 50, 100, 250, 500, 1000]}
  circuit: {components: []}
`

func startAgent(t *testing.T, policy string) *agent.Agent {
	t.Helper()
	return agenttest.Start(t, agenttest.Config(t, policy))
}

// TestSeedFluxMeterQueries sends spans through the real OpenTelemetry SDK
// to the agent, lets a real Prometheus scrape the agent, and runs the three
// queries of the Flux Meter seed document.
func TestSeedFluxMeterQueries(t *testing.T) {
	a := startAgent(t, checkoutPolicy)
	prom := Start(t, time.Second, a.Addr(agent.ListenerMetrics).String())
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(a.Addr(agent.ListenerOTLPGRPC).String()), otlptracegrpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(50*time.Millisecond)))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	tr := tp.Tracer("checkout-service")
	emit := func(ms float64) {
		_, sp := tr.Start(ctx, "POST /checkout")
		// No fluxgate.flux_meters: the agent matches the selector itself,
		// as for any OpenTelemetry-instrumented service.
		sp.SetAttributes(
			attribute.String(fluxmeter.AttrControlPoint, "ingress"),
			attribute.String("http.target", "/checkout"),
			attribute.String(fluxmeter.AttrDecisionType, metricnames.DecisionAccepted),
			attribute.Int(fluxmeter.AttrHTTPStatus, 200),
			attribute.Float64(fluxmeter.AttrWorkloadMillis, ms),
		)
		sp.End()
	}

	// 100 flows per second for 8 seconds: every tenth takes 400 ms, the
	// rest 20 ms. So the mean is 58 ms, the rate 100/s, and the p95 falls
	// halfway into the (250, 500] bucket: 375.
	if err := prom.WaitScraped(ctx, 1); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	tick := time.NewTicker(100 * time.Millisecond)
	for i := 0; i < 80; i++ {
		<-tick.C
		for j := 0; j < 9; j++ {
			emit(20)
		}
		emit(400)
	}
	tick.Stop()
	end := time.Now()
	if err := tp.ForceFlush(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2500 * time.Millisecond) // two more scrapes

	const name = `flux_meter_name="checkout-latency"`
	// The rate is evaluated inside the sending period: 4 s ending 1 s
	// before the last flow (the series appears with the first flows). A
	// window's first sample may fall between spans of one 9:1 batch, so
	// the mean and the quantile are exact only to within 1%.
	t.Logf("sent for %v", end.Sub(start))
	queries := []struct {
		q         string
		at        time.Time
		want, tol float64
	}{
		// Seed 002: average duration, requests per second, p95.
		{`sum(increase(flux_meter_sum{` + name + `}[10s]))/sum(increase(flux_meter_count{` + name + `}[10s]))`, time.Time{}, 58, 0.58},
		{`sum(rate(flux_meter_count{` + name + `}[4s]))`, end.Add(-time.Second), 100, 20},
		{`histogram_quantile(0.95, sum(rate(flux_meter_bucket{` + name + `}[10s])) by (le))`, time.Time{}, 375, 3.75},
	}
	for _, q := range queries {
		got, err := prom.Scalar(ctx, q.q, q.at)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(got-q.want) > q.tol {
			t.Errorf("%s = %v, want %v ± %v", q.q, got, q.want, q.tol)
		}
	}
	// The series carries the labels the seed promises.
	v, err := prom.Query(ctx, `flux_meter_count{`+name+`}`)
	if err != nil {
		t.Fatal(err)
	}
	if len(v) != 1 || v[0].Metric["policy_name"] != "checkout" || v[0].Metric["decision_type"] != "DECISION_TYPE_ACCEPTED" ||
		v[0].Metric["http_status_code"] != "200" || v[0].Metric["flow_status"] != "OK" || v[0].Value != 800 {
		t.Errorf("flux_meter_count = %+v, want one series of 800 flows with the seed's labels", v)
	}
}
