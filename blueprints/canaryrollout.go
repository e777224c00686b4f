package blueprints

import (
	"fmt"
	"time"

	"github.com/prometheus/prometheus/model/rulefmt"

	"github.com/fluxgate/fluxgate/metricnames"
	"github.com/fluxgate/fluxgate/policies"
)

func init() {
	register(&Blueprint{
		Name:    "canary-rollout",
		Summary: "gateway canary weight in steps over time, halted and rolled back to 0 by a PromQL error ratio",
		decode:  decoder(defaultCanaryRollout),
	})
}

// canaryRollout are the values of the canary-rollout blueprint.
type canaryRollout struct {
	PolicyName         string         `yaml:"policy_name"`
	Namespace          string         `yaml:"namespace"`
	EvaluationInterval time.Duration  `yaml:"evaluation_interval"`
	RouteID            string         `yaml:"route_id"`
	Steps              []float64      `yaml:"steps"`
	StepInterval       time.Duration  `yaml:"step_interval"`
	Analysis           canaryAnalysis `yaml:"analysis"`
	Alerts             canaryAlerts   `yaml:"alerts"`
}

// canaryAnalysis judges the canary from the gateway's analysis series of
// the route (fluxgate_canary_requests_total and
// fluxgate_canary_request_duration_seconds): every interval, over the last
// window, pass (advance), no data (hold) or breach (roll back to 0).
type canaryAnalysis struct {
	Enabled         bool          `yaml:"enabled"`
	Interval        time.Duration `yaml:"interval"`
	Window          time.Duration `yaml:"window"`
	MinSamples      int           `yaml:"min_samples"`
	MaxErrorRate    float64       `yaml:"max_error_rate"`
	MaxLatencyRatio float64       `yaml:"max_latency_ratio"`
	For             time.Duration `yaml:"for"`
	QueryString     string        `yaml:"query_string"`
}

// canaryAlerts configure the generated alert rules.
type canaryAlerts struct {
	For      time.Duration `yaml:"for"`
	Severity string        `yaml:"severity"`
}

// Defaults of the canary analysis. With 50 samples in 30s the canary must
// get at least 1.7 requests/s to be judged; at 50 % errors the ratio over
// 30s passes 5 % about 3s after the breach, so the rollback lands within
// two 5s intervals (one scrape, one query).
const (
	defaultCanaryInterval   = 5 * time.Second
	defaultCanaryWindow     = 30 * time.Second
	defaultCanaryMinSamples = 50
)

func defaultCanaryRollout() *canaryRollout {
	return &canaryRollout{
		Namespace:          policies.DefaultNamespace,
		EvaluationInterval: policies.DefaultEvaluationInterval,
		Steps:              []float64{5, 10, 25, 50, 100},
		StepInterval:       5 * time.Minute,
		Analysis: canaryAnalysis{
			Enabled:      true,
			Interval:     defaultCanaryInterval,
			Window:       defaultCanaryWindow,
			MinSamples:   defaultCanaryMinSamples,
			MaxErrorRate: 0.05,
		},
		Alerts: canaryAlerts{For: 10 * time.Minute, Severity: "ticket"},
	}
}

func (v *canaryRollout) check(c *checker) {
	c.checkName("policy_name", "policy_name", v.PolicyName)
	c.checkName("namespace", "namespace", v.Namespace)
	if v.RouteID == "" {
		c.errorf("route_id", "route_id is required")
	}
	if v.EvaluationInterval < policies.MinEvaluationInterval {
		c.errorf("evaluation_interval", "evaluation_interval must be at least %s, got %s", policies.MinEvaluationInterval, v.EvaluationInterval)
	}
	if len(v.Steps) == 0 {
		c.errorf("steps", "steps: at least one step is required")
	}
	for i, s := range v.Steps {
		if !(s > 0 && s <= 100) || (i > 0 && !(s > v.Steps[i-1])) {
			c.errorf(fmt.Sprintf("steps.[%d]", i), "steps must be percentages within (0, 100], strictly increasing; step %d is %v", i, s)
		}
	}
	if v.StepInterval < 2*v.EvaluationInterval {
		c.errorf("step_interval", "step_interval must be at least twice evaluation_interval (%s), got %s", v.EvaluationInterval, v.StepInterval)
	}
	if a := v.Analysis; a.Enabled {
		if a.Interval < v.EvaluationInterval {
			c.errorf("analysis.interval", "analysis.interval must be at least evaluation_interval (%s), got %s", v.EvaluationInterval, a.Interval)
		}
		if v.StepInterval < a.Interval {
			c.errorf("step_interval", "step_interval must be at least analysis.interval (%s), so that every step is analysed, got %s", a.Interval, v.StepInterval)
		}
		if a.Window < a.Interval {
			c.errorf("analysis.window", "analysis.window must be at least analysis.interval (%s), or requests between two analyses go unjudged; got %s", a.Interval, a.Window)
		}
		if a.MinSamples < 1 {
			c.errorf("analysis.min_samples", "analysis.min_samples must be at least 1, got %d", a.MinSamples)
		}
		if !(a.MaxErrorRate >= 0 && a.MaxErrorRate < 1) {
			c.errorf("analysis.max_error_rate", "analysis.max_error_rate must be within [0, 1), got %v", a.MaxErrorRate)
		}
		if !(a.MaxLatencyRatio == 0 || a.MaxLatencyRatio >= 1) {
			c.errorf("analysis.max_latency_ratio", "analysis.max_latency_ratio is the canary's mean latency over the primary's: 0 (not judged) or at least 1, got %v", a.MaxLatencyRatio)
		}
		if a.For < 0 {
			c.errorf("analysis.for", "analysis.for must not be negative, got %s", a.For)
		}
	}
	if v.Alerts.For < 0 {
		c.errorf("alerts.for", "alerts.for must not be negative, got %s", v.Alerts.For)
	}
	if v.Alerts.Severity != "page" && v.Alerts.Severity != "ticket" {
		c.errorf("alerts.severity", "alerts.severity %q is not one of page, ticket", v.Alerts.Severity)
	}
}

func (v *canaryRollout) policyName() string { return v.PolicyName }
func (v *canaryRollout) template() string   { return "canary-rollout.yaml.tmpl" }

// analysisSeries is the selector of the route's analysis series metric
// for group (primary, canary), with more matchers.
func (v *canaryRollout) analysisSeries(metric, group string, more ...string) string {
	return sel(metric, append([]string{eq(metricnames.LabelRouteID, v.RouteID), eq("group", group)}, more...)...)
}

// increase is sum(increase(selector[window])).
func (v *canaryRollout) increase(selector string) string {
	return fmt.Sprintf("sum(increase(%s[%s]))", selector, promDur(v.Analysis.Window))
}

// ErrorQuery is the PromQL the analysis reads: the query string given, or
// the canary's error ratio over the window. No errors is 0 (a pass); fewer
// than min_samples canary requests is no data (the rollout holds).
func (v *canaryRollout) ErrorQuery() string {
	a := v.Analysis
	if a.QueryString != "" {
		return a.QueryString
	}
	const m = "fluxgate_canary_requests_total"
	return fmt.Sprintf("(%s or vector(0)) / (%s >= %d)",
		v.increase(v.analysisSeries(m, "canary", eq("outcome", "error"))), v.increase(v.analysisSeries(m, "canary")), a.MinSamples)
}

// LatencyQuery is the canary's mean latency over the primary's, over the
// window: no data below min_samples canary requests, 0 (nothing to compare
// with) while the primary serves nothing.
func (v *canaryRollout) LatencyQuery() string {
	const m = "fluxgate_canary_request_duration_seconds"
	canary := fmt.Sprintf("(%s / (%s >= %d))",
		v.increase(v.analysisSeries(m+"_sum", "canary")), v.increase(v.analysisSeries(m+"_count", "canary")), v.Analysis.MinSamples)
	primary := fmt.Sprintf("(%s / %s > 0)",
		v.increase(v.analysisSeries(m+"_sum", "primary")), v.increase(v.analysisSeries(m+"_count", "primary")))
	return fmt.Sprintf("%s / %s or %s * 0", canary, primary, canary)
}

// GatewayFailQuery is 1 while the gateway's own judge (the route's
// canary.metrics, when set) fails the canary, else 0.
func (v *canaryRollout) GatewayFailQuery() string {
	return fmt.Sprintf("max(%s) or vector(0)", sel("fluxgate_canary_verdict", eq("route_id", v.RouteID), eq("verdict", "fail")))
}

// genStepValue is one step of the generated signal_generator.
type genStepValue struct {
	Target   float64
	Duration time.Duration
}

// GeneratorSteps are the signal_generator steps: each weight is held for
// step_interval; between two weights the generator moves in one tick.
func (v *canaryRollout) GeneratorSteps() []genStepValue {
	var out []genStepValue
	for i, s := range v.Steps {
		hold := v.StepInterval
		if i > 0 {
			out = append(out, genStepValue{Target: s, Duration: v.EvaluationInterval})
			hold -= v.EvaluationInterval
		}
		out = append(out, genStepValue{Target: s, Duration: hold})
	}
	return out
}

func (v *canaryRollout) rules(p *policies.Policy) []rulefmt.RuleGroup {
	name := p.Metadata.Name
	labels := map[string]string{"severity": v.Alerts.Severity, metricnames.LabelPolicyName: name, "blueprint": "canary-rollout", metricnames.LabelRouteID: v.RouteID}
	if !v.Analysis.Enabled {
		return nil
	}
	g := rulefmt.RuleGroup{Name: "fluxgate-" + name}
	a := v.Analysis
	shorterBreach := ""
	if a.For > 0 {
		shorterBreach = " or a breach shorter than " + dur(a.For)
	}
	verdict := sel(metricnames.SignalReading, eq(metricnames.LabelPolicyName, name), eq(metricnames.LabelSignalName, "VERDICT"))
	g.Rules = append(g.Rules, alertRule("FluxGateCanaryRolledBack", fmt.Sprintf("max(%s) == -1", verdict), 0, labels,
		map[string]string{
			"summary": fmt.Sprintf("Policy %s rolled the canary of route %s back", name, v.RouteID),
			"description": fmt.Sprintf("The canary of route %s breached its analysis (error ratio above %g over %s with at least %d requests, or the gateway's own verdict failed); policy %s set its weight to 0 and keeps it there until the policy is applied again.",
				v.RouteID, a.MaxErrorRate, promDur(a.Window), a.MinSamples, name),
		}))
	g.Rules = append(g.Rules, alertRule("FluxGateCanaryHeld", fmt.Sprintf("max(%s) == 0", verdict), v.Alerts.For, labels,
		map[string]string{
			"summary": fmt.Sprintf("The rollout of policy %s has not advanced for %s", name, promDur(v.Alerts.For)),
			"description": fmt.Sprintf("The canary of route %s has had fewer than %d requests in %s (no data)%s for %s, so the rollout of policy %s holds its step. `fluxctl signals %s` shows ERROR_RATIO.",
				v.RouteID, a.MinSamples, promDur(a.Window), shorterBreach, promDur(v.Alerts.For), name, name),
		}))
	return []rulefmt.RuleGroup{g}
}

func (v *canaryRollout) panels(p *policies.Policy) []panel { return nil }
