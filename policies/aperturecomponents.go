package policies

import (
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// This file translates Aperture's flow-control components into FluxGate's.

// signalFor names a signal the translation generates for the component at
// key, unique within the policy.
func signalFor(key *yaml.Node, name string) string {
	return fmt.Sprintf("APERTURE_L%dC%d_%s", key.Line, key.Column, name)
}

// dropDryRunKey removes dry_run_config_key from a spec, with a warning.
func (t *apertureTranslator) dropDryRunKey(spec *yaml.Node) {
	if k, _ := takeKey(spec, "dry_run_config_key"); k != nil {
		t.warn(k, "Aperture construct dry_run_config_key is ignored: FluxGate has no dynamic dry-run switch; dry_run applies as written")
	}
}

// moveDryRun moves dry_run from an Aperture spec to a native one and
// drops dry_run_config_key.
func (t *apertureTranslator) moveDryRun(from, to *yaml.Node) {
	t.dropDryRunKey(from)
	if _, v := takeKey(from, "dry_run"); v != nil {
		to.Content = append(to.Content, strNode(v, "dry_run"), v)
	}
}

// rateLimiter translates flow_control.rate_limiter: the deprecated
// parameters.label_key becomes limit_by_label_key, a named
// denied_response_status_code becomes its number, out_ports
// (accept_percentage) becomes a PromQL query.
func (t *apertureTranslator) rateLimiter(key, spec *yaml.Node, emit emitter, top bool) {
	if spec.Kind != yaml.MappingNode {
		emit(component(key, "flow_control", "rate_limiter", spec))
		return
	}
	if params := mappingValue(spec, "parameters", 0); params != nil {
		if k, v := takeKey(params, "label_key"); k != nil {
			setKey(params, "limit_by_label_key", v)
		}
		// Aperture's lazy_sync trades accuracy for fewer calls to its
		// distributed cache; FluxGate's buckets are local unless the
		// native form says backend: redis, so there is nothing to sync.
		if k, _ := takeKey(params, "lazy_sync"); k != nil {
			t.warn(k, "Aperture construct lazy_sync is ignored: the limiter's buckets are local to the agent (backend: local); write backend: redis in the native form to share them across agents")
		}
	}
	t.statusCode(mappingValue(spec, "request_parameters", 0), "denied_response_status_code")
	t.dropDryRunKey(spec)
	t.acceptPercentage(key, spec, "flow_control.rate_limiter", emit, top)
}

// acceptPercentage emits a rate limiter or sampler and, for its
// out_ports.accept_percentage, a query.promql component computing the
// percentage of the flows it decided that it accepted over the last 30s,
// from fluxgate_flow_decisions_total.
func (t *apertureTranslator) acceptPercentage(key, spec *yaml.Node, kind string, emit emitter, top bool) {
	group, name, _ := strings.Cut(kind, ".")
	outsKey, outs := takeKey(spec, "out_ports")
	if outs == nil {
		emit(component(key, group, name, spec))
		return
	}
	if !top {
		spec.Content = append(spec.Content, outsKey, outs) // the native decoder refuses it
		emit(component(key, group, name, spec))
		return
	}
	var ap *yaml.Node
	for i := 0; i+1 < len(outs.Content); i += 2 {
		if k := outs.Content[i]; k.Value == "accept_percentage" {
			ap = outs.Content[i+1]
		} else {
			t.unsupported(k, kind+".out_ports."+k.Value)
		}
	}
	index := len(t.out)
	emit(component(key, group, name, spec))
	if ap == nil || isEmptyNode(ap) {
		return
	}
	sel := fmt.Sprintf(`policy_name=%q,component_id="%d"`, t.policy, index)
	q := fmt.Sprintf(`100 * sum(rate(fluxgate_flow_decisions_total{%s,decision_type="DECISION_TYPE_ACCEPTED"}[30s])) / sum(rate(fluxgate_flow_decisions_total{%s}[30s]))`, sel, sel)
	emit(component(outsKey, "query", "promql", mapAt(outsKey,
		"query_string", strNode(outsKey, q),
		"evaluation_interval", strNode(outsKey, "10s"),
		"out_ports", mapAt(outsKey, "output", ap))))
}

// isEmptyNode reports whether n is null, "" or {}.
func isEmptyNode(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && (n.Tag == "!!null" || n.Value == "") || n.Kind == yaml.MappingNode && len(n.Content) == 0
}

// statusCode replaces a status code given by name (BadRequest) in mapping
// m with its number.
func (t *apertureTranslator) statusCode(m *yaml.Node, key string) {
	if m == nil || m.Kind != yaml.MappingNode {
		return
	}
	v := mappingValue(m, key, 0)
	if v == nil || v.Kind != yaml.ScalarNode || v.ShortTag() != "!!str" {
		return
	}
	code, ok := StatusCodeByName(v.Value)
	if !ok {
		t.errorf(v, "unknown status code %q: want a number or a name such as BadRequest, TooManyRequests, ServiceUnavailable", v.Value)
		setKey(m, key, scalarAt(v, "!!int", "0"))
		return
	}
	setKey(m, key, scalarAt(v, "!!int", fmt.Sprint(code)))
}

// loadScheduler translates Aperture's LoadScheduler.Parameters (selectors,
// scheduler, workload_latency_based_tokens) into a native
// flow_control.load_scheduler spec without in_ports.
func (t *apertureTranslator) loadScheduler(at, spec *yaml.Node) *yaml.Node {
	native := mapAt(at)
	params := spec
	if spec.Kind == yaml.MappingNode {
		if p := mappingValue(spec, "parameters", 0); p != nil {
			params = p
		}
	}
	if params.Kind != yaml.MappingNode {
		return native
	}
	out := mapAt(params)
	for i := 0; i+1 < len(params.Content); i += 2 {
		k, v := params.Content[i], params.Content[i+1]
		switch k.Value {
		case "selectors":
			native.Content = append(native.Content, k, v)
		case "workload_latency_based_tokens":
			if v.Value == "true" {
				t.warn(k, "Aperture construct workload_latency_based_tokens is ignored: a flow costs 1 token, or its tokens_label_key label")
			}
		case "scheduler":
			t.scheduler(v, out)
		default:
			t.unsupported(k, "load_scheduler.parameters."+k.Value)
		}
	}
	native.Content = append(native.Content, strNode(params, "parameters"), out)
	return native
}

// scheduler copies Aperture's Scheduler into native load scheduler
// parameters.
func (t *apertureTranslator) scheduler(s, out *yaml.Node) {
	if s.Kind != yaml.MappingNode {
		return
	}
	for i := 0; i+1 < len(s.Content); i += 2 {
		k, v := s.Content[i], s.Content[i+1]
		switch k.Value {
		case "workloads":
			if v.Kind == yaml.SequenceNode {
				for _, w := range v.Content {
					t.workloadParameters(mappingValue(w, "parameters", 0))
				}
			}
			out.Content = append(out.Content, k, v)
		case "default_workload_parameters":
			t.workloadParameters(v)
			out.Content = append(out.Content, k, v)
		case "tokens_label_key", "fairness_label_key":
			out.Content = append(out.Content, k, v)
		case "denied_response_status_code":
			m := mapAt(k, k.Value, v)
			t.statusCode(m, k.Value)
			out.Content = append(out.Content, m.Content...)
		case "decision_deadline_margin":
			t.warn(k, "Aperture construct scheduler.decision_deadline_margin is ignored: a flow never waits past its caller's deadline")
		default:
			t.unsupported(k, "scheduler."+k.Value)
		}
	}
}

func (t *apertureTranslator) workloadParameters(p *yaml.Node) {
	if p == nil || p.Kind != yaml.MappingNode {
		return
	}
	var keep []*yaml.Node
	for i := 0; i+1 < len(p.Content); i += 2 {
		switch k := p.Content[i]; k.Value {
		case "priority", "queue_timeout", "tokens":
			keep = append(keep, k, p.Content[i+1])
		default:
			t.unsupported(k, "workload parameters."+k.Value)
		}
	}
	p.Content = keep
}

// loadMultiplierScheduler expands flow_control.aimd_load_scheduler (or
// aiad_) into the components Aperture composes it of, in FluxGate's terms:
//
//   - an aimd_load_multiplier (aiad_) controller over signal and setpoint,
//   - the flow_control.load_scheduler its desired_load_multiplier drives,
//   - a decider (desired_load_multiplier < 1) and the embedded alerter.
func (t *apertureTranslator) loadMultiplierScheduler(kind string, key, spec *yaml.Node, emit emitter) {
	if spec.Kind != yaml.MappingNode {
		t.errorf(spec, "%s: expected a mapping", kind)
		return
	}
	ctlKind := strings.TrimSuffix(strings.TrimPrefix(kind, "flow_control."), "_scheduler") + "_multiplier"
	params := mappingValue(spec, "parameters", 0)
	if params == nil || params.Kind != yaml.MappingNode {
		t.errorf(key, "%s: parameters is required", kind)
		return
	}
	_, lsParams := takeKey(params, "load_scheduler")
	if lsParams == nil {
		t.errorf(params, "%s: parameters.load_scheduler is required", kind)
		return
	}
	_, alerter := takeKey(params, "alerter")
	if k, cond := takeKey(spec, "overload_condition"); k != nil {
		params.Content = append(params.Content, k, cond)
	}

	outs := mappingValue(spec, "out_ports", 0)
	if outs == nil || outs.Kind != yaml.MappingNode {
		outs = mapAt(key)
		setKey(spec, "out_ports", outs)
	}
	desired := mappingValue(outs, "desired_load_multiplier", 0)
	if desired == nil || mappingValue(desired, "signal_name", 0) == nil {
		desired = mapAt(key, "signal_name", strNode(key, signalFor(key, "DESIRED_LOAD_MULTIPLIER")))
		setKey(outs, "desired_load_multiplier", desired)
	}
	desiredName := mappingValue(desired, "signal_name", 0)

	ls := t.loadScheduler(key, lsParams)
	ls.Content = append(ls.Content, strNode(key, "in_ports"),
		mapAt(key, "load_multiplier", mapAt(key, "signal_name", strNode(desiredName, desiredName.Value))))
	t.moveDryRun(spec, ls)

	emit(component(key, "", ctlKind, spec))
	emit(component(key, "flow_control", "load_scheduler", ls))
	if alerter == nil {
		return
	}
	alert := signalFor(key, "LOAD_MULTIPLIER_ALERT")
	emit(component(key, "", "decider", mapAt(key,
		"operator", strNode(key, "lt"),
		"in_ports", mapAt(key,
			"lhs", mapAt(key, "signal_name", strNode(key, desiredName.Value)),
			"rhs", mapAt(key, "constant_signal", mapAt(key, "value", floatNode(key, 1)))),
		"out_ports", mapAt(key, "output", mapAt(key, "signal_name", strNode(key, alert))))))
	emit(component(key, "", "alerter", mapAt(key,
		"in_ports", mapAt(key, "signal", mapAt(key, "signal_name", strNode(key, alert))),
		"parameters", alerter)))
}

// quotaScheduler translates flow_control.quota_scheduler: the rate
// limiter's parameters as the rate limiter's (label_key, lazy_sync), the
// scheduler's as schedulerParameters, out_ports as a query.
func (t *apertureTranslator) quotaScheduler(key, spec *yaml.Node, emit emitter, top bool) {
	if spec.Kind == yaml.MappingNode {
		if rl := mappingValue(spec, "rate_limiter", 0); rl != nil && rl.Kind == yaml.MappingNode {
			if k, v := takeKey(rl, "label_key"); k != nil {
				setKey(rl, "limit_by_label_key", v)
			}
			t.lazySync(rl)
		}
		t.schedulerParameters(mappingValue(spec, "scheduler", 0))
	}
	t.acceptPercentage(key, spec, "flow_control.quota_scheduler", emit, top)
}

// concurrencyLimiter translates flow_control.concurrency_limiter and
// flow_control.concurrency_scheduler (kind): max_idle_time is dropped
// with a warning, named status codes become numbers, out_ports a query.
func (t *apertureTranslator) concurrencyLimiter(kind string, key, spec *yaml.Node, emit emitter, top bool) {
	if spec.Kind == yaml.MappingNode {
		params := "parameters"
		if kind == "flow_control.concurrency_scheduler" {
			params = "concurrency_limiter"
			t.schedulerParameters(mappingValue(spec, "scheduler", 0))
		}
		if p := mappingValue(spec, params, 0); p != nil {
			if k, _ := takeKey(p, "max_idle_time"); k != nil {
				t.warn(k, "Aperture construct %s.max_idle_time is ignored: a key's count is dropped as soon as its last flow ends", params)
			}
		}
		if rp := mappingValue(spec, "request_parameters", 0); rp != nil {
			t.statusCode(rp, "denied_response_status_code")
		}
	}
	_, name, _ := strings.Cut(kind, ".")
	t.acceptPercentage(key, spec, "flow_control."+name, emit, top)
}

// lazySync drops a rate limiter's or quota scheduler's lazy_sync: quietly
// when it is disabled, with a warning when enabled.
func (t *apertureTranslator) lazySync(params *yaml.Node) {
	k, v := takeKey(params, "lazy_sync")
	if k == nil {
		return
	}
	if en := mappingValue(v, "enabled", 0); en != nil && en.Value == "true" {
		t.warn(k, "Aperture construct lazy_sync is ignored: the buckets are local to the agent")
	}
}

// schedulerParameters edits Aperture's Scheduler of a quota or
// concurrency scheduler in place into the native SchedulerParameters.
func (t *apertureTranslator) schedulerParameters(s *yaml.Node) {
	if s == nil || s.Kind != yaml.MappingNode {
		return
	}
	var keep []*yaml.Node
	for i := 0; i+1 < len(s.Content); i += 2 {
		k, v := s.Content[i], s.Content[i+1]
		switch k.Value {
		case "workloads":
			if v.Kind == yaml.SequenceNode {
				for _, w := range v.Content {
					t.workloadParameters(mappingValue(w, "parameters", 0))
				}
			}
		case "default_workload_parameters":
			t.workloadParameters(v)
		case "denied_response_status_code":
			m := mapAt(k, k.Value, v)
			t.statusCode(m, k.Value)
			v = m.Content[1]
		case "decision_deadline_margin":
			t.warn(k, "Aperture construct scheduler.decision_deadline_margin is ignored: a flow never waits past its caller's deadline")
			continue
		}
		keep = append(keep, k, v)
	}
	s.Content = keep
}
