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
		Name:    "rate-limiting",
		Summary: "token-bucket rate limit per label value, static or following a PromQL signal; local or Redis buckets",
		decode:  decoder(defaultRateLimiting),
	})
}

// rateLimiting are the values of the rate-limiting blueprint.
type rateLimiting struct {
	PolicyName         string              `yaml:"policy_name"`
	Namespace          string              `yaml:"namespace"`
	EvaluationInterval time.Duration       `yaml:"evaluation_interval"`
	Selectors          []policies.Selector `yaml:"selectors"`
	LimitByLabelKey    string              `yaml:"limit_by_label_key"`
	Interval           time.Duration       `yaml:"interval"`
	FillAmount         float64             `yaml:"fill_amount"`
	BucketCapacity     float64             `yaml:"bucket_capacity"`
	ContinuousFill     bool                `yaml:"continuous_fill"`
	MaxIdleTime        time.Duration       `yaml:"max_idle_time"`
	DelayInitialFill   bool                `yaml:"delay_initial_fill"`
	Backend            string              `yaml:"backend"`
	TokensLabelKey     string              `yaml:"tokens_label_key"`
	// DeniedResponseStatusCode 0 leaves the limiter's default (429).
	DeniedResponseStatusCode int             `yaml:"denied_response_status_code"`
	DryRun                   bool            `yaml:"dry_run"`
	DynamicFill              dynamicFill     `yaml:"dynamic_fill"`
	Alerts                   rateLimitAlerts `yaml:"alerts"`
}

// dynamicFill drives the fill amount from a PromQL query.
type dynamicFill struct {
	Enabled            bool          `yaml:"enabled"`
	QueryString        string        `yaml:"query_string"`
	EvaluationInterval time.Duration `yaml:"evaluation_interval"`
	Min                float64       `yaml:"min"`
	Max                float64       `yaml:"max"`
	BurstFactor        float64       `yaml:"burst_factor"`
}

// rateLimitAlerts configure the generated alert rules.
type rateLimitAlerts struct {
	RejectedRatio float64       `yaml:"rejected_ratio"`
	For           time.Duration `yaml:"for"`
	Severity      string        `yaml:"severity"`
}

func defaultRateLimiting() *rateLimiting {
	return &rateLimiting{
		Namespace:          policies.DefaultNamespace,
		EvaluationInterval: policies.DefaultEvaluationInterval,
		Interval:           time.Second,
		ContinuousFill:     true,
		Backend:            policies.BackendLocal,
		DynamicFill: dynamicFill{
			EvaluationInterval: 10 * time.Second,
			Min:                1,
			BurstFactor:        2,
		},
		Alerts: rateLimitAlerts{RejectedRatio: 0.5, For: 10 * time.Minute, Severity: "ticket"},
	}
}

func (v *rateLimiting) check(c *checker) {
	c.checkName("policy_name", "policy_name", v.PolicyName)
	c.checkName("namespace", "namespace", v.Namespace)
	c.checkSelectors("selectors", v.Selectors)
	if v.Interval <= 0 {
		c.errorf("interval", "interval must be positive, got %s", v.Interval)
	}
	if v.EvaluationInterval < policies.MinEvaluationInterval {
		c.errorf("evaluation_interval", "evaluation_interval must be at least %s, got %s", policies.MinEvaluationInterval, v.EvaluationInterval)
	}
	if !(v.FillAmount > 0) {
		c.errorf("fill_amount", "fill_amount must be positive, got %v", v.FillAmount)
	}
	if !v.DynamicFill.Enabled && !(v.BucketCapacity > 0) {
		c.errorf("bucket_capacity", "bucket_capacity must be positive, got %v", v.BucketCapacity)
	}
	switch v.Backend {
	case policies.BackendLocal, policies.BackendRedis:
	default:
		c.errorf("backend", "backend %q is not one of local, redis", v.Backend)
	}
	if v.DeniedResponseStatusCode != 0 && (v.DeniedResponseStatusCode < 100 || v.DeniedResponseStatusCode > 599) {
		c.errorf("denied_response_status_code", "denied_response_status_code %d is not an HTTP status code", v.DeniedResponseStatusCode)
	}
	if d := v.DynamicFill; d.Enabled {
		if d.QueryString == "" {
			c.errorf("dynamic_fill.query_string", "dynamic_fill.query_string is required when dynamic_fill.enabled is true")
		}
		if d.EvaluationInterval < v.EvaluationInterval {
			c.errorf("dynamic_fill.evaluation_interval", "dynamic_fill.evaluation_interval must be at least evaluation_interval (%s), got %s", v.EvaluationInterval, d.EvaluationInterval)
		}
		if !(d.Min >= 0) || !(d.Max > d.Min) {
			c.errorf("dynamic_fill.max", "dynamic_fill needs 0 <= min < max, got min %v, max %v", d.Min, d.Max)
		}
		if !(d.BurstFactor >= 1) {
			c.errorf("dynamic_fill.burst_factor", "dynamic_fill.burst_factor must be at least 1, got %v", d.BurstFactor)
		}
	}
	checkAlertCommon(c, "alerts", v.Alerts.RejectedRatio, v.Alerts.Severity)
}

// checkAlertCommon checks a rejected-ratio threshold and a severity.
func checkAlertCommon(c *checker, path string, ratio float64, severity string) {
	if !(ratio > 0 && ratio <= 1) {
		c.errorf(path+".rejected_ratio", "%s.rejected_ratio must be within (0, 1], got %v", path, ratio)
	}
	if severity != "page" && severity != "ticket" {
		c.errorf(path+".severity", "%s.severity %q is not one of page, ticket", path, severity)
	}
}

func (v *rateLimiting) policyName() string { return v.PolicyName }
func (v *rateLimiting) template() string   { return "rate-limiting.yaml.tmpl" }

func (v *rateLimiting) rules(p *policies.Policy) []rulefmt.RuleGroup {
	name := p.Metadata.Name
	labels := map[string]string{"severity": v.Alerts.Severity, metricnames.LabelPolicyName: name, "blueprint": "rate-limiting"}
	g := rulefmt.RuleGroup{Name: "fluxgate-" + name}
	g.Rules = append(g.Rules, rejectedRatioAlert("FluxGateRateLimitRejecting", name, v.Alerts.RejectedRatio, v.Alerts.For, labels,
		"Rate limiter of policy %s rejects more than %s of its flows", "rate limit"))
	if v.DynamicFill.Enabled {
		g.Rules = append(g.Rules, invalidSignalAlert("FluxGateRateLimitSignalInvalid", name, "FILL_QUERY", labels,
			"the fill amount query has no valid value; the limiter runs on the fallback fill amount"))
	}
	return []rulefmt.RuleGroup{g}
}

// rejectedRatioAlert fires while more than ratio of a policy's decisions
// are rejections.
func rejectedRatioAlert(alert, policy string, ratio float64, forDur time.Duration, labels map[string]string, summary, what string) rulefmt.Rule {
	decisions := func(extra ...string) string {
		return fmt.Sprintf("sum(rate(%s[5m]))", sel(metricnames.FlowDecisionsTotal, append([]string{eq(metricnames.LabelPolicyName, policy)}, extra...)...))
	}
	expr := fmt.Sprintf("%s / %s > %s", decisions(eq(metricnames.LabelDecisionType, metricnames.DecisionRejected)), decisions(), num(ratio))
	return alertRule(alert, expr, forDur, labels, map[string]string{
		"summary":     fmt.Sprintf(summary, policy, fmt.Sprintf("%g%%", ratio*100)),
		"description": fmt.Sprintf("{{ $value | humanizePercentage }} of the flows policy %s decides are rejected by its %s (threshold %g%%, for %s).", policy, what, ratio*100, promDur(forDur)),
	})
}

// invalidSignalAlert fires while a signal keeps being invalid.
func invalidSignalAlert(alert, policy, signal string, labels map[string]string, why string) rulefmt.Rule {
	expr := fmt.Sprintf("increase(%s[5m]) > 0", sel(metricnames.InvalidSignalReadingsTotal, eq(metricnames.LabelPolicyName, policy), eq(metricnames.LabelSignalName, signal)))
	return alertRule(alert, expr, 10*time.Minute, labels, map[string]string{
		"summary":     fmt.Sprintf("Signal %s of policy %s is invalid", signal, policy),
		"description": fmt.Sprintf("Signal %s of policy %s has had invalid readings for 10 minutes: %s. `fluxctl signals %s` shows why.", signal, policy, why, policy),
	})
}

func (v *rateLimiting) panels(p *policies.Policy) []panel { return nil }
