package main

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fluxgate/fluxgate/controlpoint"
	"github.com/fluxgate/fluxgate/controlpoint/flow"
	"github.com/fluxgate/fluxgate/policies"
)

// Each -policy level's file parses as fluxgate reads it and, loaded into
// a decision engine, decides at ingress (and nowhere else) as its name
// says: limit by a rate limiter keyed by X-User that admits, full by that
// plus the flux meter and an adaptive concurrency limiter holding the
// flow's slot.
func TestPolicyLevels(t *testing.T) {
	for _, tc := range []struct {
		level      string
		components []string // the Limiters' component types at ingress
		meters     bool
	}{
		{policyNone, nil, false},
		{policyLimit, []string{"rate_limiter"}, false},
		{policyFull, []string{"adaptive_concurrency", "rate_limiter"}, true},
	} {
		text, err := policyText(tc.level)
		if err != nil {
			t.Fatal(err)
		}
		var ps []*policies.Policy
		if text != "" {
			docs, err := policies.Parse("gwbench.yaml", []byte(text))
			if err != nil {
				t.Fatalf("%s: %v\n%s", tc.level, err, text)
			}
			if len(docs) != 1 {
				t.Fatalf("%s: %d documents", tc.level, len(docs))
			}
			p, ok := docs[0].Object.(*policies.Policy)
			if !ok {
				t.Fatalf("%s: %T, want a Policy", tc.level, docs[0].Object)
			}
			ps = append(ps, p)
		}
		e, err := controlpoint.New(controlpoint.Options{Registerer: prometheus.NewRegistry(), DecisionLogPerSecond: -1})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.SetPolicies(ps); err != nil {
			t.Fatalf("%s: %v", tc.level, err)
		}
		now := time.Now()
		var d flow.Decision
		for range 3 {
			e.Check(context.Background(), now, &flow.Request{ControlPoint: "ingress", Labels: map[string]string{"http.request.header.x_user": userValue}}, &d)
			if !d.Accepted {
				t.Fatalf("%s: rejected (%v): the policy must never reject", tc.level, d.Reason)
			}
			e.EndFlow(now, d.FlowID, false)
		}
		var types []string
		for _, l := range d.Limiters {
			types = append(types, l.ComponentType)
		}
		slices.Sort(types)
		if !slices.Equal(types, tc.components) {
			t.Errorf("%s: components at ingress %v, want %v", tc.level, types, tc.components)
		}
		if got := slices.ContainsFunc(d.FluxMeters, func(m string) bool { return strings.HasSuffix(m, "/"+fluxMeterName) }); got != tc.meters {
			t.Errorf("%s: flux meters %v, want %s: %v", tc.level, d.FluxMeters, fluxMeterName, tc.meters)
		}
		if (tc.level == policyFull) != (d.FlowID != 0) {
			t.Errorf("%s: flow id %d: only full's adaptive limiter holds a slot", tc.level, d.FlowID)
		}
		e.EndFlow(now, d.FlowID, false)
		e.Check(context.Background(), now, &flow.Request{ControlPoint: "egress", Labels: map[string]string{"http.request.header.x_user": userValue}}, &d)
		if len(d.Limiters) != 0 || len(d.FluxMeters) != 0 {
			t.Errorf("%s: decides at egress too: %+v", tc.level, d)
		}
	}
	if _, err := policyText("ful"); err == nil || !strings.Contains(err.Error(), "none, limit, full") {
		t.Errorf("-policy ful: %v, want the levels named", err)
	}
}

// An answer counts as decided only with the decision field and the rate
// limiter's numbers: a gateway without the policy answers 200 with
// neither.
func TestCheckDecided(t *testing.T) {
	decided := http.Header{}
	decided.Set(flow.HeaderDecision, "accepted")
	decided.Set("RateLimit-Limit", "1000000000000")
	noLimit := http.Header{}
	noLimit.Set(flow.HeaderDecision, "accepted")
	for _, tc := range []struct {
		status int
		h      http.Header
		want   string // "" for no error
	}{
		{200, decided, ""},
		{200, http.Header{}, "did not decide"},
		{200, noLimit, "rate limiter did not decide"},
		{429, decided, "status 429"},
	} {
		err := checkDecided(&http.Response{StatusCode: tc.status, Header: tc.h})
		if (err == nil) != (tc.want == "") || err != nil && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%d %v: %v, want %q", tc.status, tc.h, err, tc.want)
		}
	}
}

// The flux meter's count sums its series (one a decision, status and
// flow status), and no other meter's or metric's.
func TestSumSeries(t *testing.T) {
	text := `# HELP flux_meter_count x
flux_meter_count{decision_type="DECISION_TYPE_ACCEPTED",flow_status="OK",flux_meter_name="gwbench-latency",http_status_code="200",policy_name="gwbench-full"} 1200
flux_meter_count{decision_type="DECISION_TYPE_REJECTED",flow_status="OK",flux_meter_name="gwbench-latency",http_status_code="429",policy_name="gwbench-full"} 3
flux_meter_count{flux_meter_name="other"} 99
flux_meter_sum{flux_meter_name="gwbench-latency"} 77.5
flux_meter_count_total{flux_meter_name="gwbench-latency"} 5
`
	got, err := sumSeries(strings.NewReader(text), "flux_meter_count", `flux_meter_name="`+fluxMeterName+`"`)
	if err != nil || got != 1203 {
		t.Errorf("sum %v, %v; want 1203", got, err)
	}
	if _, err := sumSeries(strings.NewReader(`flux_meter_count{flux_meter_name="gwbench-latency"} x`), "flux_meter_count", fluxMeterName); err == nil {
		t.Error("a malformed value was summed")
	}
}
