package blueprints

import (
	"fmt"
	"maps"
	"net"
	"time"

	"github.com/prometheus/prometheus/model/rulefmt"

	"github.com/fluxgate/fluxgate/policies"
)

func init() {
	register(&Blueprint{
		Name:    "adaptive-load-balancing",
		Summary: "gateway upstream target weights from each target's PromQL latency and error ratio, bounded",
		decode:  decoder(defaultAdaptiveLB),
	})
}

// adaptiveLB are the values of the adaptive-load-balancing blueprint.
type adaptiveLB struct {
	PolicyName         string        `yaml:"policy_name"`
	Namespace          string        `yaml:"namespace"`
	EvaluationInterval time.Duration `yaml:"evaluation_interval"`
	Upstream           string        `yaml:"upstream"`
	Targets            []lbTarget    `yaml:"targets"`
	Window             time.Duration `yaml:"window"`
	QueryInterval      time.Duration `yaml:"query_interval"`
	BaselineLatencyMs  float64       `yaml:"baseline_latency_ms"`
	BaseWeight         float64       `yaml:"base_weight"`
	ErrorPenalty       float64       `yaml:"error_penalty"`
	MinWeight          float64       `yaml:"min_weight"`
	MaxWeight          float64       `yaml:"max_weight"`
	Alerts             lbAlerts      `yaml:"alerts"`
}

// lbTarget is one target of the upstream group.
type lbTarget struct {
	Address      string `yaml:"address"`
	LatencyQuery string `yaml:"latency_query"`
	ErrorQuery   string `yaml:"error_query"`
}

// lbAlerts configure the generated alert rules.
type lbAlerts struct {
	For      time.Duration `yaml:"for"`
	Severity string        `yaml:"severity"`
}

func defaultAdaptiveLB() *adaptiveLB {
	return &adaptiveLB{
		Namespace:          policies.DefaultNamespace,
		EvaluationInterval: policies.DefaultEvaluationInterval,
		Window:             time.Minute,
		QueryInterval:      10 * time.Second,
		BaseWeight:         100,
		ErrorPenalty:       5,
		MinWeight:          1,
		MaxWeight:          200,
		Alerts:             lbAlerts{For: 10 * time.Minute, Severity: "ticket"},
	}
}

func (v *adaptiveLB) check(c *checker) {
	c.checkName("policy_name", "policy_name", v.PolicyName)
	c.checkName("namespace", "namespace", v.Namespace)
	if v.Upstream == "" {
		c.errorf("upstream", "upstream is required")
	}
	if v.EvaluationInterval < policies.MinEvaluationInterval {
		c.errorf("evaluation_interval", "evaluation_interval must be at least %s, got %s", policies.MinEvaluationInterval, v.EvaluationInterval)
	}
	if len(v.Targets) == 0 {
		c.errorf("targets", "targets: at least one target is required")
	}
	seen := map[string]bool{}
	for i, t := range v.Targets {
		path := fmt.Sprintf("targets.[%d]", i)
		if _, port, err := net.SplitHostPort(t.Address); err != nil || port == "" {
			c.errorf(path+".address", "address must be host:port, got %q", t.Address)
		} else if seen[t.Address] {
			c.errorf(path+".address", "target %q is listed twice", t.Address)
		}
		seen[t.Address] = true
	}
	if v.Window <= 0 {
		c.errorf("window", "window must be positive, got %s", v.Window)
	}
	if v.QueryInterval < v.EvaluationInterval {
		c.errorf("query_interval", "query_interval must be at least evaluation_interval (%s), got %s", v.EvaluationInterval, v.QueryInterval)
	}
	if !(v.BaselineLatencyMs > 0) {
		c.errorf("baseline_latency_ms", "baseline_latency_ms must be positive, got %v", v.BaselineLatencyMs)
	}
	if !(v.BaseWeight > 0) {
		c.errorf("base_weight", "base_weight must be positive, got %v", v.BaseWeight)
	}
	if !(v.ErrorPenalty >= 0) {
		c.errorf("error_penalty", "error_penalty must not be negative, got %v", v.ErrorPenalty)
	}
	if !(v.MinWeight >= 0) || !(v.MaxWeight > v.MinWeight) {
		c.errorf("max_weight", "weights need 0 <= min_weight < max_weight, got min_weight %v, max_weight %v", v.MinWeight, v.MaxWeight)
	}
	if v.Alerts.For < 0 {
		c.errorf("alerts.for", "alerts.for must not be negative, got %s", v.Alerts.For)
	}
	if v.Alerts.Severity != "page" && v.Alerts.Severity != "ticket" {
		c.errorf("alerts.severity", "alerts.severity %q is not one of page, ticket", v.Alerts.Severity)
	}
}

func (v *adaptiveLB) policyName() string { return v.PolicyName }
func (v *adaptiveLB) template() string   { return "adaptive-load-balancing.yaml.tmpl" }

// lbTargetView is what the template renders for one target.
type lbTargetView struct {
	Address, Suffix, LatencyQuery, ErrorQuery string
}

// TargetViews are the targets with their signal suffix (_T1, _T2, …) and
// their queries: the ones given, or the gateway's request metrics for the
// target over the window.
func (v *adaptiveLB) TargetViews() []lbTargetView {
	w := promDur(v.Window)
	out := make([]lbTargetView, len(v.Targets))
	for i, t := range v.Targets {
		host := eq("upstream_host", t.Address)
		lat := t.LatencyQuery
		if lat == "" {
			lat = fmt.Sprintf("1000 * sum(rate(%s[%s])) / sum(rate(%s[%s]))",
				sel("fluxgate_http_request_duration_seconds_sum", host), w, sel("fluxgate_http_request_duration_seconds_count", host), w)
		}
		errq := t.ErrorQuery
		if errq == "" {
			errq = fmt.Sprintf("sum(rate(%s[%s])) / sum(rate(%s[%s]))",
				sel("fluxgate_http_requests_total", host, `status=~"5.."`), w, sel("fluxgate_http_requests_total", host), w)
		}
		out[i] = lbTargetView{Address: t.Address, Suffix: fmt.Sprintf("_T%d", i+1), LatencyQuery: lat, ErrorQuery: errq}
	}
	return out
}

func (v *adaptiveLB) rules(p *policies.Policy) []rulefmt.RuleGroup {
	name := p.Metadata.Name
	labels := map[string]string{"severity": v.Alerts.Severity, "policy_name": name, "blueprint": "adaptive-load-balancing", "upstream": v.Upstream}
	g := rulefmt.RuleGroup{Name: "fluxgate-" + name}
	g.Rules = append(g.Rules, alertRule("FluxGateUpstreamTargetAtMinWeight",
		fmt.Sprintf(`%s <= %s`, sel("signal_reading", eq("policy_name", name), `signal_name=~"WEIGHT_T[0-9]+"`), num(v.MinWeight)), v.Alerts.For, labels,
		map[string]string{
			"summary":     fmt.Sprintf("A target of upstream %s is held at the minimum weight", v.Upstream),
			"description": fmt.Sprintf("Signal {{ $labels.signal_name }} of policy %s has been at the minimum weight %g for %s: that target of upstream %s is slow or failing.", name, v.MinWeight, promDur(v.Alerts.For), v.Upstream),
		}))
	for _, t := range v.TargetViews() {
		tl := maps.Clone(labels)
		tl["target"] = t.Address
		g.Rules = append(g.Rules, invalidSignalAlert("FluxGateUpstreamTargetLatencyInvalid", name, "LATENCY"+t.Suffix, tl,
			fmt.Sprintf("the latency query of target %s has no valid value; the target keeps its configured weight", t.Address)))
	}
	return []rulefmt.RuleGroup{g}
}

func (v *adaptiveLB) panels(p *policies.Policy) []panel { return nil }

// WeightScale is base_weight × baseline_latency_ms: divided by a target's
// latency it gives base_weight at the baseline latency.
func (v *adaptiveLB) WeightScale() float64 { return v.BaseWeight * v.BaselineLatencyMs }
