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
		Name:    "service-protection",
		Summary: "adaptive concurrency in the data path, learned from each request's latency (zero-config); or, where request ends are not seen, a flux-meter latency loop on a load scheduler",
		decode:  decoder(defaultServiceProtection),
	})
}

// serviceProtection are the values of the service-protection blueprint.
type serviceProtection struct {
	PolicyName               string              `yaml:"policy_name"`
	Namespace                string              `yaml:"namespace"`
	EvaluationInterval       time.Duration       `yaml:"evaluation_interval"`
	Selectors                []policies.Selector `yaml:"selectors"`
	Loop                     string              `yaml:"loop"`
	LatencyObjectiveMs       float64             `yaml:"latency_objective_ms"`
	InPath                   inPath              `yaml:"in_path"`
	FluxMeterName            string              `yaml:"flux_meter_name"`
	LatencyWindow            time.Duration       `yaml:"latency_window"`
	MaxExtrapolation         time.Duration       `yaml:"max_extrapolation"`
	Baseline                 baseline            `yaml:"baseline"`
	SetpointFactor           float64             `yaml:"setpoint_factor"`
	MaxDecreasePerTick       float64             `yaml:"max_decrease_per_tick"`
	IncreasePerTick          float64             `yaml:"increase_per_tick"`
	IncreaseRatioPerTick     float64             `yaml:"increase_ratio_per_tick"`
	DrainFactor              float64             `yaml:"drain_factor"`
	RecoveryShare            float64             `yaml:"recovery_share"`
	MinLoadMultiplier        float64             `yaml:"min_load_multiplier"`
	MaxLoadMultiplier        float64             `yaml:"max_load_multiplier"`
	Workloads                []workload          `yaml:"workloads"`
	DefaultWorkload          workloadParameters  `yaml:"default_workload"`
	DeniedResponseStatusCode int                 `yaml:"denied_response_status_code"`
	DryRun                   bool                `yaml:"dry_run"`
	OverloadAlert            overloadAlert       `yaml:"overload_alert"`
	Alerts                   sheddingAlerts      `yaml:"alerts"`
}

// Loops of the service-protection blueprint.
const (
	loopInPath    = "in_path"
	loopFluxMeter = "flux_meter"
)

// inPath tunes the adaptive_concurrency component of loop in_path; zero
// values take the component's defaults.
type inPath struct {
	LatencyTolerance float64       `yaml:"latency_tolerance"`
	MaxConcurrency   float64       `yaml:"max_concurrency"`
	MaxQueueDelay    time.Duration `yaml:"max_queue_delay"`
	MaxFlowDuration  time.Duration `yaml:"max_flow_duration"`
}

// baseline configures the EMA of latency the setpoint derives from.
type baseline struct {
	EMAWindow        time.Duration `yaml:"ema_window"`
	WarmupWindow     time.Duration `yaml:"warmup_window"`
	MaxLatencyMs     float64       `yaml:"max_latency_ms"`
	CorrectionFactor float64       `yaml:"correction_factor"`
}

// workload is a load scheduler workload.
type workload struct {
	Name         string                 `yaml:"name"`
	LabelMatcher *policies.LabelMatcher `yaml:"label_matcher"`
	Priority     float64                `yaml:"priority"`
	QueueTimeout time.Duration          `yaml:"queue_timeout"`
}

// workloadParameters are the default workload's share and patience.
type workloadParameters struct {
	Priority     float64       `yaml:"priority"`
	QueueTimeout time.Duration `yaml:"queue_timeout"`
}

// overloadAlert is the circuit's alerter on the overload signal.
type overloadAlert struct {
	Enabled        bool              `yaml:"enabled"`
	AlertName      string            `yaml:"alert_name"`
	Severity       string            `yaml:"severity"`
	ResolveTimeout time.Duration     `yaml:"resolve_timeout"`
	Labels         map[string]string `yaml:"labels"`
}

// sheddingAlerts configure the generated Prometheus alert rules.
type sheddingAlerts struct {
	RejectedRatio float64       `yaml:"rejected_ratio"`
	For           time.Duration `yaml:"for"`
	Severity      string        `yaml:"severity"`
}

func defaultServiceProtection() *serviceProtection {
	return &serviceProtection{
		Namespace:          policies.DefaultNamespace,
		Loop:               loopInPath,
		EvaluationInterval: policies.DefaultEvaluationInterval,
		LatencyWindow:      2 * time.Second,
		MaxExtrapolation:   5 * time.Second,
		Baseline: baseline{
			EMAWindow:        300 * time.Second,
			WarmupWindow:     10 * time.Second,
			MaxLatencyMs:     50,
			CorrectionFactor: 0.95,
		},
		SetpointFactor:       1.1,
		MaxDecreasePerTick:   0.2,
		IncreasePerTick:      0.02,
		IncreaseRatioPerTick: 0.05,
		DrainFactor:          0.5,
		RecoveryShare:        0.9,
		MinLoadMultiplier:    0.05,
		MaxLoadMultiplier:    1.2,
		DefaultWorkload:      workloadParameters{Priority: 10},
		OverloadAlert:        overloadAlert{Severity: "warn", ResolveTimeout: 30 * time.Second},
		Alerts:               sheddingAlerts{RejectedRatio: 0.2, For: 5 * time.Minute, Severity: "page"},
	}
}

func (v *serviceProtection) check(c *checker) {
	c.checkName("policy_name", "policy_name", v.PolicyName)
	c.checkName("namespace", "namespace", v.Namespace)
	c.checkSelectors("selectors", v.Selectors)
	v.checkLoop(c)
	v.checkBaseline(c)
	v.checkController(c)
	v.checkWorkloads(c)
	if v.DeniedResponseStatusCode != 0 && (v.DeniedResponseStatusCode < 100 || v.DeniedResponseStatusCode > 599) {
		c.errorf("denied_response_status_code", "denied_response_status_code %d is not an HTTP status code", v.DeniedResponseStatusCode)
	}
	v.checkOverloadAlert(c)
	checkAlertCommon(c, "alerts", v.Alerts.RejectedRatio, v.Alerts.Severity)
}

// checkLoop checks where the loop runs, what it measures and how often.
func (v *serviceProtection) checkLoop(c *checker) {
	if v.Loop != loopInPath && v.Loop != loopFluxMeter {
		c.errorf("loop", "loop %q is not one of in_path, flux_meter", v.Loop)
	}
	if v.LatencyObjectiveMs < 0 {
		c.errorf("latency_objective_ms", "latency_objective_ms must not be negative (0 learns the service's own latency), got %v", v.LatencyObjectiveMs)
	}
	if ip := v.InPath; ip.LatencyTolerance != 0 && ip.LatencyTolerance < 1 {
		c.errorf("in_path.latency_tolerance", "in_path.latency_tolerance must be at least 1, got %v", ip.LatencyTolerance)
	}
	if ip := v.InPath; ip.MaxConcurrency < 0 || ip.MaxQueueDelay < 0 || ip.MaxFlowDuration < 0 {
		c.errorf("in_path", "in_path.max_concurrency, max_queue_delay and max_flow_duration must not be negative")
	}
	if d := v.InPath.MaxFlowDuration; d > policies.MaxFlowDurationLimit {
		c.errorf("in_path.max_flow_duration", "in_path.max_flow_duration must be at most %s (a request whose end is never reported holds its slot that long), got %s", policies.MaxFlowDurationLimit, d)
	}
	if v.FluxMeterName != "" {
		c.checkName("flux_meter_name", "flux_meter_name", v.FluxMeterName)
	}
	if v.EvaluationInterval < policies.MinEvaluationInterval {
		c.errorf("evaluation_interval", "evaluation_interval must be at least %s, got %s", policies.MinEvaluationInterval, v.EvaluationInterval)
	}
	if v.LatencyWindow < time.Second || v.LatencyWindow%time.Millisecond != 0 {
		c.errorf("latency_window", "latency_window must be at least 1s, in whole milliseconds, got %s", v.LatencyWindow)
	}
	if v.MaxExtrapolation < 0 {
		c.errorf("max_extrapolation", "max_extrapolation must not be negative, got %s", v.MaxExtrapolation)
	}
}

// checkBaseline checks how the latency baseline is learnt.
func (v *serviceProtection) checkBaseline(c *checker) {
	b := v.Baseline
	if b.EMAWindow <= 0 || b.WarmupWindow < 0 {
		c.errorf("baseline.ema_window", "baseline.ema_window must be positive and warmup_window not negative, got %s and %s", b.EMAWindow, b.WarmupWindow)
	}
	if !(b.MaxLatencyMs > 0) {
		c.errorf("baseline.max_latency_ms", "baseline.max_latency_ms must be positive, got %v", b.MaxLatencyMs)
	}
	if !(b.CorrectionFactor > 0 && b.CorrectionFactor <= 1) {
		c.errorf("baseline.correction_factor", "baseline.correction_factor must be within (0, 1], got %v", b.CorrectionFactor)
	}
}

// checkController checks the setpoint and how the load multiplier moves.
func (v *serviceProtection) checkController(c *checker) {
	if !(v.SetpointFactor >= 1) {
		c.errorf("setpoint_factor", "setpoint_factor must be at least 1 (the setpoint is baseline × setpoint_factor), got %v", v.SetpointFactor)
	}
	if !(v.MaxDecreasePerTick > 0 && v.MaxDecreasePerTick < 1) {
		c.errorf("max_decrease_per_tick", "max_decrease_per_tick must be within (0, 1), got %v", v.MaxDecreasePerTick)
	}
	if !(v.IncreasePerTick > 0) {
		c.errorf("increase_per_tick", "increase_per_tick must be positive, got %v", v.IncreasePerTick)
	}
	if !(v.IncreaseRatioPerTick >= 0 && v.IncreaseRatioPerTick <= 1) {
		c.errorf("increase_ratio_per_tick", "increase_ratio_per_tick must be within [0, 1], got %v", v.IncreaseRatioPerTick)
	}
	if !(v.RecoveryShare >= 0 && v.RecoveryShare <= 1) {
		c.errorf("recovery_share", "recovery_share must be within [0, 1], got %v", v.RecoveryShare)
	}
	if !(v.DrainFactor > 0 && v.DrainFactor <= 1) {
		c.errorf("drain_factor", "drain_factor must be within (0, 1], got %v", v.DrainFactor)
	}
	if !(v.MinLoadMultiplier > 0 && v.MaxLoadMultiplier > v.MinLoadMultiplier) {
		c.errorf("min_load_multiplier", "want 0 < min_load_multiplier < max_load_multiplier, got %v and %v", v.MinLoadMultiplier, v.MaxLoadMultiplier)
	}
}

// checkWorkloads checks the workloads and the default one.
func (v *serviceProtection) checkWorkloads(c *checker) {
	seen := map[string]bool{}
	for i, w := range v.Workloads {
		at := fmt.Sprintf("workloads.[%d]", i)
		c.checkName(at+".name", "workload name", w.Name)
		if seen[w.Name] {
			c.errorf(at+".name", "duplicate workload %q", w.Name)
		}
		seen[w.Name] = true
		if w.LabelMatcher == nil {
			c.errorf(at, "workload %q: label_matcher is required", w.Name)
		}
		checkWorkload(c, at, w.Priority, w.QueueTimeout)
	}
	checkWorkload(c, "default_workload", v.DefaultWorkload.Priority, v.DefaultWorkload.QueueTimeout)
}

// checkOverloadAlert checks the alert on the OVERLOADED signal.
func (v *serviceProtection) checkOverloadAlert(c *checker) {
	if a := v.OverloadAlert; a.Enabled {
		if a.AlertName == "" {
			c.errorf("overload_alert.alert_name", "overload_alert.alert_name is required when overload_alert.enabled is true")
		}
		if a.Severity != "info" && a.Severity != "warn" && a.Severity != "crit" {
			c.errorf("overload_alert.severity", "overload_alert.severity %q is not one of info, warn, crit", a.Severity)
		}
	}
}

func checkWorkload(c *checker, at string, priority float64, timeout time.Duration) {
	if !(priority >= 0 && priority <= 255) {
		c.errorf(at+".priority", "priority must be within 0..255, got %v", priority)
	}
	if timeout < 0 {
		c.errorf(at+".queue_timeout", "queue_timeout must not be negative, got %s", timeout)
	}
}

func (v *serviceProtection) policyName() string { return v.PolicyName }
func (v *serviceProtection) template() string   { return "service-protection.yaml.tmpl" }

// InPathLoop reports whether the policy decides in the data path (used by
// the template).
func (v *serviceProtection) InPathLoop() bool { return v.Loop == loopInPath }

// Meter is the flux meter's name: flux_meter_name, else the policy's name.
func (v *serviceProtection) Meter() string {
	if v.FluxMeterName != "" {
		return v.FluxMeterName
	}
	return v.PolicyName
}

// LatencyQuery is the mean latency of the accepted flows of the flux meter
// over latency_window, in milliseconds (used by the template). Rejected
// flows take no time and would drag the mean down while load is shed.
func (v *serviceProtection) LatencyQuery() string {
	m := []string{eq(metricnames.LabelFluxMeterName, v.Meter()), eq(metricnames.LabelPolicyName, v.PolicyName), eq(metricnames.LabelDecisionType, metricnames.DecisionAccepted)}
	w := promDur(v.LatencyWindow)
	return fmt.Sprintf("sum(rate(%s[%s])) / sum(rate(%s[%s]))", sel(metricnames.FluxMeterSum, m...), w, sel(metricnames.FluxMeterCount, m...), w)
}

// CompletedQuery is the rate at which the flux meter's accepted flows
// complete, per second (used by the template).
func (v *serviceProtection) CompletedQuery() string {
	m := []string{eq(metricnames.LabelFluxMeterName, v.Meter()), eq(metricnames.LabelPolicyName, v.PolicyName), eq(metricnames.LabelDecisionType, metricnames.DecisionAccepted)}
	return fmt.Sprintf("sum(rate(%s[%s]))", sel(metricnames.FluxMeterCount, m...), promDur(v.LatencyWindow))
}

// IncomingQuery is the rate at which the policy decides flows, accepted or
// rejected, per second, counted when they are decided (used by the
// template).
func (v *serviceProtection) IncomingQuery() string {
	return fmt.Sprintf("sum(rate(%s[%s]))", sel(metricnames.FlowDecisionsTotal, eq(metricnames.LabelPolicyName, v.PolicyName)), promDur(v.LatencyWindow))
}

// PeakCompletedQuery is the highest completion rate of the last minute,
// per second (used by the template).
func (v *serviceProtection) PeakCompletedQuery() string {
	return fmt.Sprintf("max_over_time(%s[1m:1s])", v.CompletedQuery())
}

// GrowthFactor is what a healthy tick multiplies the load multiplier by.
func (v *serviceProtection) GrowthFactor() float64 { return 1 + v.IncreaseRatioPerTick }

// schedulerQueueTimeout is the load scheduler's queue timeout when the
// values leave it 0: short, because a flow that waits for its turn at the
// admission rate is slow for its client, and the flux meter, which measures
// from admission, never sees that wait. It is short enough for a flow of
// a 10 ms service to wait and still be served within 5 × its latency;
// at a low admission rate the load scheduler lets a flow wait two token
// intervals whatever the timeout (scheduler.QueueTimeout), so a slow
// service's flows are not rejected for want of a token. Chosen with the
// simulator over the test/protect plants (3 × 10 ms: 30.4% of capacity as
// goodput in a 3× overload against 15.6% at 50 ms; 5 × 50 ms: 37.6%
// against 41.2%) and measured on the real plants, one run each: 26.9%
// (50 ms: 7–20% over six runs) and 33.9% (50 ms: 43.7%, one run); see
// BENCHMARKS.md.
const schedulerQueueTimeout = 20 * time.Millisecond

// SchedulerTimeout is a workload's queue timeout in the load scheduler
// (used by the template).
func (v *serviceProtection) SchedulerTimeout(d time.Duration) time.Duration {
	if d == 0 {
		return schedulerQueueTimeout
	}
	return d
}

// MinGradient is the gradient controller's floor: 1 − max_decrease_per_tick.
func (v *serviceProtection) MinGradient() float64 { return 1 - v.MaxDecreasePerTick }

func (v *serviceProtection) rules(p *policies.Policy) []rulefmt.RuleGroup {
	name := p.Metadata.Name
	labels := map[string]string{"severity": v.Alerts.Severity, metricnames.LabelPolicyName: name, "blueprint": "service-protection"}
	ticket := map[string]string{"severity": "ticket", metricnames.LabelPolicyName: name, "blueprint": "service-protection"}
	shedder := "load scheduler"
	if v.InPathLoop() {
		shedder = "adaptive concurrency limit"
	}
	shedding := rejectedRatioAlert("FluxGateLoadShedding", name, v.Alerts.RejectedRatio, v.Alerts.For, labels,
		"Policy %s sheds more than %s of the flows to its service", shedder)
	if v.InPathLoop() {
		queued := sel("fluxgate_adaptive_concurrency_queued", eq(metricnames.LabelPolicyName, name))
		return []rulefmt.RuleGroup{{
			Name: "fluxgate-" + name,
			Rules: []rulefmt.Rule{
				shedding,
				alertRule("FluxGateServiceOverloaded", fmt.Sprintf("min_over_time(%s[%s]) > 0", queued, promDur(v.Alerts.For)), 0, ticket, map[string]string{
					"summary":     fmt.Sprintf("Service of policy %s has been at its concurrency limit for %s", name, promDur(v.Alerts.For)),
					"description": "Flows have waited for a slot of the adaptive concurrency limit without a break: the service is running at the capacity its latency allows.",
				}),
			},
		}}
	}
	overloaded := sel(metricnames.SignalReading, eq(metricnames.LabelPolicyName, name), eq(metricnames.LabelSignalName, "OVERLOADED"))
	return []rulefmt.RuleGroup{{
		Name: "fluxgate-" + name,
		Rules: []rulefmt.Rule{
			shedding,
			alertRule("FluxGateServiceOverloaded", fmt.Sprintf("min_over_time(%s[%s]) > 0", overloaded, promDur(v.Alerts.For)), 0, ticket, map[string]string{
				"summary":     fmt.Sprintf("Service of policy %s has been above its latency setpoint for %s", name, promDur(v.Alerts.For)),
				"description": fmt.Sprintf("Latency of flux meter %s stayed above baseline × %g for %s; the load scheduler is admitting less than the incoming load.", v.Meter(), v.SetpointFactor, promDur(v.Alerts.For)),
			}),
			invalidSignalAlert("FluxGateServiceProtectionSignalInvalid", name, "LATENCY", ticket,
				"no latency reading: the load scheduler admits everything while LATENCY is invalid (no spans reach the flux meter, or the query fails)"),
		},
	}}
}

func (v *serviceProtection) panels(p *policies.Policy) []panel {
	if v.InPathLoop() {
		m := func(metric, legend string) target {
			return target{Expr: sel(metric, eq(metricnames.LabelPolicyName, p.Metadata.Name)), Legend: legend}
		}
		ms := func(metric, legend string) target {
			return target{Expr: "1000 * " + sel(metric, eq(metricnames.LabelPolicyName, p.Metadata.Name)), Legend: legend}
		}
		return []panel{
			{Title: "Concurrency: limit, in flight, queued", Unit: "short", Targets: []target{
				m("fluxgate_adaptive_concurrency_limit", "limit"), m("fluxgate_adaptive_concurrency_in_flight", "in flight"), m("fluxgate_adaptive_concurrency_queued", "queued")}},
			{Title: "Latency: no-load and target", Unit: "ms", Targets: []target{
				ms("fluxgate_adaptive_concurrency_no_load_latency_seconds", "no-load"), ms("fluxgate_adaptive_concurrency_target_latency_seconds", "target")}},
		}
	}
	sig := func(s string) target {
		return target{Expr: sel(metricnames.SignalReading, eq(metricnames.LabelPolicyName, p.Metadata.Name), eq(metricnames.LabelSignalName, s)), Legend: s}
	}
	return []panel{
		{Title: "Latency, baseline and setpoint", Unit: "ms", Targets: []target{sig("LATENCY"), sig("BASELINE"), sig("SETPOINT")}},
		{Title: "Load multiplier", Unit: "short", Targets: []target{sig("MULTIPLIER"), sig("OVERLOADED")}},
	}
}
