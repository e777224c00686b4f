package blueprints

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"

	"github.com/fluxgate/fluxgate/metricnames"
	"github.com/fluxgate/fluxgate/policies"
)

func init() {
	register(&Blueprint{
		Name:    "latency-slo",
		Summary: "flux meter + multi-window multi-burn-rate alerts on the share of flows slower than a threshold",
		decode: decoder(func() *latencySLO {
			v := &latencySLO{sloCommon: defaultSLO()}
			v.kind = "latency"
			return v
		}),
	})
	register(&Blueprint{
		Name:    "availability-slo",
		Summary: "flux meter + multi-window multi-burn-rate alerts on the share of flows that end in an error",
		decode: decoder(func() *availabilitySLO {
			v := &availabilitySLO{sloCommon: defaultSLO()}
			v.kind = "availability"
			return v
		}),
	})
}

// burnWindow is one multi-window alert: it fires while both the long and
// the short window burn the error budget at least factor times as fast as
// the SLO allows. These are the standard pairs for a 30-day window: 2% of
// the budget in an hour, 5% in six hours (page), 10% in a day, 10% in
// three days (ticket).
type burnWindow struct {
	long, short time.Duration
	factor      float64
	severity    string
}

var burnWindows = []burnWindow{
	{time.Hour, 5 * time.Minute, 14.4, "page"},
	{6 * time.Hour, 30 * time.Minute, 6, "page"},
	{24 * time.Hour, 2 * time.Hour, 3, "ticket"},
	{72 * time.Hour, 6 * time.Hour, 1, "ticket"},
}

// Names of the generated recording rules and alert.
const (
	errorRatioRecord = "fluxgate:slo_errors:ratio_rate" // + window, e.g. 5m
	objectiveRecord  = "fluxgate:slo_objective:ratio"
	budgetRecord     = "fluxgate:slo_error_budget_remaining:ratio"
	burnAlert        = "FluxGateSLOErrorBudgetBurn"
)

// sloCommon are the values both SLO blueprints share.
type sloCommon struct {
	kind       string // latency or availability
	PolicyName string `yaml:"policy_name"`
	Namespace  string `yaml:"namespace"`
	// Objective is the percentage of good flows, e.g. 99.5.
	Objective  float64      `yaml:"objective"`
	Window     promDuration `yaml:"window"`
	FluxMeter  sloMeter     `yaml:"flux_meter"`
	RunbookURL string       `yaml:"runbook_url"`
}

// sloMeter is the flux meter an SLO is measured with.
type sloMeter struct {
	Name         string              `yaml:"name"`
	Selectors    []policies.Selector `yaml:"selectors"`
	AttributeKey string              `yaml:"attribute_key"`
	Buckets      []float64           `yaml:"buckets"`
}

type latencySLO struct {
	sloCommon   `yaml:",inline"`
	ThresholdMs float64 `yaml:"threshold_ms"`
}

type availabilitySLO struct {
	sloCommon `yaml:",inline"`
}

func defaultSLO() sloCommon {
	return sloCommon{
		Namespace: policies.DefaultNamespace,
		Window:    promDuration(28 * 24 * time.Hour),
		FluxMeter: sloMeter{AttributeKey: policies.DefaultAttributeKey, Buckets: slices.Clone(policies.DefaultBuckets)},
	}
}

func (v *sloCommon) check(c *checker) {
	c.checkName("policy_name", "policy_name", v.PolicyName)
	c.checkName("namespace", "namespace", v.Namespace)
	switch {
	case !(v.Objective > 0 && v.Objective < 100):
		c.errorf("objective", "objective is the percentage of good flows, within (0, 100) exclusive, e.g. 99.5; got %v", v.Objective)
	case burnWindows[0].factor*v.budget() >= 1:
		c.errorf("objective", "objective %v%% leaves an error budget of %v%%: %v× that is all flows, so the fast-burn alert could never fire; use an objective above %.2f",
			v.Objective, num(v.budget()*100), num(burnWindows[0].factor), 100-100/burnWindows[0].factor)
	}
	if w := time.Duration(v.Window); w < 72*time.Hour {
		c.errorf("window", "window must be at least 3d (the longest alert window), got %s", v.Window)
	}
	c.checkName("flux_meter.name", "flux_meter.name", v.FluxMeter.Name)
	c.checkSelectors("flux_meter.selectors", v.FluxMeter.Selectors)
	if v.FluxMeter.AttributeKey == "" {
		c.errorf("flux_meter.attribute_key", "flux_meter.attribute_key must not be empty")
	}
	b := v.FluxMeter.Buckets
	if len(b) == 0 {
		c.errorf("flux_meter.buckets", "flux_meter.buckets must not be empty")
	}
	for i := range b {
		if math.IsNaN(b[i]) || math.IsInf(b[i], 0) || (i > 0 && !(b[i] > b[i-1])) {
			c.errorf(fmt.Sprintf("flux_meter.buckets.[%d]", i), "flux_meter.buckets must be finite and strictly increasing; bucket %d is %v", i, b[i])
			break
		}
	}
	if !strings.HasPrefix(v.RunbookURL, "https://") && !strings.HasPrefix(v.RunbookURL, "http://") {
		c.errorf("runbook_url", "runbook_url must be an http(s) URL, got %q", v.RunbookURL)
	}
}

func (v *latencySLO) check(c *checker) {
	v.sloCommon.check(c)
	if !slices.Contains(v.FluxMeter.Buckets, v.ThresholdMs) {
		c.errorf("threshold_ms", "threshold_ms %v is not a bucket boundary of the flux meter; the SLI counts the flows in the bucket le=%q, so the threshold must be one of flux_meter.buckets: %s",
			v.ThresholdMs, num(v.ThresholdMs), joinNums(v.FluxMeter.Buckets))
	}
}

func joinNums(fs []float64) string {
	s := make([]string, len(fs))
	for i, f := range fs {
		s[i] = num(f)
	}
	return strings.Join(s, ", ")
}

func (v *sloCommon) policyName() string { return v.PolicyName }
func (v *sloCommon) template() string   { return "slo.yaml.tmpl" }

// Kind is latency or availability (used by the template).
func (v *sloCommon) Kind() string { return v.kind }

// budget is the error budget: the fraction of flows allowed to be bad.
func (v *sloCommon) budget() float64 { return round(1 - v.Objective/100) }

// round drops the float noise of decimal arithmetic: 1-0.995 is 0.005.
func round(f float64) float64 {
	r, _ := strconv.ParseFloat(strconv.FormatFloat(f, 'g', 12, 64), 64)
	return r
}

// meter returns the matchers of the SLO's accepted flows.
func (v *sloCommon) meter() []string {
	return []string{eq(metricnames.LabelFluxMeterName, v.FluxMeter.Name), eq(metricnames.LabelPolicyName, v.PolicyName), eq(metricnames.LabelDecisionType, metricnames.DecisionAccepted)}
}

// windows are every window a ratio is recorded over, shortest first.
func (v *sloCommon) windows() []time.Duration {
	var ws []time.Duration
	for _, b := range burnWindows {
		ws = append(ws, b.long, b.short)
	}
	ws = append(ws, time.Duration(v.Window))
	slices.Sort(ws)
	return slices.Compact(ws)
}

// errorRatio is the PromQL of the bad share of accepted flows over w.
type errorRatio func(w string) string

func (v *latencySLO) errorRatio(w string) string {
	total := fmt.Sprintf("sum(rate(%s[%s]))", sel(metricnames.FluxMeterCount, v.meter()...), w)
	good := fmt.Sprintf("sum(rate(%s[%s]))", sel(metricnames.FluxMeterBucket, append(v.meter(), leMatcher(v.ThresholdMs))...), w)
	return fmt.Sprintf("(%s - %s) / %s", total, good, total)
}

// leMatcher matches a bucket boundary however the scraper wrote it:
// client_golang exposes 100 as "100", Prometheus 3 normalises it to
// "100.0" on ingestion.
func leMatcher(b float64) string {
	forms := []string{num(b)}
	if b == math.Trunc(b) && !strings.ContainsAny(forms[0], "e.") {
		forms = append(forms, forms[0]+".0")
	}
	if f := strconv.FormatFloat(b, 'f', -1, 64); !slices.Contains(forms, f) {
		forms = append(forms, f)
	}
	for i := range forms {
		forms[i] = regexp.QuoteMeta(forms[i])
	}
	return fmt.Sprintf("le=~%q", strings.Join(forms, "|"))
}

func (v *availabilitySLO) errorRatio(w string) string {
	total := fmt.Sprintf("sum(rate(%s[%s]))", sel(metricnames.FluxMeterCount, v.meter()...), w)
	bad := fmt.Sprintf("sum(rate(%s[%s]))", sel(metricnames.FluxMeterCount, append(v.meter(), eq(metricnames.LabelFlowStatus, metricnames.FlowError))...), w)
	return fmt.Sprintf("(%s or 0 * %s) / %s", bad, total, total)
}

func (v *latencySLO) rules(p *policies.Policy) []rulefmt.RuleGroup {
	return v.sloRules(v.errorRatio, fmt.Sprintf("were slower than %s ms", num(v.ThresholdMs)))
}

func (v *availabilitySLO) rules(p *policies.Policy) []rulefmt.RuleGroup {
	return v.sloRules(v.errorRatio, "ended in an error (5xx or an error span)")
}

// sloLabels are the labels of every recorded series and alert.
func (v *sloCommon) sloLabels() map[string]string {
	return map[string]string{"slo": v.PolicyName, "slo_type": v.kind}
}

func (v *sloCommon) sloRules(ratio errorRatio, bad string) []rulefmt.RuleGroup {
	rec := rulefmt.RuleGroup{Name: "fluxgate-slo-" + v.PolicyName + "-recordings"}
	for _, w := range v.windows() {
		rec.Rules = append(rec.Rules, recordRule(errorRatioRecord+promDur(w), ratio(promDur(w)), v.sloLabels()))
	}
	budget := num(v.budget())
	slo := eq("slo", v.PolicyName)
	rec.Rules = append(rec.Rules,
		recordRule(objectiveRecord, fmt.Sprintf("vector(%s)", num(round(v.Objective/100))), v.sloLabels()),
		recordRule(budgetRecord, fmt.Sprintf("1 - %s / %s", sel(errorRatioRecord+promDur(time.Duration(v.Window)), slo), budget), v.sloLabels()),
	)
	alerts := rulefmt.RuleGroup{Name: "fluxgate-slo-" + v.PolicyName + "-alerts"}
	for _, b := range burnWindows {
		alerts.Rules = append(alerts.Rules, alertRule(burnAlert, fmt.Sprintf("%s > (%s * %s) and %s > (%s * %s)",
			sel(errorRatioRecord+promDur(b.long), slo), num(b.factor), budget,
			sel(errorRatioRecord+promDur(b.short), slo), num(b.factor), budget), 0,
			v.alertLabels(b), v.alertAnnotations(b, bad)))
	}
	return []rulefmt.RuleGroup{rec, alerts}
}

func (b burnWindow) window() string { return promDur(b.long) + "/" + promDur(b.short) }

func (v *sloCommon) alertLabels(b burnWindow) map[string]string {
	l := v.sloLabels()
	l["severity"] = b.severity
	l["window"] = b.window()
	return l
}

// alertAnnotations are static (no $value), so the generated promtool test
// can expect them exactly.
func (v *sloCommon) alertAnnotations(b burnWindow, bad string) map[string]string {
	spent := b.factor * float64(b.long) / float64(time.Duration(v.Window)) * 100
	return map[string]string{
		"summary": fmt.Sprintf("SLO %s (%s, %s%% over %s) is burning its error budget %s× too fast", v.PolicyName, v.kind, num(v.Objective), v.Window, num(b.factor)),
		"description": fmt.Sprintf("Over both the last %s and the last %s, more than %s× the allowed %s%% of the accepted flows of flux meter %s %s. At this rate %.3g%% of the %s error budget is spent every %s.",
			promDur(b.long), promDur(b.short), num(b.factor), num(v.budget()*100), v.FluxMeter.Name, bad, spent, v.Window, promDur(b.long)),
		"runbook_url": v.RunbookURL,
	}
}

func (v *sloCommon) panels(p *policies.Policy) []panel {
	slo := eq("slo", v.PolicyName)
	var ratios []target
	for _, w := range []time.Duration{5 * time.Minute, time.Hour, 6 * time.Hour, time.Duration(v.Window)} {
		ratios = append(ratios, target{Expr: sel(errorRatioRecord+promDur(w), slo), Legend: promDur(w)})
	}
	return []panel{
		{Title: "SLO " + v.PolicyName + ": error ratio by window", Unit: "percentunit", Targets: append(ratios,
			target{Expr: fmt.Sprintf("1 - %s", sel(objectiveRecord, slo)), Legend: "budget"})},
		{Title: "SLO " + v.PolicyName + ": error budget remaining over " + v.Window.String(), Unit: "percentunit", Targets: []target{
			{Expr: sel(budgetRecord, slo), Legend: "remaining"}}},
		{Title: "SLO " + v.PolicyName + ": firing burn-rate alerts", Unit: "short", Targets: []target{
			{Expr: fmt.Sprintf("sum by (window, severity) (%s)", sel("ALERTS", eq("alertname", burnAlert), slo, eq("alertstate", "firing"))), Legend: "{{window}} {{severity}}"}}},
	}
}

// seriesLabels writes a flux_meter series selector for the test inputs.
func (v *sloCommon) seriesLabels(metric, decision, status string, extra ...string) string {
	m := []string{eq(metricnames.LabelFluxMeterName, v.FluxMeter.Name), eq(metricnames.LabelPolicyName, v.PolicyName),
		eq(metricnames.LabelDecisionType, decision), eq(metricnames.LabelFlowStatus, status), eq(metricnames.LabelHTTPStatusCode, map[string]string{metricnames.FlowOK: "200", metricnames.FlowError: "500"}[status])}
	return sel(metric, append(m, extra...)...)
}

// counter writes promtool's expanding notation for a counter growing by
// perMin a minute over 73 hours; with spike, by healthy for 72 hours and
// then by perMin for the last hour.
func counter(healthy, spike float64, withSpike bool) string {
	const healthyMins, spikeMins = 72 * 60, 60
	if !withSpike {
		return fmt.Sprintf("0+%sx%d", num(healthy), healthyMins+spikeMins)
	}
	at := healthy * healthyMins
	return fmt.Sprintf("0+%sx%d %s+%sx%d", num(healthy), healthyMins, num(at+spike), num(spike), spikeMins-1)
}

func (v *latencySLO) rulesTest(rulesFile string) ([]byte, error) {
	return v.sloCommon.rulesTestWith(rulesFile, fmt.Sprintf("were slower than %s ms", num(v.ThresholdMs)), func(bad float64, spike bool) []promtoolSeries {
		le := "le=" + strconv.Quote(num(v.ThresholdMs))
		return []promtoolSeries{
			{Series: v.seriesLabels(metricnames.FluxMeterCount, metricnames.DecisionAccepted, metricnames.FlowOK), Values: counter(100, 100, spike)},
			{Series: v.seriesLabels(metricnames.FluxMeterBucket, metricnames.DecisionAccepted, metricnames.FlowOK, le), Values: goodCounter(bad, spike)},
			{Series: v.seriesLabels(metricnames.FluxMeterCount, metricnames.DecisionRejected, metricnames.FlowOK), Values: counter(50, 50, false)},
			{Series: v.seriesLabels(metricnames.FluxMeterBucket, metricnames.DecisionRejected, metricnames.FlowOK, le), Values: counter(0, 0, false)},
		}
	})
}

// goodCounter is the good flows of 100 a minute: all of them for the
// healthy days and 100×(1−bad) in the spike hour, or 100×(1−bad) all along.
func goodCounter(bad float64, spike bool) string {
	good := round(100 * (1 - bad))
	if spike {
		return counter(100, good, true)
	}
	return counter(good, 0, false)
}

func (v *availabilitySLO) rulesTest(rulesFile string) ([]byte, error) {
	return v.sloCommon.rulesTestWith(rulesFile, "ended in an error (5xx or an error span)", func(bad float64, spike bool) []promtoolSeries {
		errs := round(100 * bad)
		var ok, errors string
		if spike {
			ok, errors = counter(100, 100-errs, true), counter(0, errs, true)
		} else {
			ok, errors = counter(100-errs, 0, false), counter(errs, 0, false)
		}
		return []promtoolSeries{
			{Series: v.seriesLabels(metricnames.FluxMeterCount, metricnames.DecisionAccepted, metricnames.FlowOK), Values: ok},
			{Series: v.seriesLabels(metricnames.FluxMeterCount, metricnames.DecisionAccepted, metricnames.FlowError), Values: errors},
			{Series: v.seriesLabels(metricnames.FluxMeterCount, metricnames.DecisionRejected, metricnames.FlowError), Values: counter(50, 50, false)},
		}
	})
}

// rulesTestWith writes a `promtool test rules` file for the rules file:
// three days of healthy traffic and then an hour with 20× the error budget
// of bad flows must raise the fast-burn page and nothing else; a tenth of
// the error budget all along must raise nothing. Rejected flows, all of
// them bad, are in both and must never count. bad is the SLI's wording of
// a bad flow; series gives the inputs for a bad share, with or without the
// spike hour.
func (v *sloCommon) rulesTestWith(rulesFile, bad string, series func(share float64, spike bool) []promtoolSeries) ([]byte, error) {
	fast := burnWindows[0]
	spike, healthy := min(round(20*v.budget()), 1), round(v.budget()/10)
	f := promtoolFile{
		RuleFiles:          []string{rulesFile},
		EvaluationInterval: model.Duration(5 * time.Minute),
		Tests: []promtoolTest{
			{
				Name:        fmt.Sprintf("an hour at %s%% bad flows after 3 healthy days pages on the %s window only", num(spike*100), fast.window()),
				Interval:    model.Duration(time.Minute),
				InputSeries: series(spike, true),
				AlertRuleTests: []promtoolAlertTest{{
					EvalTime:  model.Duration(73 * time.Hour),
					Alertname: burnAlert,
					ExpAlerts: []promtoolAlert{{ExpLabels: v.alertLabels(fast), ExpAnnotations: v.alertAnnotations(fast, bad)}},
				}},
			},
			{
				Name:        fmt.Sprintf("%s%% bad flows, within the objective, raise nothing; rejected flows never count", num(healthy*100)),
				Interval:    model.Duration(time.Minute),
				InputSeries: series(healthy, false),
				AlertRuleTests: []promtoolAlertTest{{
					EvalTime:  model.Duration(73 * time.Hour),
					Alertname: burnAlert,
					ExpAlerts: []promtoolAlert{},
				}},
			},
		},
	}
	return marshalPromtool(f)
}
