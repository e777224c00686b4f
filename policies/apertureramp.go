package policies

import (
	"strconv"

	"gopkg.in/yaml.v3"
)

// This file translates Aperture's sampler and load ramp.

// samplerSpec edits an Aperture flow_control.sampler spec in place into
// the native one: parameters.selectors move up to selectors,
// parameters.label_key (the older name) becomes session_label_key, a named
// denied_response_status_code becomes its number, and
// pass_through_label_values_config_key is dropped (with a warning when it
// names a key).
func (t *apertureTranslator) samplerSpec(spec *yaml.Node) {
	if spec.Kind != yaml.MappingNode {
		return
	}
	if params := mappingValue(spec, "parameters", 0); params != nil && params.Kind == yaml.MappingNode {
		if k, v := takeKey(params, "selectors"); k != nil {
			if mappingValue(spec, "selectors", 0) != nil {
				t.errorf(k, "sampler: selectors are given both in parameters and beside them")
			} else {
				spec.Content = append(spec.Content, k, v)
			}
		}
		if k, v := takeKey(params, "label_key"); k != nil {
			params.Content = append(params.Content, strNode(k, "session_label_key"), v)
		}
		t.statusCode(params, "denied_response_status_code")
	}
	if k, v := takeKey(spec, "pass_through_label_values_config_key"); k != nil && v.Kind == yaml.ScalarNode && v.Value != "" {
		t.warn(k, "Aperture construct pass_through_label_values_config_key is ignored: FluxGate's sampler reads pass_through_label_values from the policy only")
	}
}

// sampler translates flow_control.sampler.
func (t *apertureTranslator) sampler(key, spec *yaml.Node, emit emitter, top bool) {
	t.samplerSpec(spec)
	t.acceptPercentage(key, spec, "flow_control.sampler", emit, top)
}

// loadRamp expands flow_control.load_ramp into what Aperture builds it
// from: a signal_generator that walks parameters.steps (its
// target_accept_percentage values) under the forward, backward and reset
// ports, and the sampler of parameters.sampler in ramp mode, whose
// accept_percentage is the generator's output. The ramp's out ports
// (accept_percentage, at_start, at_end) are the generator's.
func (t *apertureTranslator) loadRamp(key, spec *yaml.Node, emit emitter) {
	samp, stepsKey, steps, ok := t.rampParameters(key, spec)
	if !ok {
		return
	}
	var genSteps []*yaml.Node
	for _, st := range steps.Content {
		genSteps = append(genSteps, t.rampStep(st))
	}
	ins := t.rampInPorts(key, spec)
	outs, pctName := t.rampOutPorts(key, spec)
	emit(component(key, "", "signal_generator", mapAt(key,
		"in_ports", ins,
		"out_ports", outs,
		"parameters", mapAt(stepsKey, "steps", seqAt(steps, genSteps...)))))
	emit(component(key, "flow_control", "sampler", t.rampSampler(key, spec, samp, pctName)))
}

// rampParameters takes parameters.sampler and parameters.steps out of a
// load ramp's spec and reports anything else in parameters; ok is false
// (and an error reported) when one of them is missing.
func (t *apertureTranslator) rampParameters(key, spec *yaml.Node) (samp, stepsKey, steps *yaml.Node, ok bool) {
	if spec.Kind != yaml.MappingNode {
		t.errorf(spec, "flow_control.load_ramp: expected a mapping")
		return nil, nil, nil, false
	}
	params := mappingValue(spec, "parameters", 0)
	if params == nil || params.Kind != yaml.MappingNode {
		t.errorf(key, "flow_control.load_ramp: parameters is required")
		return nil, nil, nil, false
	}
	_, samp = takeKey(params, "sampler")
	if samp == nil || samp.Kind != yaml.MappingNode {
		t.errorf(params, "flow_control.load_ramp: parameters.sampler is required")
		return nil, nil, nil, false
	}
	stepsKey, steps = takeKey(params, "steps")
	if steps == nil || steps.Kind != yaml.SequenceNode || len(steps.Content) == 0 {
		t.errorf(params, "flow_control.load_ramp: parameters.steps needs at least one step")
		return nil, nil, nil, false
	}
	for i := 0; i+1 < len(params.Content); i += 2 {
		t.unsupported(params.Content[i], "flow_control.load_ramp.parameters."+params.Content[i].Value)
	}
	return samp, stepsKey, steps, true
}

// rampInPorts is the generator's in ports: the ramp's forward, backward
// and reset, and a constant forward 0 when neither direction is wired.
func (t *apertureTranslator) rampInPorts(key, spec *yaml.Node) *yaml.Node {
	ins := mapAt(key)
	if in := mappingValue(spec, "in_ports", 0); in != nil && in.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(in.Content); i += 2 {
			switch k := in.Content[i]; k.Value {
			case "forward", "backward", "reset":
				ins.Content = append(ins.Content, k, in.Content[i+1])
			default:
				t.unsupported(k, "flow_control.load_ramp.in_ports."+k.Value)
			}
		}
	}
	if mappingValue(ins, "forward", 0) == nil && mappingValue(ins, "backward", 0) == nil {
		// Aperture's ramp stays put without them; FluxGate's generator
		// would run forward on its own.
		setKey(ins, "forward", mapAt(key, "constant_signal", mapAt(key, "value", floatNode(key, 0))))
	}
	return ins
}

// rampOutPorts is the generator's out ports and the name of the signal
// that carries the accept percentage (a generated one when the ramp's
// accept_percentage is not wired).
func (t *apertureTranslator) rampOutPorts(key, spec *yaml.Node) (outs *yaml.Node, pctName string) {
	outs = mapAt(key)
	var pct *yaml.Node
	if out := mappingValue(spec, "out_ports", 0); out != nil && out.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(out.Content); i += 2 {
			k, v := out.Content[i], out.Content[i+1]
			switch k.Value {
			case "accept_percentage":
				pct = v
				outs.Content = append(outs.Content, strNode(k, "output"), v)
			case "at_start", "at_end":
				outs.Content = append(outs.Content, k, v)
			default:
				t.unsupported(k, "flow_control.load_ramp.out_ports."+k.Value)
			}
		}
	}
	if pct != nil {
		if n := mappingValue(pct, "signal_name", 0); n != nil {
			pctName = n.Value
		}
	}
	if pctName == "" {
		pctName = signalFor(key, "ACCEPT_PERCENTAGE")
		setKey(outs, "output", mapAt(key, "signal_name", strNode(key, pctName)))
	}
	return outs, pctName
}

// rampSampler is the sampler, in ramp mode: parameters.sampler holds a
// sampler's parameters, selectors included, and its accept_percentage is
// the signal pctName. It reports the spec's keys nothing reads.
func (t *apertureTranslator) rampSampler(key, spec, samp *yaml.Node, pctName string) *yaml.Node {
	sp := mapAt(samp)
	var native []*yaml.Node
	for i := 0; i+1 < len(samp.Content); i += 2 {
		switch k, v := samp.Content[i], samp.Content[i+1]; k.Value {
		case "selectors":
			native = append(native, k, v)
		case "label_key":
			sp.Content = append(sp.Content, strNode(k, "session_label_key"), v)
		case "ramp_mode":
		default:
			sp.Content = append(sp.Content, k, v)
		}
	}
	t.statusCode(sp, "denied_response_status_code")
	setKey(sp, "ramp_mode", scalarAt(key, "!!bool", "true"))
	native = append(native, strNode(key, "in_ports"),
		mapAt(key, "accept_percentage", mapAt(key, "signal_name", strNode(key, pctName))),
		strNode(samp, "parameters"), sp)
	if k, v := takeKey(spec, "pass_through_label_values"); k != nil {
		native = append(native, k, v)
	}
	if k, v := takeKey(spec, "pass_through_label_values_config_key"); k != nil && v.Kind == yaml.ScalarNode && v.Value != "" {
		t.warn(k, "Aperture construct pass_through_label_values_config_key is ignored: FluxGate's sampler reads pass_through_label_values from the policy only")
	}
	for i := 0; i+1 < len(spec.Content); i += 2 {
		switch k := spec.Content[i]; k.Value {
		case "in_ports", "out_ports", "parameters":
		default:
			t.unsupported(k, "flow_control.load_ramp."+k.Value)
		}
	}
	return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: samp.Line, Column: samp.Column, Content: native}
}

// rampStep turns a load ramp step {target_accept_percentage, duration}
// into a signal generator step {target_output: {value}, duration}.
func (t *apertureTranslator) rampStep(st *yaml.Node) *yaml.Node {
	if st.Kind != yaml.MappingNode {
		return st // the native decoder reports it
	}
	out := mapAt(st)
	for i := 0; i+1 < len(st.Content); i += 2 {
		k, v := st.Content[i], st.Content[i+1]
		switch k.Value {
		case "target_accept_percentage":
			if f, err := strconv.ParseFloat(v.Value, 64); v.Kind == yaml.ScalarNode && err == nil && (f < 0 || f > 100) {
				t.errorf(v, "target_accept_percentage: must be within 0..100, got %s", v.Value)
			}
			out.Content = append(out.Content, strNode(k, "target_output"), mapAt(k, "value", v))
		case "duration":
			out.Content = append(out.Content, k, v)
		default:
			t.unsupported(k, "flow_control.load_ramp.parameters.steps."+k.Value)
		}
	}
	if mappingValue(out, "target_output", 0) == nil {
		// Aperture's default target is 0.
		out.Content = append(out.Content, strNode(st, "target_output"), mapAt(st, "value", floatNode(st, 0)))
	}
	return out
}
