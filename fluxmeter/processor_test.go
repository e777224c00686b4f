package fluxmeter

import (
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/fluxgate/fluxgate/controlpoint"
	"github.com/fluxgate/fluxgate/metricnames"
	"github.com/fluxgate/fluxgate/policies"
)

func parsePolicies(t testing.TB, srcs ...string) []*policies.Policy {
	t.Helper()
	var out []*policies.Policy
	for i, src := range srcs {
		docs, err := policies.Parse(fmt.Sprintf("p%d.yaml", i), []byte(src))
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range docs {
			out = append(out, d.Object.(*policies.Policy))
		}
	}
	return out
}

func policyWithMeter(name, meter, buckets string) string {
	return fmt.Sprintf(`apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: %s}
spec:
  resources:
    flux_meters:
      %s:
        selectors:
          - control_point: ingress
            label_matcher: {match_labels: {http.target: /checkout}}
        %s
  circuit: {components: []}
`, name, meter, buckets)
}

func str(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

func num(k string, v float64) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: v}}}
}

func integer(k string, v int64) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: v}}}
}

func strs(k string, vs ...string) *commonpb.KeyValue {
	arr := &commonpb.ArrayValue{}
	for _, v := range vs {
		arr.Values = append(arr.Values, &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}})
	}
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: arr}}}
}

func batch(spans ...*tracepb.Span) []*tracepb.ResourceSpans {
	return []*tracepb.ResourceSpans{{ScopeSpans: []*tracepb.ScopeSpans{{Spans: spans}}}}
}

func span(attrs ...*commonpb.KeyValue) *tracepb.Span {
	return &tracepb.Span{Name: "request", StartTimeUnixNano: 1_000_000_000, EndTimeUnixNano: 1_000_000_000, Attributes: attrs}
}

// scrape returns the registry's flux meter series in text form, sorted.
func scrape(t *testing.T, p *Processor, names ...string) string {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(p)
	var b strings.Builder
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		keep := len(names) == 0
		for _, n := range names {
			keep = keep || mf.GetName() == n
		}
		if !keep {
			continue
		}
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				if l.GetValue() != "" {
					ls = append(ls, l.GetName()+"="+l.GetValue())
				}
			}
			fmt.Fprintf(&b, "%s{%s}", mf.GetName(), strings.Join(ls, ","))
			if h := m.GetHistogram(); h != nil {
				fmt.Fprintf(&b, " count=%d sum=%g", h.GetSampleCount(), h.GetSampleSum())
				for _, bk := range h.GetBucket() {
					fmt.Fprintf(&b, " le%g=%d", bk.GetUpperBound(), bk.GetCumulativeCount())
				}
			}
			if c := m.GetCounter(); c != nil {
				fmt.Fprintf(&b, " %g", c.GetValue())
			}
			b.WriteString("\n")
		}
	}
	return b.String()
}

func TestBucketCountsForEachBucketKind(t *testing.T) {
	tests := []struct {
		name, buckets, want string
	}{
		{"static", "static_buckets: {buckets: [10, 50, 100]}",
			"flux_meter{decision_type=DECISION_TYPE_ACCEPTED,flow_status=OK,flux_meter_name=lat,http_status_code=200,policy_name=shop} count=5 sum=1225 le10=2 le50=3 le100=4\n"},
		{"linear", "linear_buckets: {start: 10, width: 40, count: 3}",
			"flux_meter{decision_type=DECISION_TYPE_ACCEPTED,flow_status=OK,flux_meter_name=lat,http_status_code=200,policy_name=shop} count=5 sum=1225 le10=2 le50=3 le90=4\n"},
		{"exponential", "exponential_buckets: {start: 10, factor: 10, count: 3}",
			"flux_meter{decision_type=DECISION_TYPE_ACCEPTED,flow_status=OK,flux_meter_name=lat,http_status_code=200,policy_name=shop} count=5 sum=1225 le10=2 le100=4 le1000=4\n"},
		{"exponential range", "exponential_buckets_range: {min: 10, max: 1000, count: 3}",
			"flux_meter{decision_type=DECISION_TYPE_ACCEPTED,flow_status=OK,flux_meter_name=lat,http_status_code=200,policy_name=shop} count=5 sum=1225 le10=2 le100=4 le1000=4\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := New(Options{})
			p.SetPolicies(parsePolicies(t, policyWithMeter("shop", "lat", tt.buckets)))
			var spans []*tracepb.Span
			// 5 ms and 10 ms (on a boundary: le is inclusive), 40, 70, 1100.
			for _, ms := range []float64{5, 10, 40, 70, 1100} {
				spans = append(spans, span(str(AttrControlPoint, "ingress"), strs(AttrFluxMeters, "default/shop/lat"),
					str(AttrDecisionType, metricnames.DecisionAccepted), integer(AttrHTTPStatus, 200), num(AttrWorkloadMillis, ms)))
			}
			if rej, _ := p.Consume(batch(spans...)); rej != 0 {
				t.Fatalf("rejected %d spans", rej)
			}
			if got := scrape(t, p, "flux_meter"); got != tt.want {
				t.Errorf("got\n%swant\n%s", got, tt.want)
			}
		})
	}
}

func TestRejectedInvalidAndDurationFallback(t *testing.T) {
	p := New(Options{})
	p.SetPolicies(parsePolicies(t, policyWithMeter("shop", "lat", "static_buckets: {buckets: [1, 10]}")))
	base := []*commonpb.KeyValue{str(AttrControlPoint, "ingress"), strs(AttrFluxMeters, "lat")}
	with := func(extra ...*commonpb.KeyValue) *tracepb.Span {
		return span(append(append([]*commonpb.KeyValue{}, base...), extra...)...)
	}
	timed := with(integer(AttrHTTPStatusOld, 503))
	timed.StartTimeUnixNano, timed.EndTimeUnixNano = 1_000_000_000, 1_000_000_000+2_500_000 // 2.5 ms
	timed.Status = &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR}
	p.Consume(batch(
		with(str(AttrDecisionType, metricnames.DecisionRejected), num(AttrWorkloadMillis, 0.5), integer(AttrHTTPStatus, 429)),
		with(str(AttrDecisionType, metricnames.DecisionAccepted), str(AttrWorkloadMillis, "fast"), integer(AttrHTTPStatus, 200)),
		timed,
	))
	want := "flux_meter{decision_type=DECISION_TYPE_ACCEPTED,flow_status=Error,flux_meter_name=lat,http_status_code=503,policy_name=shop} count=1 sum=2.5 le1=0 le10=1\n" +
		"flux_meter{decision_type=DECISION_TYPE_REJECTED,flow_status=OK,flux_meter_name=lat,http_status_code=429,policy_name=shop} count=1 sum=0.5 le1=1 le10=1\n" +
		"invalid_flux_meter_total{decision_type=DECISION_TYPE_ACCEPTED,flow_status=OK,flux_meter_name=lat,http_status_code=200,policy_name=shop} 1\n"
	if got := scrape(t, p, "flux_meter", "invalid_flux_meter_total"); got != want {
		t.Errorf("got\n%swant\n%s", got, want)
	}
}

func TestMetersAreScopedPerPolicy(t *testing.T) {
	p := New(Options{})
	p.SetPolicies(parsePolicies(t,
		policyWithMeter("a", "latency", "static_buckets: {buckets: [10]}"),
		policyWithMeter("b", "latency", "static_buckets: {buckets: [100]}")))
	p.Consume(batch(
		span(str(AttrControlPoint, "ingress"), strs(AttrFluxMeters, "default/a/latency"), num(AttrWorkloadMillis, 5)),
		span(str(AttrControlPoint, "ingress"), strs(AttrFluxMeters, "default/b/latency"), num(AttrWorkloadMillis, 50)),
		// A bare name is ambiguous with two policies owning it: not observed.
		span(str(AttrControlPoint, "ingress"), strs(AttrFluxMeters, "latency"), num(AttrWorkloadMillis, 7)),
	))
	want := "flux_meter{decision_type=DECISION_TYPE_ACCEPTED,flow_status=OK,flux_meter_name=latency,policy_name=a} count=1 sum=5 le10=1\n" +
		"flux_meter{decision_type=DECISION_TYPE_ACCEPTED,flow_status=OK,flux_meter_name=latency,policy_name=b} count=1 sum=50 le100=1\n"
	if got := scrape(t, p, "flux_meter"); got != want {
		t.Errorf("got\n%swant\n%s", got, want)
	}
	// Removing policy a removes its series; b keeps its histogram.
	p.SetPolicies(parsePolicies(t, policyWithMeter("b", "latency", "static_buckets: {buckets: [100]}")))
	want = "flux_meter{decision_type=DECISION_TYPE_ACCEPTED,flow_status=OK,flux_meter_name=latency,policy_name=b} count=1 sum=50 le100=1\n"
	if got := scrape(t, p, "flux_meter"); got != want {
		t.Errorf("after removing a: got\n%swant\n%s", got, want)
	}
}

func TestEngineMatchesSpansWithoutFluxMeterNames(t *testing.T) {
	ps := parsePolicies(t, policyWithMeter("shop", "lat", "static_buckets: {buckets: [10]}"))
	e, err := controlpoint.New(controlpoint.Options{DecisionLogPerSecond: -1})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.SetPolicies(ps); err != nil {
		t.Fatal(err)
	}
	p := New(Options{Matcher: e})
	p.SetPolicies(ps)
	rej, _ := p.Consume(batch(
		span(str(AttrControlPoint, "ingress"), str("http.target", "/checkout"), num(AttrWorkloadMillis, 3)),
		span(str(AttrControlPoint, "ingress"), str("http.target", "/other"), num(AttrWorkloadMillis, 3)),
		span(str(AttrControlPoint, "egress"), str("http.target", "/checkout"), num(AttrWorkloadMillis, 3)),
		span(str("http.target", "/checkout")), // no control point: unusable
	))
	if rej != 1 {
		t.Fatalf("rejected %d spans, want the one without a control point", rej)
	}
	want := "flux_meter{decision_type=DECISION_TYPE_ACCEPTED,flow_status=OK,flux_meter_name=lat,policy_name=shop} count=1 sum=3 le10=1\n"
	if got := scrape(t, p, "flux_meter"); got != want {
		t.Errorf("got\n%swant\n%s", got, want)
	}
	if got := testutil.ToFloat64(p.unmatched); got != 2 {
		t.Errorf("unmatched = %v, want 2", got)
	}
}

func TestUnchangedMeterKeepsItsHistogramAcrossReloads(t *testing.T) {
	p := New(Options{})
	src := policyWithMeter("shop", "lat", "static_buckets: {buckets: [10]}")
	p.SetPolicies(parsePolicies(t, src))
	p.Consume(batch(span(str(AttrControlPoint, "ingress"), strs(AttrFluxMeters, "lat"), num(AttrWorkloadMillis, 1))))
	p.SetPolicies(parsePolicies(t, src)) // a re-parse: new objects, same meter
	p.Consume(batch(span(str(AttrControlPoint, "ingress"), strs(AttrFluxMeters, "lat"), num(AttrWorkloadMillis, 1))))
	if got := scrape(t, p, "flux_meter"); !strings.Contains(got, "count=2") {
		t.Fatalf("histogram restarted on reload: %s", got)
	}
	p.SetPolicies(parsePolicies(t, policyWithMeter("shop", "lat", "static_buckets: {buckets: [20]}")))
	if got := scrape(t, p, "flux_meter"); got != "" {
		t.Fatalf("new buckets must start a new histogram, got %s", got)
	}
}

// BenchmarkConsume is issue 4's ingest target: batches of 512 spans that
// name their flux meter.
func BenchmarkConsume(b *testing.B) {
	p := New(Options{})
	p.SetPolicies(parsePolicies(b, policyWithMeter("shop", "lat", "")))
	spans := make([]*tracepb.Span, 512)
	for i := range spans {
		spans[i] = span(str(AttrControlPoint, "ingress"), strs(AttrFluxMeters, "default/shop/lat"),
			str(AttrDecisionType, metricnames.DecisionAccepted), integer(AttrHTTPStatus, int64(200+i%3)), num(AttrWorkloadMillis, float64(i%700)),
			str("http.target", "/checkout"), str("http.method", "GET"))
	}
	rs := batch(spans...)
	p.Consume(rs)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		p.Consume(rs)
	}
	b.ReportMetric(float64(b.N)*512/b.Elapsed().Seconds(), "spans/s")
}

// BenchmarkConsumeMatched is the same with spans that the engine matches.
func BenchmarkConsumeMatched(b *testing.B) {
	ps := parsePolicies(b, policyWithMeter("shop", "lat", ""))
	e, _ := controlpoint.New(controlpoint.Options{DecisionLogPerSecond: -1})
	_ = e.SetPolicies(ps)
	p := New(Options{Matcher: e})
	p.SetPolicies(ps)
	spans := make([]*tracepb.Span, 512)
	for i := range spans {
		spans[i] = span(str(AttrControlPoint, "ingress"), str("http.target", "/checkout"), str("http.method", "GET"),
			integer(AttrHTTPStatus, 200), num(AttrWorkloadMillis, float64(i%700)))
	}
	rs := batch(spans...)
	p.Consume(rs)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		p.Consume(rs)
	}
	b.ReportMetric(float64(b.N)*512/b.Elapsed().Seconds(), "spans/s")
}

// TestSeriesStayBoundedUnderDistinctLabels sends 100,000 spans that each
// carry a distinct combination of user-controlled values. Only the flux
// meters of loaded policies and HTTP status codes 100..599 become label
// values, so the series count has a fixed bound however many arrive.
func TestSeriesStayBoundedUnderDistinctLabels(t *testing.T) {
	p := New(Options{})
	p.SetPolicies(parsePolicies(t, policyWithMeter("shop", "lat", "static_buckets: {buckets: [10]}")))
	spans := make([]*tracepb.Span, 0, 1000)
	for i := 0; i < 100_000; i++ {
		decision := metricnames.DecisionAccepted
		if i%2 == 1 {
			decision = metricnames.DecisionRejected
		}
		spans = append(spans, span(
			str(AttrControlPoint, fmt.Sprint("cp-", i)),
			strs(AttrFluxMeters, "lat", fmt.Sprint("meter-", i)),
			str(AttrDecisionType, decision),
			integer(AttrHTTPStatus, int64(i)),
			str("user", fmt.Sprint("user-", i)),
			num(AttrWorkloadMillis, float64(i%50)),
		))
		if len(spans) == cap(spans) {
			p.Consume(batch(spans...))
			spans = spans[:0]
		}
	}
	series := 0
	for _, m := range p.meters.Load().sorted {
		m.mu.RLock()
		series += len(m.series)
		m.mu.RUnlock()
	}
	// One meter × 500 status codes (+ none) × 2 decisions × 2 flow statuses.
	if series > 501*2*2 {
		t.Fatalf("%d series after 100,000 distinct label combinations", series)
	}
	t.Logf("%d series after 100,000 spans with distinct labels", series)
}

// An in-process flow lands on the same series as the span that carries
// the same attributes.
func TestObserveMatchesConsume(t *testing.T) {
	bySpan, byFlow := New(Options{}), New(Options{})
	ps := parsePolicies(t, policyWithMeter("shop", "lat", "static_buckets: {buckets: [1, 10]}"))
	bySpan.SetPolicies(ps)
	byFlow.SetPolicies(ps)
	bySpan.Consume(batch(
		span(str(AttrControlPoint, "ingress"), strs(AttrFluxMeters, "lat"), str(AttrDecisionType, metricnames.DecisionAccepted),
			integer(AttrHTTPStatus, 200), num(AttrWorkloadMillis, 2.5)),
		span(str(AttrControlPoint, "ingress"), strs(AttrFluxMeters, "lat"), str(AttrDecisionType, metricnames.DecisionRejected),
			integer(AttrHTTPStatus, 429), num(AttrWorkloadMillis, 0)),
		span(str(AttrControlPoint, "ingress"), strs(AttrFluxMeters), integer(AttrHTTPStatus, 200), num(AttrWorkloadMillis, 1)),
	))
	byFlow.Observe(Flow{ControlPoint: "ingress", FluxMeters: []string{"lat"}, Status: 200, WorkloadMillis: 2.5})
	byFlow.Observe(Flow{ControlPoint: "ingress", FluxMeters: []string{"lat"}, Rejected: true, Status: 429})
	byFlow.Observe(Flow{ControlPoint: "ingress", Status: 200, WorkloadMillis: 1}) // names no meter: unmatched
	names := []string{"flux_meter", "fluxgate_fluxmeter_spans_total", "fluxgate_fluxmeter_unmatched_spans_total"}
	want := scrape(t, bySpan, names...)
	if !strings.Contains(want, "count=1 sum=2.5") {
		t.Fatalf("span reference is missing the accepted flow:\n%s", want)
	}
	if got := scrape(t, byFlow, names...); got != want {
		t.Errorf("flows gave\n%sspans gave\n%s", got, want)
	}
}

// The span attribute a flux meter measures by default is the one flows
// carry their workload's duration in.
func TestDefaultAttributeIsTheWorkloadDuration(t *testing.T) {
	if AttrWorkloadMillis != policies.DefaultAttributeKey {
		t.Fatalf("flow spans carry %q, flux meters measure %q by default", AttrWorkloadMillis, policies.DefaultAttributeKey)
	}
}
