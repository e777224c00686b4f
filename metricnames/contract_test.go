package metricnames_test

import (
	"context"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fluxgate/fluxgate/circuit"
	"github.com/fluxgate/fluxgate/controlpoint"
	"github.com/fluxgate/fluxgate/controlpoint/breaker"
	"github.com/fluxgate/fluxgate/controlpoint/client"
	"github.com/fluxgate/fluxgate/controlpoint/client/otlpspans"
	"github.com/fluxgate/fluxgate/fluxmeter"
	m "github.com/fluxgate/fluxgate/metricnames"
)

// recorder is a Registerer that keeps the label names of every metric
// described to it, by metric name.
type recorder map[string][]string

var descRE = regexp.MustCompile(`fqName: "([^"]*)".*variableLabels: \{([^}]*)\}`)

func (r recorder) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc, 64)
	go func() { c.Describe(ch); close(ch) }()
	for d := range ch {
		sm := descRE.FindStringSubmatch(d.String())
		if sm == nil {
			continue
		}
		var labels []string
		if sm[2] != "" {
			labels = strings.Split(sm[2], ",")
		}
		r[sm[1]] = labels
	}
	return nil
}

func (r recorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = r.Register(c)
	}
}

func (r recorder) Unregister(prometheus.Collector) bool { return false }

// TestExportersUseTheNames builds the packages that export the metrics of
// the public contract on a recording registry and checks each name and its
// labels: a package that spells a name or label its own way fails here.
func TestExportersUseTheNames(t *testing.T) {
	rec := recorder{}
	if _, err := controlpoint.New(controlpoint.Options{Registerer: rec}); err != nil {
		t.Fatal(err)
	}
	if _, err := circuit.NewRuntime(circuit.Options{Registerer: rec}); err != nil {
		t.Fatal(err)
	}
	if _, err := fluxmeter.NewReceiver(fluxmeter.New(fluxmeter.Options{}), rec); err != nil {
		t.Fatal(err)
	}
	if _, err := breaker.NewPrometheusListener(rec); err != nil {
		t.Fatal(err)
	}
	if _, err := client.NewGuard(nil, client.GuardOptions{Registerer: rec}); err != nil {
		t.Fatal(err)
	}
	// The exporter dials lazily: nothing listens on the endpoint.
	spans, err := otlpspans.New(context.Background(), otlpspans.Options{Endpoint: "127.0.0.1:1", Registerer: rec})
	if err != nil {
		t.Fatal(err)
	}
	if err := spans.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	meter := []string{m.LabelFluxMeterName, m.LabelPolicyName, m.LabelDecisionType, m.LabelHTTPStatusCode, m.LabelFlowStatus}
	limiter := []string{m.LabelPolicyName, m.LabelComponentID, m.LabelControlPoint}
	want := map[string][]string{
		m.FluxMeter:                   meter,
		m.InvalidFluxMeterTotal:       meter,
		m.SignalReading:               {m.LabelPolicyName, m.LabelSignalName},
		m.InvalidSignalReadingsTotal:  {m.LabelPolicyName, m.LabelSignalName},
		m.FlowDecisionsTotal:          {m.LabelPolicyName, m.LabelComponentID, m.LabelControlPoint, m.LabelDecisionType, m.LabelReason},
		m.RateLimiterRemainingTokens:  limiter,
		m.RateLimitHitsTotal:          limiter,
		m.BreakerState:                {m.LabelCircuitName, m.LabelState},
		m.BreakerStateNumeric:         {m.LabelCircuitName},
		m.BreakerStateTransitionTotal: {m.LabelCircuitName, m.LabelOldState, m.LabelNewState},
		m.ClientCheckFailuresTotal:    {m.LabelMode, m.LabelReason},
		m.ClientBreakerState:          nil,
		m.ClientSpansExportedTotal:    nil,
		m.ClientSpansDroppedTotal:     nil,
	}
	for name, labels := range want {
		got, ok := rec[name]
		if !ok {
			t.Errorf("no package registered %s", name)
			continue
		}
		if !slices.Equal(got, labels) {
			t.Errorf("%s has labels %v, want %v", name, got, labels)
		}
	}
}

// TestBreakerStates checks that the breaker names its states with the
// label values.
func TestBreakerStates(t *testing.T) {
	for s, want := range map[breaker.State]string{breaker.Closed: m.StateClosed, breaker.Open: m.StateOpen, breaker.HalfOpen: m.StateHalfOpen} {
		if got := s.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int(s), got, want)
		}
	}
}
