package blueprints

import (
	"fmt"
	"time"

	"github.com/prometheus/prometheus/model/rulefmt"

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
	Rollback           canaryRollback `yaml:"rollback"`
	Alerts             canaryAlerts   `yaml:"alerts"`
}

// canaryRollback halts the rollout and rolls the canary back on its error
// ratio.
type canaryRollback struct {
	Enabled            bool            `yaml:"enabled"`
	FluxMeter          canaryFluxMeter `yaml:"flux_meter"`
	QueryString        string          `yaml:"query_string"`
	Window             time.Duration   `yaml:"window"`
	EvaluationInterval time.Duration   `yaml:"evaluation_interval"`
	MaxErrorRate       float64         `yaml:"max_error_rate"`
	For                time.Duration   `yaml:"for"`
}

// canaryFluxMeter is the optional flux meter over the canary's flows.
type canaryFluxMeter struct {
	Name      string              `yaml:"name"`
	Selectors []policies.Selector `yaml:"selectors"`
}

// canaryAlerts configure the generated alert rules.
type canaryAlerts struct {
	For      time.Duration `yaml:"for"`
	Severity string        `yaml:"severity"`
}

func defaultCanaryRollout() *canaryRollout {
	return &canaryRollout{
		Namespace:          policies.DefaultNamespace,
		EvaluationInterval: policies.DefaultEvaluationInterval,
		Steps:              []float64{5, 10, 25, 50, 100},
		StepInterval:       5 * time.Minute,
		Rollback: canaryRollback{
			Enabled:            true,
			Window:             time.Minute,
			EvaluationInterval: 10 * time.Second,
			MaxErrorRate:       0.05,
			For:                30 * time.Second,
		},
		Alerts: canaryAlerts{For: time.Minute, Severity: "ticket"},
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
	if r := v.Rollback; r.Enabled {
		if r.QueryString == "" && r.FluxMeter.Name == "" {
			c.errorf("rollback", "rollback needs query_string or flux_meter.name when rollback.enabled is true")
		}
		if r.FluxMeter.Name != "" {
			c.checkName("rollback.flux_meter.name", "rollback.flux_meter.name", r.FluxMeter.Name)
			c.checkSelectors("rollback.flux_meter.selectors", r.FluxMeter.Selectors)
		}
		if r.Window <= 0 {
			c.errorf("rollback.window", "rollback.window must be positive, got %s", r.Window)
		}
		if r.EvaluationInterval < v.EvaluationInterval {
			c.errorf("rollback.evaluation_interval", "rollback.evaluation_interval must be at least evaluation_interval (%s), got %s", v.EvaluationInterval, r.EvaluationInterval)
		}
		if !(r.MaxErrorRate > 0 && r.MaxErrorRate < 1) {
			c.errorf("rollback.max_error_rate", "rollback.max_error_rate must be within (0, 1), got %v", r.MaxErrorRate)
		}
		if r.For < 0 {
			c.errorf("rollback.for", "rollback.for must not be negative, got %s", r.For)
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

// ErrorQuery is the PromQL the rollback reads: the query string given, or
// the error ratio of the flux meter over the window.
func (v *canaryRollout) ErrorQuery() string {
	r := v.Rollback
	if r.QueryString != "" {
		return r.QueryString
	}
	m := []string{eq("flux_meter_name", r.FluxMeter.Name), eq("policy_name", v.PolicyName), eq("decision_type", "DECISION_TYPE_ACCEPTED")}
	w := promDur(r.Window)
	return fmt.Sprintf("sum(rate(%s[%s])) / sum(rate(%s[%s]))",
		sel("flux_meter_count", append(m, eq("flow_status", "Error"))...), w, sel("flux_meter_count", m...), w)
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
	labels := map[string]string{"severity": v.Alerts.Severity, "policy_name": name, "blueprint": "canary-rollout", "route_id": v.RouteID}
	g := rulefmt.RuleGroup{Name: "fluxgate-" + name}
	g.Rules = append(g.Rules, alertRule("FluxGateCanaryFailing",
		fmt.Sprintf("max(%s) == 1", sel("fluxgate_canary_verdict", eq("route_id", v.RouteID), eq("verdict", "fail"))), v.Alerts.For, labels,
		map[string]string{
			"summary":     fmt.Sprintf("The canary of gateway route %s fails its metrics", v.RouteID),
			"description": fmt.Sprintf("The gateway judges the canary of route %s as failing its metrics for %s and has rolled its weight back to 0; the rollout of policy %s waits.", v.RouteID, promDur(v.Alerts.For), name),
		}))
	if v.Rollback.Enabled {
		g.Rules = append(g.Rules, alertRule("FluxGateCanaryRolledBack",
			fmt.Sprintf("max(%s) == 1", sel("signal_reading", eq("policy_name", name), eq("signal_name", "ROLLED_BACK"))), 0, labels,
			map[string]string{
				"summary":     fmt.Sprintf("Policy %s rolled the canary of route %s back", name, v.RouteID),
				"description": fmt.Sprintf("The canary of route %s had an error ratio above %g for %s; policy %s set its weight to 0 and keeps it there until the policy is applied again.", v.RouteID, v.Rollback.MaxErrorRate, dur(v.Rollback.For), name),
			}))
		g.Rules = append(g.Rules, invalidSignalAlert("FluxGateCanaryErrorRatioInvalid", name, "ERROR_RATIO", labels,
			"the canary's error ratio query has no valid value; the rollout does not advance"))
	}
	return []rulefmt.RuleGroup{g}
}

func (v *canaryRollout) panels(p *policies.Policy) []panel { return nil }
